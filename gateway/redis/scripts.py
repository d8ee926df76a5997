"""The Redis layer's Lua scripts: one ``.lua`` file each, one typed builder each.

Each script does a whole request in one round trip and atomically, so a
request Redis refuses is never half done, and a reply lost on the way back
cannot leave a partial state behind. Scripts are idempotent where a retry may
send them twice (every publication carries a dedup key). The scripts whose
refusal a client sees (a message, a dm) carry a deadline and write nothing
when Redis runs them after it (``lua/deadline.lua``).

The files live in ``gateway/redis/lua/`` (package data). A script reads its
keys and arguments in order through two cursors (``lua/args.lua``:
``local room_key = key()``) and names each one; its builder here is a frozen
dataclass whose fields are those names, in the same order, and whose
``call()`` makes the ``ScriptCall``. Replies come back as named types: a
status word (``sent``, ``repeat``, ``too_late`` ...), never a magic number.
A line ``-- includes: liveness, deadline`` at the top of a file prepends
those shared snippets (after ``args.lua``) when it is loaded.

Conventions: times are ms since the epoch from the gateway's clock (passed in,
never Redis ``TIME``, so tests can move the clock), except that a deadline is
compared with Redis ``TIME``, the clock of the moment a script runs; whether a
gateway is alive is decided by ``lua/liveness.lua``, the one rule every script
shares (Python asks ``who`` and ``dead_gateways`` rather than judge heartbeats
itself); membership values are ``<gateway id>|<Name>`` and names hold no
``|``, so the gateway id is everything before the last ``|``. A "lower name"
is ``protocol.names.name_key`` of the name (case and look-alikes folded),
computed in Python and passed in. Lines of JSON are built with
``protocol.codec`` and cut around the one value only Redis knows (an id, a
display name): Lua only concatenates. Only Lua 5.1 as Redis embeds it (no
cjson), so the scripts also run on fakeredis.
"""

from __future__ import annotations

import hashlib
from dataclasses import astuple, dataclass, field, fields
from importlib import resources
from typing import Any, ClassVar

Arg = str | bytes | int

