"""Stored DM conversations and read state (issue 12): keys, scripts and the store.

A conversation is the pair of two names, keyed by their ``name_key`` sorted:
every key of it carries the hash tag ``{dm:<key_a>|<key_b>}``, so on Redis
Cluster a conversation lives in one slot and one script stores a message,
its id, its dedup key and its publication atomically. Like a room it has a
``seq`` (ids 1, 2, 3, ...), an ``epoch`` (created with SET NX by whoever touches
it first) and a ``log`` of the newest ``history`` dm lines, read with the
room's own ``ReadHistory`` script, so a conversation's history and resume
rules are a room's.

Which dms are stored **(ours)**: those where at least one side is an account.
Between two guests a dm stays live-only (``Broker.send_dm``: no id, no epoch),
since a guest name passes from person to person and nothing stored should
follow it. A dm to an account is stored whether its owner is online or not; a
dm to a guest needs the guest online (``no_such_user``).

Per user (in the name's slot ``{user:<lower>}``, accounts only):

- ``{user:<lower>}:dms`` hash: peer lower name -> peer display name, the
  user's conversations. Written *before* the message is stored, so a
  gateway dying in between leaves at worst a listed conversation without
  the message, never a stored message its owner cannot find.
- ``{user:<lower>}:read`` hash: a room name, or ``@`` + peer lower name ->
  the id the user has read up to (``read``).

Steps of a stored dm: ``RouteDm`` (``lua/route_dm.lua``) on the recipient's slot (display name,
live gateway, account?), the index writes, then ``StoreDm`` (``lua/store_dm.lua``) on the
conversation's slot; then the broker publishes the stored line to the
recipient's gateway (``Broker.publish_dm``, a ``D`` payload in that gateway's slot:
no script could, the channel is in another slot). A dm is stored, and
acknowledged, once ``StoreDm`` ran: a live copy lost (the publish failed, or the
recipient moved gateway between the steps) it gets from the conversation's log
on its next gap or login; a repeat (``StoreDm`` found the ref) is not published
again.

Thread-safe: no mutable state; redis-py pools connections.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import orjson
import redis

from gateway import account_keys
from gateway.redis import keys, scripts
from gateway.redis.broker import INTERNAL_REF_TTL_MS, Broker, HistoryBatch
from gateway.redis.scripts.conversations import (
    MarkOwner,
    RouteDm,
    RouteReply,
    StoreDm,
    StoreDmReply,
)
from protocol.errors import ErrorCode, ProtocolError
from protocol.names import CONVERSATION_PREFIX, name_key

# ---------------------------------------------------------------------- keys


def conversation_tag(a: str, b: str) -> str:
    """``{dm:<key_a>|<key_b>}`` with the two name keys sorted (names hold no ``|``)."""
    first, second = sorted((name_key(a), name_key(b)))
    return f"{{dm:{first}|{second}}}"


def conversation_seq(a: str, b: str) -> str:
    """string: the last id assigned in the conversation."""
    return f"{conversation_tag(a, b)}:seq"


def conversation_epoch(a: str, b: str) -> str:
    """string: the conversation's epoch."""
    return f"{conversation_tag(a, b)}:epoch"


def conversation_log(a: str, b: str) -> str:
    """list: the newest ``history`` dm lines, oldest first."""
    return f"{conversation_tag(a, b)}:log"


def conversation_ref(a: str, b: str, sender: str, ref: str) -> str:
    """string with a TTL: the id of the dm ``sender`` first sent with ``ref`` here."""
    return f"{conversation_tag(a, b)}:ref:{name_key(sender)}:{ref}"


def user_dms(name: str) -> str:
    """hash: peer lower name -> peer display name: the account's conversations."""
    return f"{keys.user(name)}:dms"


def user_read(name: str) -> str:
    """hash: room, or ``@`` + peer lower name -> id read up to."""
    return f"{keys.user(name)}:read"


def conversation_members(a: str, b: str) -> str:
    """Never written: a conversation has no members, and its history keeps no lifetime
    (room ttl 0), so ``ReadHistory`` never looks at it; named for the script's key slot."""
    return f"{conversation_tag(a, b)}:members"


def read_field(room: str | None, peer: str | None) -> str:
    if room is not None:
        return room
    assert peer is not None
    return CONVERSATION_PREFIX + name_key(peer)


# ---------------------------------------------------------------------- store


@dataclass(frozen=True, slots=True)
class Route:
    """Where a dm to a name goes."""

    display: str
    """The recipient's display name (its holder's, else its account's, else as given)."""
    gateway: str | None
    """The live gateway holding the name, if any."""
    account: bool


@dataclass(frozen=True, slots=True)
class StoredDm:
    id: int
    epoch: str
    line: bytes
    """The ``dm`` line (no newline); empty for a duplicate."""
    duplicate: bool


