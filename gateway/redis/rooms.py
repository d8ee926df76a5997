"""Room requests: messages (through the publisher), history, epochs, join, leave, who, typing."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.redis import keys, payloads, scripts
from gateway.redis.base import BrokerBase, left_parts, line, text
from gateway.redis.errors import BrokerUnavailable
from gateway.redis.pending import Pending, PublishBatch
from protocol.codec import message_parts
from protocol.errors import ErrorCode, ProtocolError
from protocol.frames import Joined, TypingNotice
from protocol.names import name_key

logger = logging.getLogger(__name__)

INTERNAL_REF_TTL_MS = 60_000
"""How long the dedup key of a ref-less publication lives: longer than any retry."""

VERDICT_TRIES = 5
"""How often a script may ask for a fresh liveness verdict (its record named another gateway
than the verdict was about) before the request gives up as ``unavailable``."""


@dataclass(frozen=True, slots=True)
class Published:
    """A room message stored and published, or a repeat of an earlier one."""

    id: int
    epoch: str
    duplicate: bool
    """The ref was seen before (within the ref TTL): nothing stored or published; first id."""


@dataclass(frozen=True, slots=True)
class HistoryBatch:
    room: str
    epoch: str
    last_id: int
    """The room's current seq (0 when no message was ever sent)."""
    messages: tuple[bytes, ...]
    """Stored ``message`` lines (exact JSON, no newline), oldest first."""
    first_id: int
    """Id of ``messages[0]``, or ``last_id + 1`` when there are none."""
    complete: bool
    """False when older messages were asked for than Redis keeps."""


