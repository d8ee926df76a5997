"""Name requests: claim (with takeover and accounts), restore, release."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from gateway import account_keys
from gateway.redis import keys, payloads, scripts
from gateway.redis.base import BrokerBase, text, token_hash
from gateway.redis.errors import BrokerUnavailable
from gateway.redis.rooms import VERDICT_TRIES
from protocol.errors import ErrorCode, ProtocolError
from protocol.names import name_key

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class NameClaim:
    name: str
    token: str
    """The fresh secret for the client's ``welcome``; Redis keeps only its sha256."""
    replaced_session: str | None
    """The live session this claim took the name from, if any."""
    rooms: tuple[str, ...] = ()
    """Rooms where the name's membership is now this gateway's: taken over with the name
    (token takeover), so the rooms see no left/joined. The new session leaves those its
    ``hello`` does not list."""
    account: bool = False
    """The name has an account and this claim is its owner's (password, or a token of an
    owner's claim)."""


@dataclass(frozen=True, slots=True)
class ClaimOutcome:
    claimed: bool
    replaced_session: str = ""
    account: bool = False


class NameRequests(BrokerBase):
    """The names half of ``Broker``."""

    def claim_name(self, name: str, session_id: str, token: str | None, *,
                   owner: bool = False) -> NameClaim:
        """Make ``name`` this session's, cluster-wide, or raise ``name_taken``.

        Free when nobody holds it or its holder's gateway is dead; held by a live
        gateway, it is taken over only with the token of the last claim (the
        old session is told with ``K`` on its gateway's channel). Every claim
        issues a fresh token. Also heartbeats, so a new gateway counts as alive.

        With the token, the name's room memberships come along (``NameClaim.rooms``):
        the script needs their keys, so the holder and its rooms are read first;
        should they change in between, what changed is left to the old gateway's
        cleanup (``left``, then this session's ``joined``).

        A name with an account (``gateway.account_keys.account``, checked in the same
        script) goes only to its ``owner`` (the caller checked the password: it takes
        the name from any live session, as a token does) or to a token of an owner's
        claim; anyone else gets ``name_taken``, whether the name is held or not.
        """
        fresh = secrets.token_urlsafe(16)
        presented = "*" if owner else ("" if token is None else token_hash(token))
        with self.guard("claim"):
            reply, rooms = self._claim(name, session_id, token_hash(fresh), presented,
                                       rooms=owner or token is not None)
        if not reply.claimed:
            raise ProtocolError(ErrorCode.NAME_TAKEN, f"the name {name!r} is in use")
        return NameClaim(name, fresh, reply.replaced_session or None, rooms, reply.account)

    def _holder_and_rooms(self, name: str, *, index: bool = False
                          ) -> tuple[str, list[str], bool]:
        """The gateway holding ``name`` and the rooms of its memberships, as Redis has them now;
        with ``index``, in the same round trip, the name joins this gateway's names index
        (before the record: the index may only name too much) and the last value says
        whether it was new there."""
        pipe = self._redis.pipeline(transaction=False)
        if index:
            pipe.sadd(keys.gateway_names(self._gateway_id), name_key(name))
        pipe.hget(keys.user(name), "gw")
        pipe.smembers(keys.user_rooms(name))
        replies = pipe.execute()
        holder, rooms = replies[-2:]
        return (("" if holder is None else text(holder)), sorted(text(r) for r in rooms),
                bool(index and replies[0]))

    def _claim(self, name: str, session_id: str, new_hash: str, presented_hash: str, *,
               rooms: bool) -> tuple[ClaimOutcome, tuple[str, ...]]:
        """The claim's steps, each in one slot: read the holder (and with ``rooms`` its
        rooms), beat and judge the holder in the liveness slot, index the name under this
        gateway, claim the record (``lua/claim_name.lua``; asked again when it found another
        holder), then bring the rooms of a token takeover along, and only then tell the
        holder (its session's cleanup must find the rooms moved, or they would see ``left``)."""
        lower = name_key(name)
        my_names = keys.gateway_names(self._gateway_id)
        added = False
        try:
            for attempt in range(VERDICT_TRIES):
                holder, seen_rooms, new = self._holder_and_rooms(name, index=attempt == 0)
                added = added or new
                if not rooms:
                    seen_rooms = []
                verdict = self.alive([holder] if holder != self._gateway_id else [], beat=True)
                reply = scripts.ClaimReply.read(self._run(scripts.ClaimName(
                    keys.user(name), account_keys.account(name),
                    display=name, session=session_id, new_hash=new_hash,
                    presented_hash=presented_hash, me=self._gateway_id, holder_seen=holder,
                    holder_alive=int(verdict.get(holder, False))).call()))
                if reply.outcome != "verdict":
                    break
            else:
                raise BrokerUnavailable("claim: the name kept changing gateway")
        except BaseException:
            if added:
                self._redis.srem(my_names, lower)
            raise
        if reply.outcome != "claimed":
            if added:
                self._redis.srem(my_names, lower)
            return ClaimOutcome(False), ()
        # the rooms move before the holder hears: its session's cleanup then finds them gone
        here = self._bring_rooms(lower, seen_rooms, reply.heir)
        if reply.tell_gateway:
            self._publish(keys.gateway_channel(reply.tell_gateway),
                          payloads.kick(lower, reply.tell_session))
        return ClaimOutcome(True, reply.replaced_session, reply.account), here

    def _bring_rooms(self, lower: str, rooms: Sequence[str], holder: str) -> tuple[str, ...]:
        """The rooms (of those seen before the claim) where the name's membership is now this
        gateway's; with ``holder`` (a token takeover) those of the holder move here, silently
        (``lua/move_member.lua`` per room, this gateway's index written first and the
        holder's dropped after)."""
        here = []
        for room in rooms:
            field = keys.membership(room, lower)
            if holder:
                self._redis.hset(keys.gateway_members(self._gateway_id), field, "1")
            outcome = text(self._run(scripts.MoveMember(
                keys.room_members(room), lower, holder, self._gateway_id).call()))
            if outcome == "moved":
                self._redis.hdel(keys.gateway_members(holder), field)
            if outcome in ("moved", "ours"):
                here.append(room)
            elif holder:
                self._redis.hdel(keys.gateway_members(self._gateway_id), field)
        return tuple(here)

    def restore_name(self, name: str, session_id: str, held_token_hash: str, *,
                     owner: bool = False) -> bool:
        """Put back a live session's name record after Redis lost it (restart, reaping).

        Keeps the token the client already holds; never takes the name from
        another live holder (returns False: the session lost its name). ``owner``:
        the session is logged in to the name's account.
        """
        with self.guard("restore"):
            reply, _ = self._claim(name, session_id, held_token_hash, "+" if owner else "",
                                   rooms=False)
        return reply.claimed

    def release_name(self, name: str, session_id: str) -> bool:
        """Free ``name`` if ``session_id`` still holds it (not if it was taken over); an empty
        ``session_id``: whichever session of this gateway holds it (an orphan). True when
        the record was deleted."""
        with self.guard("release"):
            return self._release_all([name_key(name)], session_id,
                                     self._gateway_id) == ["released"]

    def _release_all(self, lowers: Sequence[str], session_id: str, owner: str) -> list[str]:
        """The records first (``lua/release_name.lua``, each in its name's slot, pipelined),
        then ``owner``'s index entries, but for names another of its sessions holds."""
        outcomes = [text(outcome) for outcome in self._run_all(
            [scripts.ReleaseName(keys.user(lower), session_id, owner).call()
             for lower in lowers])]
        gone = [lower for lower, outcome in zip(lowers, outcomes, strict=True)
                if outcome != "kept"]
        if gone:
            self._redis.srem(keys.gateway_names(owner), *gone)
        return outcomes


__all__ = ["NameClaim", "NameRequests"]