@dataclass(frozen=True, slots=True)
class Conversation:
    """One entry of an account's conversation list."""

    peer: str
    """The other side's display name."""
    peer_key: str


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Conversations:
    """Stored conversations and read state on the broker's Redis; thread-safe."""

    def __init__(self, broker: Broker, history: int, ref_ttl_ms: int = 300_000) -> None:
        self._broker = broker
        self._redis: redis.Redis = broker.redis
        self._history = history
        self._ref_ttl_ms = ref_ttl_ms

    def route(self, to: str) -> Route:
        with self._broker.guard("dm route"):
            reply = RouteReply.read(self._broker.run_script(RouteDm(
                keys.user(to), account_keys.account(to)).call()))
            live = self._broker.alive([reply.gateway]).get(reply.gateway, False)
        display = reply.display or reply.account_display or to
        return Route(display, reply.gateway if live else None, reply.account)

    def send(self, sender: str, sender_account: bool, to: str, text: str, ts: float,
             ref: str | None) -> StoredDm | None:
        """Store and publish a dm of a conversation with an account on either side.

        None when neither side is an account (the caller sends it live-only);
        ``no_such_user`` for a guest recipient who is offline.
        """
        route = self.route(to)
        if not route.account and not sender_account:
            return None
        if not route.account and route.gateway is None:
            raise ProtocolError(ErrorCode.NO_SUCH_USER, f"no user {to!r} is connected")
        with self._broker.guard("dm index"):
            pipe = self._redis.pipeline(transaction=False)
            if sender_account:
                pipe.hset(user_dms(sender), name_key(to), route.display)
            if route.account:
                pipe.hset(user_dms(to), name_key(sender), sender)
            pipe.execute()
        head = orjson.dumps({"type": "dm", "from": sender, "to": route.display, "text": text,
                             "ts": ts})
        prefix = head[:-1] + b',"id":'
        internal = ref is None
        ref_key = conversation_ref(sender, to, sender,
                                   f"~{uuid.uuid4().hex}" if internal else str(ref))
        with self._broker.guard("dm"):
            reply = StoreDmReply.read(self._broker.run_script(StoreDm(
                conversation_seq(sender, to), conversation_epoch(sender, to),
                conversation_log(sender, to), ref_key,
                epoch_candidate=uuid.uuid4().hex, line_prefix=prefix, history=self._history,
                ref_ttl_ms=INTERNAL_REF_TTL_MS if internal else self._ref_ttl_ms,
                deadline_ms=self._broker.deadline_ms()).call()))
        if reply.outcome == "too_late":
            raise self._broker.too_late("dm")
        if reply.line and route.gateway is not None:
            self._broker.publish_dm(route.gateway, to, reply.line)
        return StoredDm(reply.id, reply.epoch, reply.line,
                        reply.outcome == "repeat" and not internal)

    def read_history(self, me: str, peer: str, *, after: int | None = None,
                     before: int | None = None, limit: int = 50) -> HistoryBatch:
        """A conversation's retained dms: as ``Broker.read_history`` for a room."""
        ident: int | None
        if after is not None:
            mode, ident = b"a", max(after, 0)
        else:
            mode, ident = b"b", before
        with self._broker.guard("dm history"):
            reply = scripts.HistoryReply.read(self._broker.run_script(scripts.ReadHistory(
                conversation_seq(me, peer), conversation_epoch(me, peer),
                conversation_log(me, peer), conversation_members(me, peer),
                epoch_candidate=uuid.uuid4().hex, mode=mode, id="" if ident is None else ident,
                limit=limit, room_ttl_ms=0).call()))  # 0: a conversation never expires
        return HistoryBatch(name_key(peer), reply.epoch, reply.last_id, reply.lines,
                            reply.first_id, reply.complete)

    def conversations(self, name: str) -> list[Conversation]:
        """The account's conversations, by peer key."""
        with self._broker.guard("dm list"):
            raw = self._redis.hgetall(user_dms(name))
        return sorted((Conversation(_text(v), _text(k)) for k, v in raw.items()),
                      key=lambda c: c.peer_key)

    def reads(self, name: str) -> dict[str, int]:
        """The account's read marks: room or ``@peer_key`` -> id."""
        with self._broker.guard("read state"):
            raw = self._redis.hgetall(user_read(name))
        out = {}
        for k, v in raw.items():
            try:
                out[_text(k)] = int(_text(v))
            except ValueError:
                continue
        return out

    def set_read(self, name: str, room: str | None, peer: str | None, msg_id: int) -> None:
        with self._broker.guard("read state"):
            self._redis.hset(user_read(name), read_field(room, peer), msg_id)

    def mark_owner(self, name: str, session_id: str) -> bool:
        """After ``register``: the name's record says its claim is the owner's, so the
        session's token resumes the account."""
        with self._broker.guard("register"):
            return bool(self._broker.run_script(MarkOwner(keys.user(name), session_id).call()))

    def forget_user(self, name: str) -> None:
        """Drop an account's conversation list and read state (``chat-admin delete``)."""
        with self._broker.guard("forget user"):
            self._redis.delete(user_dms(name), user_read(name))


def forget_conversations(client: redis.Redis, name: str) -> int:
    """Delete ``name``'s conversations (both sides lose them), its conversation list and
    read state: ``chat-admin delete``, so whoever takes the name next reads none of it.
    One command per conversation (their slots differ); returns how many were deleted."""
    peers = [_text(k) for k in client.hkeys(user_dms(name))]
    for peer in peers:
        client.delete(conversation_seq(name, peer), conversation_epoch(name, peer),
                      conversation_log(name, peer))
    client.delete(user_dms(name), user_read(name))
    return len(peers)


__all__ = [
    "Conversation",
    "Conversations",
    "Route",
    "StoredDm",
    "conversation_tag",
    "forget_conversations",
    "read_field",
    "user_dms",
    "user_read",
]