STOPPED = "~stopped"
"""A gateway's instance key after its graceful shutdown (no nonce is spelled so)."""


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script as Redis gets it: by its SHA1, by its text when Redis lacks it."""

    name: str
    source: bytes
    sha: bytes

    @classmethod
    def of(cls, name: str, source: str) -> Script:
        data = source.encode()
        return cls(name, data, hashlib.sha1(data).hexdigest().encode())


@dataclass(frozen=True, slots=True)
class ScriptCall:
    """One run of a script: what the publisher writes, or the broker runs on its client."""

    script: Script
    keys: tuple[str, ...]
    args: tuple[Arg, ...]


_LUA = resources.files("gateway.redis") / "lua"


def _text(name: str) -> str:
    return (_LUA / f"{name}.lua").read_text(encoding="utf-8")


def load(name: str) -> Script:
    """``lua/<name>.lua`` with ``args.lua`` and its ``-- includes:`` snippets before it."""
    body = _text(name)
    parts = [_text("args")]
    for line in body.splitlines():
        if line.startswith("-- includes:"):
            parts += [_text(part.strip()) for part in line.split(":", 1)[1].split(",")]
    return Script.of(name, "\n".join([*parts, body]))


# Snippets for scripts kept outside the Redis layer (gateway/conversations.py), which
# address KEYS and ARGV by position: the shared rules, and one whole script.
LIVENESS = _text("liveness")
"""``grace_open``, ``alive``, ``beat``: the one liveness rule (``lua/liveness.lua``)."""
TOO_LATE = -1
"""What a script written with ``DEADLINE`` answers past its deadline."""
DEADLINE = f"local TOO_LATE = {TOO_LATE}\n" + _text("deadline")
"""``too_late(deadline)`` (``lua/deadline.lua``), and ``TOO_LATE``."""
READ_HISTORY = load("read_history").source.decode()
"""``lua/read_history.lua`` whole (keys seq, epoch, log; args candidate, mode, id, limit)."""


def _text_of(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# ---------------------------------------------------------------- builders
#
# Field order is the order the script reads: keys first (``key()``), then
# arguments (``arg()``). Fields marked ``key`` go to KEYS.


def _key() -> Any:
    return field(metadata={"key": True})


class _Builder:
    SCRIPT: ClassVar[Script]

    def call(self) -> ScriptCall:
        values = astuple(self)  # type: ignore[call-overload]
        marks = [f.metadata.get("key", False) for f in fields(self)]  # type: ignore[arg-type]
        return ScriptCall(
            self.SCRIPT,
            tuple(v for v, is_key in zip(values, marks, strict=True) if is_key),
            tuple(v for v, is_key in zip(values, marks, strict=True) if not is_key))


@dataclass(slots=True)  # not frozen: built for every message, and a frozen init costs more
class PublishMessage(_Builder):
    SCRIPT: ClassVar[Script] = load("publish_message")
    seq_key: str = _key()
    epoch_key: str = _key()
    log_key: str = _key()
    ref_key: str = _key()
    members_key: str = _key()
    epoch_candidate: str = ""
    line_prefix: bytes = b""
    line_suffix: bytes = b""
    history: int = 0
    channel: str = ""
    ref_ttl_ms: int = 0
    room_ttl_ms: int = 0
    message_tag: bytes = b""
    deadline_ms: int = 0
    """Last, so tests can stand in for a late retry by changing it."""

    def call(self) -> ScriptCall:  # the hot path: no dataclass introspection
        return ScriptCall(self.SCRIPT, (self.seq_key, self.epoch_key, self.log_key, self.ref_key,
                                        self.members_key),
                          (self.epoch_candidate, self.line_prefix, self.line_suffix,
                           self.history, self.channel, self.ref_ttl_ms, self.room_ttl_ms,
                           self.message_tag, self.deadline_ms))


@dataclass(frozen=True, slots=True)
class PublishReply:
    outcome: str
    """``sent``, ``repeat`` (the ref was seen: nothing written, the first id) or ``too_late``."""
    id: int = 0
    epoch: str = ""

    @classmethod
    def read(cls, raw: list[Any]) -> PublishReply:
        if len(raw) == 1:
            return cls(_text_of(raw[0]))
        return cls(_text_of(raw[0]), int(raw[1]), _text_of(raw[2]))


@dataclass(slots=True)  # not frozen, as PublishMessage
class SendDm(_Builder):
    SCRIPT: ClassVar[Script] = load("send_dm")
    user_key: str = _key()
    gateways_key: str = _key()
    ref_key: str = _key()
    grace_key: str = _key()
    pulse_key: str = _key()
    now_ms: int = 0
    lease_ms: int = 0
    line_prefix: bytes = b""
    line_suffix: bytes = b""
    lower_to: str = ""
    ref_ttl_ms: int = 0
    gateway_prefix: str = ""
    to_as_given: str = ""
    dm_tag: bytes = b""
    deadline_ms: int = 0
    """Last, as in ``PublishMessage``."""

    def call(self) -> ScriptCall:
        return ScriptCall(self.SCRIPT, (self.user_key, self.gateways_key, self.ref_key,
                                        self.grace_key, self.pulse_key),
                          (self.now_ms, self.lease_ms, self.line_prefix, self.line_suffix,
                           self.lower_to, self.ref_ttl_ms, self.gateway_prefix,
                           self.to_as_given, self.dm_tag, self.deadline_ms))


@dataclass(frozen=True, slots=True)
class DmReply:
    outcome: str
    """``sent``, ``repeat``, ``no_such_user`` or ``too_late``."""
    line: bytes = b""

    @classmethod
    def read(cls, raw: list[Any]) -> DmReply:
        return cls(_text_of(raw[0]), bytes(raw[1]) if len(raw) > 1 else b"")


@dataclass(frozen=True, slots=True)
class RenewEpoch(_Builder):
    SCRIPT: ClassVar[Script] = load("renew_epoch")
    epoch_key: str = _key()
    seq_key: str = _key()
    log_key: str = _key()
    members_key: str = _key()
    rolled_back: str = ""
    fresh: str = ""
    room_ttl_ms: int = 0


@dataclass(frozen=True, slots=True)
class ReadHistory(_Builder):
    SCRIPT: ClassVar[Script] = load("read_history")
    seq_key: str = _key()
    epoch_key: str = _key()
    log_key: str = _key()
    members_key: str = _key()
    epoch_candidate: str = ""
    mode: bytes = b"a"
    """``a``: after ``id``; ``b``: the newest ``limit`` before ``id``; ``p``: position."""
    id: str | int = ""
    limit: int = 0
    room_ttl_ms: int = 0


@dataclass(frozen=True, slots=True)
class HistoryReply:
    epoch: str
    last_id: int
    complete: bool
    first_id: int
    lines: tuple[bytes, ...]

    @classmethod
    def read(cls, raw: list[Any]) -> HistoryReply:
        epoch, last = _text_of(raw[0]), int(raw[1])
        if len(raw) < 5:
            return cls(epoch, last, bool(raw[2]) if len(raw) > 2 else True, last + 1, ())
        return cls(epoch, last, bool(raw[2]), int(raw[3]), tuple(raw[4]))


@dataclass(frozen=True, slots=True)
class Heartbeat(_Builder):
    SCRIPT: ClassVar[Script] = load("heartbeat")
    gateways_key: str = _key()
    grace_key: str = _key()
    pulse_key: str = _key()
    instance_key: str = _key()
    me: str = ""
    now_ms: int = 0
    lease_ms: int = 0
    nonce: str = ""
    stopped: str = STOPPED


@dataclass(frozen=True, slots=True)
class HeartbeatReply:
    added: bool
    """The gateway was not registered: its first beat, or it was reaped meanwhile."""
    other_instance: str = ""
    """The nonce of another process that holds this id now ('' when none does)."""

    @classmethod
    def read(cls, raw: list[Any]) -> HeartbeatReply:
        return cls(bool(raw[0]), _text_of(raw[1]))


@dataclass(frozen=True, slots=True)
class ClaimInstance(_Builder):
    SCRIPT: ClassVar[Script] = load("claim_instance")
    instance_key: str = _key()
    gateways_key: str = _key()
    me: str = ""
    nonce: str = ""
    lease_ms: int = 0
    force: int = 0
    stopped: str = STOPPED


@dataclass(frozen=True, slots=True)
class ClaimInstanceReply:
    ours: bool
    reserved_ms: int = 0
    holder: str = ""
    last_beat_ms: int | None = None

    @classmethod
    def read(cls, raw: list[Any]) -> ClaimInstanceReply:
        if _text_of(raw[0]) == "ours":
            return cls(True, reserved_ms=int(raw[1]))
        beat = _text_of(raw[2]) if raw[2] is not None else ""
        return cls(False, holder=_text_of(raw[1]),
                   last_beat_ms=int(float(beat)) if beat else None)


@dataclass(frozen=True, slots=True)
class Retire(_Builder):
    SCRIPT: ClassVar[Script] = load("retire")
    gateways_key: str = _key()
    grace_key: str = _key()
    pulse_key: str = _key()
    instance_key: str = _key()
    me: str = ""
    now_ms: int = 0
    lease_ms: int = 0
    nonce: str = ""
    stopped: str = STOPPED


@dataclass(frozen=True, slots=True)
class DeadGateways(_Builder):
    SCRIPT: ClassVar[Script] = load("dead_gateways")
    gateways_key: str = _key()
    grace_key: str = _key()
    pulse_key: str = _key()
    now_ms: int = 0
    lease_ms: int = 0


@dataclass(frozen=True, slots=True)
class Who(_Builder):
    SCRIPT: ClassVar[Script] = load("who")
    members_key: str = _key()
    gateways_key: str = _key()
    grace_key: str = _key()
    pulse_key: str = _key()
    now_ms: int = 0
    lease_ms: int = 0


@dataclass(frozen=True, slots=True)
class RoomOfName:
    """A room of the name whose membership a token takeover may move (``ClaimName``)."""

    members_key: str
    room: str


@dataclass(frozen=True, slots=True)
class ClaimName(_Builder):
    SCRIPT: ClassVar[Script] = load("claim_name")
    user_key: str = _key()
    gateways_key: str = _key()
    my_names_key: str = _key()
    grace_key: str = _key()
    pulse_key: str = _key()
    my_members_key: str = _key()
    name_rooms_key: str = _key()
    holder_members_key: str = _key()
    display: str = ""
    session: str = ""
    new_hash: str = ""
    presented_hash: str = ""
    me: str = ""
    now_ms: int = 0
    lease_ms: int = 0
    lower: str = ""
    gateway_prefix: str = ""
    holder_seen: str = ""
    kick_tag: bytes = b""
    rooms: tuple[RoomOfName, ...] = ()
    """The name's rooms seen before the claim: one key and one argument each."""
    account_key: str = ""
    """The name's account (``gateway.account_keys.account``), read after the rooms."""

    def call(self) -> ScriptCall:
        keys = (self.user_key, self.gateways_key, self.my_names_key, self.grace_key,
                self.pulse_key, self.my_members_key, self.name_rooms_key,
                self.holder_members_key, *(r.members_key for r in self.rooms),
                self.account_key)
        args: tuple[Arg, ...] = (
            self.display, self.session, self.new_hash, self.presented_hash, self.me,
            self.now_ms, self.lease_ms, self.lower, self.gateway_prefix, self.holder_seen,
            self.kick_tag, len(self.rooms), *(r.room for r in self.rooms))
        return ScriptCall(self.SCRIPT, keys, args)