class RoomRequests(BrokerBase):
    """The room half of ``Broker``."""

    def publish_message(self, room: str, name: str, text: str, ts: float,
                        ref: str | None) -> Published:
        """Give the message the room's next id, store it, publish it: one atomic script.

        A ref seen from this user in this room within ``ref_ttl_ms`` makes it a
        duplicate: nothing is stored or published and the first id comes back.
        """
        return self.submit_message(room, name, text, ts, ref).result()

    def submit_message(self, room: str, name: str, text: str, ts: float, ref: str | None,
                       batch: PublishBatch | None = None) -> Pending[Published]:
        """``publish_message`` without waiting: the request joins ``batch`` (submitted by
        its owner), or alone the publisher's next batch at once. Requests of one thread
        reach Redis in the order they were submitted."""
        prefix, suffix = message_parts(room, name, text, ts)
        internal = ref is None
        ref_key = keys.room_ref(room, name, f"~{self._fresh()}" if internal else str(ref))
        call = scripts.PublishMessage(
            keys.room_seq(room), keys.room_epoch(room), keys.room_log(room), ref_key,
            keys.room_members(room), keys.room_channel(room),
            epoch_candidate=self._fresh(), line_prefix=prefix, line_suffix=suffix,
            history=self._history, publish=self.publish_command,
            ref_ttl_ms=INTERNAL_REF_TTL_MS if internal else self._ref_ttl_ms,
            room_ttl_ms=self._room_ttl_ms, message_tag=payloads.MESSAGE,
            deadline_ms=self.deadline_ms()).call()

        def published(raw: Any) -> Published:
            reply = scripts.PublishReply.read(raw)
            if reply.outcome == "too_late":
                raise self.too_late("publish")
            # an internal ref only meets itself when its batch was sent again: one publication
            return Published(reply.id, reply.epoch, reply.outcome == "repeat" and not internal)

        return self._pending(batch, call, "publish", published)

    def read_history(self, room: str, *, after: int | None = None, before: int | None = None,
                     limit: int = 50) -> HistoryBatch:
        """Retained messages of a room, creating its epoch if the room is new.

        With ``after``: every retained message with a larger id (for resume).
        Otherwise the newest ``limit`` with an id below ``before`` (scroll-back).
        """
        ident: int | None
        if after is not None:
            mode, ident = b"a", max(after, 0)
        else:
            if limit < 1:
                raise ValueError("limit must be positive")
            mode, ident = b"b", before
        with self.guard("history"):
            reply = scripts.HistoryReply.read(self._run(scripts.ReadHistory(
                keys.room_seq(room), keys.room_epoch(room), keys.room_log(room),
                keys.room_members(room), epoch_candidate=self._fresh(), mode=mode,
                id="" if ident is None else ident, limit=limit,
                room_ttl_ms=self._room_ttl_ms).call()))
        return HistoryBatch(room, reply.epoch, reply.last_id, reply.lines, reply.first_id,
                            reply.complete)

    def renew_epoch(self, room: str, rolled_back: str) -> str:
        """Start a new epoch for a room whose ids went backwards under ``rolled_back``.

        Redis that lost its last writes (a crash with AOF ``everysec``) hands out
        ids again that clients already hold: without a new epoch they would drop
        the new messages as duplicates. Idempotent across gateways.
        """
        with self.guard("renew epoch"):
            epoch = self._run(scripts.RenewEpoch(
                keys.room_epoch(room), keys.room_seq(room), keys.room_log(room),
                keys.room_members(room), rolled_back, self._fresh(), self._room_ttl_ms).call())
        return text(epoch)

    def join(self, room: str, name: str, *, limited: bool = True) -> bool:
        """Record ``name`` as present in ``room`` through this gateway.

        Returns True, after publishing ``joined``, when the name was not present
        (absent, or held by a dead gateway); a name already present through a
        live gateway (a takeover in progress) just moves here, silently.
        ``limited``: a room that does not exist (new, or expired) takes a token of
        the name's bucket of new rooms; an empty bucket raises ``rate_limited`` and
        the room is not touched. Presence put back by the gateway itself is not limited.

        Three slots, in this order: the gateway's and the name's indexes first (so a
        gateway dying next leaves an index entry its reaper clears, never a member no
        index names), then the room's record (``lua/join.lua``), asking the liveness slot
        for a verdict only when a member of another gateway is there.
        """
        lower = name_key(name)
        field = keys.membership(room, name)
        may_create = not limited or self._new_rooms_per_min <= 0
        verdict_gw, verdict_alive = "", False
        with self.guard("join"):
            self._index_membership(room, name, field)
            for _ in range(VERDICT_TRIES):
                reply = scripts.JoinReply.read(self._run(scripts.Join(
                    keys.room_members(room), keys.room_seq(room), keys.room_epoch(room),
                    keys.room_log(room), keys.room_channel(room),
                    lower=lower, member_value=f"{self._gateway_id}|{name}", me=self._gateway_id,
                    publish=self.publish_command,
                    joined_payload=payloads.event(line(Joined(room, name))),
                    room_ttl_ms=self._room_ttl_ms, may_create=int(may_create),
                    verdict_gw=verdict_gw, verdict_alive=int(verdict_alive)).call()))
                if reply.outcome == "verdict":
                    verdict_gw = reply.gateway
                    verdict_alive = self.alive([verdict_gw]).get(verdict_gw, False)
                elif reply.outcome == "new_room":
                    if not self._take_room_token(name):
                        self._unindex_membership(room, name, field)
                        raise ProtocolError(
                            ErrorCode.RATE_LIMITED,
                            f"too many new rooms: a user may create {self._new_rooms_burst} at "
                            f"once and {self._new_rooms_per_min:g} a minute; join an existing "
                            "room or wait")
                    may_create = True
                else:
                    return reply.outcome == "joined"
        raise BrokerUnavailable("join: the room's member kept changing gateway")

    def _index_membership(self, room: str, name: str, field: str) -> None:
        pipe = self._redis.pipeline(transaction=False)
        pipe.hset(keys.gateway_members(self._gateway_id), field, "1")
        pipe.sadd(keys.user_rooms(name), room)
        pipe.execute()

    def _unindex_membership(self, room: str, name: str, field: str) -> None:
        pipe = self._redis.pipeline(transaction=False)
        pipe.hdel(keys.gateway_members(self._gateway_id), field)
        pipe.srem(keys.user_rooms(name), room)
        pipe.execute()

    def _take_room_token(self, name: str) -> bool:
        return bool(self._run(scripts.TakeRoomToken(
            keys.user_new_rooms(name), repr(self._new_rooms_per_min),
            self._new_rooms_burst).call()))

    def leave(self, room: str, name: str) -> bool:
        """Remove ``name`` from ``room`` if this gateway holds it there, publishing ``left``.

        The ``left`` line carries the display name stored at join time.
        """
        with self.guard("leave"):
            return self._leave_all([(room, name_key(name))], self._gateway_id) == ["left"]

    def _leave_all(self, memberships: Sequence[tuple[str, str]], owner: str) -> list[str]:
        """Each (room, lower name) leaves its room if ``owner`` holds it there
        (``lua/leave.lua``, each in its room's slot, pipelined), then ``owner``'s index
        entries go, and the name's unless another gateway holds it: the rooms' records
        first, the indexes after (they may only name too much). The outcome of each."""
        calls = []
        for room, lower in memberships:
            prefix, suffix = left_parts(room)
            calls.append(scripts.Leave(
                keys.room_members(room), keys.room_seq(room), keys.room_epoch(room),
                keys.room_log(room), keys.room_channel(room),
                lower=lower, owner=owner, publish=self.publish_command,
                left_prefix=prefix, left_suffix=suffix, room_ttl_ms=self._room_ttl_ms).call())
        outcomes = [text(outcome) for outcome in self._run_all(calls)]
        pipe = self._redis.pipeline(transaction=False)
        for (room, lower), outcome in zip(memberships, outcomes, strict=True):
            pipe.hdel(keys.gateway_members(owner), keys.membership(room, lower))
            if outcome != "other":
                pipe.srem(keys.user_rooms(lower), room)
        pipe.execute()
        return outcomes

    def who(self, room: str) -> list[str]:
        """Display names present in ``room`` through live gateways.

        Sorted case-insensitively (ties by code point), as names are unique
        case-insensitively. The members' gateways are judged in the liveness slot.
        """
        with self.guard("who"):
            values = [text(value) for value in self._redis.hvals(keys.room_members(room))]
            members = [value.rpartition("|") for value in values]
            alive = self.alive(gw for gw, _, _ in members)
        names = [shown for gw, _, shown in members if alive.get(gw, False)]
        return sorted(names, key=lambda n: (n.lower(), n))

    def publish_typing(self, room: str, name: str) -> None:
        """Tell the room's other members that ``name`` is typing (not stored)."""
        payload = payloads.typing(name_key(name), line(TypingNotice(room, name)))
        with self.guard("typing"):
            self._publish(keys.room_channel(room), payload)


__all__ = ["HistoryBatch", "INTERNAL_REF_TTL_MS", "Published", "RoomRequests", "VERDICT_TRIES"]
