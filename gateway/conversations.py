"""Stored DM conversations and read state (issue 12): keys, scripts and the store.

A conversation is the pair of two names, keyed by their ``name_key`` sorted:
every key of it carries the hash tag ``{dm:<key_a>|<key_b>}``, so on Redis
Cluster a conversation lives in one slot and one script stores a message,
its id, its dedup key and its publication atomically. Like a room it has a
``seq`` (ids 1, 2, 3, ...), an ``epoch`` (created with SET NX by whoever touches
it first) and a ``log`` of the newest ``history`` dm lines, read with the
room's own ``READ_HISTORY`` script, so a conversation's history and resume
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

Steps of a stored dm: ``ROUTE_DM`` on the recipient's slot (display name,
live gateway, account?), the index writes, then ``STORE_DM`` on the
conversation's slot, which publishes the line to the recipient's gateway as
a ``D`` payload (``gateway.redis.payloads.DM``). A recipient that moved gateway
between the two steps misses the live copy; it gets the message from the
conversation's log on its next gap or login.

Thread-safe: no mutable state; redis-py pools connections.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import orjson
import redis

from gateway import account_keys
from gateway.redis import keys, payloads
from gateway.redis import scripts as lua
from gateway.redis.broker import INTERNAL_REF_TTL_MS, Broker, HistoryBatch
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


def read_field(room: str | None, peer: str | None) -> str:
    if room is not None:
        return room
    assert peer is not None
    return CONVERSATION_PREFIX + name_key(peer)


# ---------------------------------------------------------------------- scripts

ROUTE_DM = lua.LIVENESS + """
-- KEYS: recipient's user record, its account key, gateways zset, grace, pulse
-- ARGV: now ms, lease ms
-- -> {display name or '', live gateway or '', account 0/1, account display name or ''}
local rec = redis.call('HMGET', KEYS[1], 'name', 'gw')
local acct = redis.call('HGET', KEYS[2], 'name')
local gw = ''
if rec[2] then
  local now, lease = tonumber(ARGV[1]), tonumber(ARGV[2])
  if alive(KEYS[3], grace_open(KEYS[3], KEYS[4], KEYS[5], lease), rec[2], now, lease) then
    gw = rec[2]
  end
end
local has = 0
if acct then has = 1 end
return {rec[1] or '', gw, has, acct or ''}
"""

STORE_DM = lua.DEADLINE + """
-- KEYS: seq, epoch, log, ref (all of one conversation)
-- ARGV: epoch candidate, line prefix (up to '"id":'), history, channel or '',
--       payload head ('D' .. lower(to) .. '|'), ref ttl ms, deadline ms
-- -> {duplicate 0/1, id, epoch, line ('' for a duplicate)}, or {TOO_LATE}
local epoch = redis.call('GET', KEYS[2])
local seen = redis.call('GET', KEYS[4])
if not seen and too_late(ARGV[7]) then
  return {TOO_LATE}
end
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[2], epoch)
end
if seen then
  return {1, tonumber(seen), epoch, ''}
end
local id = redis.call('INCR', KEYS[1])
local sid = string.format('%d', id)
local line = ARGV[2] .. sid .. ',"epoch":"' .. epoch .. '"}'
redis.call('RPUSH', KEYS[3], line)
redis.call('LTRIM', KEYS[3], -tonumber(ARGV[3]), -1)
if ARGV[4] ~= '' then
  redis.call('PUBLISH', ARGV[4], ARGV[5] .. line)
end
redis.call('SET', KEYS[4], sid, 'PX', ARGV[6])
return {0, id, epoch, line}
"""

MARK_OWNER = """
-- KEYS: user record
-- ARGV: session id
-- -> 1 when the record is this session's and now says its claim is the account owner's
if redis.call('HGET', KEYS[1], 'sid') ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'acct', '1')
return 1
"""


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
        register = self._redis.register_script
        self._route = register(ROUTE_DM)
        self._store = register(STORE_DM)
        self._read_history = register(lua.READ_HISTORY)
        self._mark_owner = register(MARK_OWNER)

    def route(self, to: str) -> Route:
        with self._broker.guard("dm route"):
            shown, gw, account, account_name = self._route(
                keys=[keys.user(to), account_keys.account(to), keys.GATEWAYS, keys.GRACE,
                      keys.PULSE],
                args=[self._broker.now_ms(), self._broker.lease_ms])
        display = _text(shown) or _text(account_name) or to
        return Route(display, _text(gw) or None, bool(account))

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
        channel = "" if route.gateway is None else keys.gateway_channel(route.gateway)
        with self._broker.guard("dm"):
            reply = self._store(
                keys=[conversation_seq(sender, to), conversation_epoch(sender, to),
                      conversation_log(sender, to), ref_key],
                args=[uuid.uuid4().hex, prefix, self._history, channel,
                      payloads.DM + name_key(to).encode() + b"|",
                      INTERNAL_REF_TTL_MS if internal else self._ref_ttl_ms,
                      self._broker.deadline_ms()])
        if reply[0] == lua.TOO_LATE:
            raise self._broker.too_late("dm")
        duplicate, msg_id, epoch, line = reply
        return StoredDm(int(msg_id), _text(epoch), bytes(line),
                        bool(duplicate) and not internal)

    def read_history(self, me: str, peer: str, *, after: int | None = None,
                     before: int | None = None, limit: int = 50) -> HistoryBatch:
        """A conversation's retained dms: as ``Broker.read_history`` for a room."""
        ident: int | None
        if after is not None:
            mode, ident = b"a", max(after, 0)
        else:
            mode, ident = b"b", before
        with self._broker.guard("dm history"):
            reply = self._read_history(
                keys=[conversation_seq(me, peer), conversation_epoch(me, peer),
                      conversation_log(me, peer)],
                # room ttl 0: a conversation never expires (it has no members to outlive)
                args=[uuid.uuid4().hex, mode, "" if ident is None else ident, limit, 0])
        return _batch(name_key(peer), reply)

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
            return bool(self._mark_owner(keys=[keys.user(name)], args=[session_id]))

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


def _batch(peer_key: str, reply: list[Any]) -> HistoryBatch:
    epoch, last = _text(reply[0]), int(reply[1])
    complete = bool(reply[2])
    if len(reply) < 5:
        return HistoryBatch(peer_key, epoch, last, (), last + 1, complete)
    return HistoryBatch(peer_key, epoch, last, tuple(reply[4]), int(reply[3]), complete)


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