@dataclass(frozen=True, slots=True)
class ClaimReply:
    claimed: bool
    replaced_gateway: str = ""
    replaced_session: str = ""
    rooms: tuple[str, ...] = ()
    """Rooms of the name whose membership is now this gateway's."""
    account: bool = False
    """The name has an account and this claim is its owner's."""

    @classmethod
    def read(cls, raw: list[Any]) -> ClaimReply:
        if _text_of(raw[0]) != "claimed":
            return cls(False)
        return cls(True, _text_of(raw[1]), _text_of(raw[2]),
                   tuple(_text_of(room) for room in raw[3]), bool(raw[4]))


@dataclass(frozen=True, slots=True)
class ReleaseName(_Builder):
    SCRIPT: ClassVar[Script] = load("release_name")
    user_key: str = _key()
    my_names_key: str = _key()
    session: str = ""
    me: str = ""
    lower: str = ""


@dataclass(frozen=True, slots=True)
class Join(_Builder):
    SCRIPT: ClassVar[Script] = load("join")
    members_key: str = _key()
    gateways_key: str = _key()
    my_members_key: str = _key()
    grace_key: str = _key()
    pulse_key: str = _key()
    name_rooms_key: str = _key()
    seq_key: str = _key()
    epoch_key: str = _key()
    log_key: str = _key()
    new_rooms_key: str = _key()
    lower: str = ""
    member_value: str = ""
    me: str = ""
    now_ms: int = 0
    lease_ms: int = 0
    channel: str = ""
    joined_payload: bytes = b""
    membership: str = ""
    room: str = ""
    room_ttl_ms: int = 0
    new_rooms_per_min: str | int = 0
    """0: no limit on the rooms a name creates."""
    new_rooms_burst: int = 1


