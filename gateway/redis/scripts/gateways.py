"""Gateway liveness scripts: heartbeat, instance, retire, the dead, reaping."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from gateway.redis.scripts.core import (
    STOPPED,
    Arg,
    Builder,
    Script,
    ScriptCall,
    key_field,
    load,
    text_of,
)


@dataclass(frozen=True, slots=True)
class Heartbeat(Builder):
    SCRIPT: ClassVar[Script] = load("heartbeat")
    gateways_key: str = key_field()
    grace_key: str = key_field()
    pulse_key: str = key_field()
    instance_key: str = key_field()
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
        return cls(bool(raw[0]), text_of(raw[1]))


@dataclass(frozen=True, slots=True)
class ClaimInstance(Builder):
    SCRIPT: ClassVar[Script] = load("claim_instance")
    instance_key: str = key_field()
    gateways_key: str = key_field()
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
        if text_of(raw[0]) == "ours":
            return cls(True, reserved_ms=int(raw[1]))
        beat = text_of(raw[2]) if raw[2] is not None else ""
        return cls(False, holder=text_of(raw[1]),
                   last_beat_ms=int(float(beat)) if beat else None)


@dataclass(frozen=True, slots=True)
class Retire(Builder):
    SCRIPT: ClassVar[Script] = load("retire")
    gateways_key: str = key_field()
    grace_key: str = key_field()
    pulse_key: str = key_field()
    instance_key: str = key_field()
    me: str = ""
    now_ms: int = 0
    lease_ms: int = 0
    nonce: str = ""
    stopped: str = STOPPED


@dataclass(frozen=True, slots=True)
class DeadGateways(Builder):
    SCRIPT: ClassVar[Script] = load("dead_gateways")
    gateways_key: str = key_field()
    grace_key: str = key_field()
    pulse_key: str = key_field()
    now_ms: int = 0
    lease_ms: int = 0


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
        if text_of(raw[0]) == "alive":
            return cls(True)
        return cls(False, int(raw[1]))


__all__ = [
    "ClaimInstance",
    "ClaimInstanceReply",
    "DeadGateways",
    "Heartbeat",
    "HeartbeatReply",
    "Reap",
    "ReapMembership",
    "ReapName",
    "ReapReply",
    "Retire",
]