@dataclass(frozen=True, slots=True)
class Leave(_Builder):
    SCRIPT: ClassVar[Script] = load("leave")
    members_key: str = _key()
    my_members_key: str = _key()
    name_rooms_key: str = _key()
    seq_key: str = _key()
    epoch_key: str = _key()
    log_key: str = _key()
    lower: str = ""
    me: str = ""
    channel: str = ""
    left_prefix: bytes = b""
    left_suffix: bytes = b""
    membership: str = ""
    room: str = ""
    room_ttl_ms: int = 0


@dataclass(frozen=True, slots=True)
class ReapMembership:
    """One membership a reap drops: its keys, then what the ``left`` needs."""

    members_key: str
    name_rooms_key: str
    seq_key: str
    epoch_key: str
    log_key: str
    lower: str
    membership: str
    channel: str
    left_prefix: bytes
    left_suffix: bytes
    room: str


@dataclass(frozen=True, slots=True)
class ReapName:
    user_key: str
    lower: str


@dataclass(frozen=True, slots=True)
class Reap:
    SCRIPT: ClassVar[Script] = load("reap")
    gateways_key: str
    grace_key: str
    pulse_key: str
    its_members_key: str
    its_names_key: str
    reaper_key: str
    gw: str
    now_ms: int
    lease_ms: int
    force: bool
    final: bool
    me: str
    room_ttl_ms: int
    memberships: tuple[ReapMembership, ...]
    names: tuple[ReapName, ...]

    def call(self) -> ScriptCall:
        keys = [self.gateways_key, self.grace_key, self.pulse_key, self.its_members_key,
                self.its_names_key, self.reaper_key]
        args: list[Arg] = [self.gw, self.now_ms, self.lease_ms, int(self.force),
                           len(self.memberships), len(self.names), int(self.final), self.me,
                           self.room_ttl_ms]
        for m in self.memberships:
            keys += [m.members_key, m.name_rooms_key, m.seq_key, m.epoch_key, m.log_key]
            args += [m.lower, m.membership, m.channel, m.left_prefix, m.left_suffix, m.room]
        for n in self.names:
            keys.append(n.user_key)
            args.append(n.lower)
        return ScriptCall(self.SCRIPT, tuple(keys), tuple(args))


@dataclass(frozen=True, slots=True)
class ReapReply:
    alive: bool
    """The gateway was alive after all: nothing done."""
    lefts: int = 0

    @classmethod
    def read(cls, raw: list[Any]) -> ReapReply:
        if _text_of(raw[0]) == "alive":
            return cls(True)
        return cls(False, int(raw[1]))


__all__ = [
    "DEADLINE",
    "LIVENESS",
    "READ_HISTORY",
    "TOO_LATE",
    "STOPPED",
    "ClaimInstance",
    "ClaimInstanceReply",
    "ClaimName",
    "ClaimReply",
    "HeartbeatReply",
    "Retire",
    "DeadGateways",
    "DmReply",
    "Heartbeat",
    "HistoryReply",
    "Join",
    "Leave",
    "PublishMessage",
    "PublishReply",
    "ReadHistory",
    "Reap",
    "ReapMembership",
    "ReapName",
    "ReapReply",
    "ReleaseName",
    "RenewEpoch",
    "RoomOfName",
    "Script",
    "ScriptCall",
    "SendDm",
    "Who",
    "load",
]
