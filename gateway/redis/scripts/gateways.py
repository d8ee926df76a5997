"""Gateway liveness scripts: heartbeat, instance, retire, the dead, reaping."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from gateway.redis.scripts.core import (
    STOPPED,
    Builder,
    Script,
    ScriptCall,
    key_field,
    load,
    text_of,
)


@dataclass(frozen=True, slots=True)
class Beat(Builder):
    """A heartbeat in the liveness slot; its reply: 1 when the gateway was not registered."""

    SCRIPT: ClassVar[Script] = load("beat")
    gateways_key: str = key_field()
    grace_key: str = key_field()
    pulse_key: str = key_field()
    me: str = ""
    now_ms: int = 0
    lease_ms: int = 0
    registered_only: int = 0
    """1 while a reaper holds our lock: beat only if it has not taken us off the register."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether each of ``gateways`` is alive (the liveness slot's rule), after a beat of
    ``me`` unless it is empty: what scripts in other slots are told."""

    SCRIPT: ClassVar[Script] = load("verdict")
    gateways_key: str
    grace_key: str
    pulse_key: str
    now_ms: int
    lease_ms: int
    me: str
    gateways: tuple[str, ...]

    def call(self) -> ScriptCall:
        return ScriptCall(self.SCRIPT, (self.gateways_key, self.grace_key, self.pulse_key),
                          (self.now_ms, self.lease_ms, self.me, len(self.gateways),
                           *self.gateways))

    @staticmethod
    def read(raw: list[Any]) -> tuple[bool, ...]:
        return tuple(bool(flag) for flag in raw)


@dataclass(frozen=True, slots=True)
class Heartbeat(Builder):
    """A heartbeat's half in the gateway's own slot (``HeartbeatReply``)."""

    SCRIPT: ClassVar[Script] = load("heartbeat")
    instance_key: str = key_field()
    reaper_key: str = key_field()
    nonce: str = ""
    lease_ms: int = 0
    stopped: str = STOPPED


@dataclass(frozen=True, slots=True)
class HeartbeatReply:
    other_instance: str
    """The nonce of another process that holds this id now ('' when none does)."""
    reaping: bool
    """A peer holds the gateway's reaper lock: it is dropping this gateway's state."""

    @classmethod
    def read(cls, raw: list[Any]) -> HeartbeatReply:
        return cls(text_of(raw[0]), bool(raw[1]))


@dataclass(frozen=True, slots=True)
class ClaimInstance(Builder):
    SCRIPT: ClassVar[Script] = load("claim_instance")
    instance_key: str = key_field()
    nonce: str = ""
    lease_ms: int = 0
    force: int = 0
    stopped: str = STOPPED


@dataclass(frozen=True, slots=True)
class ClaimInstanceReply:
    ours: bool
    reserved_ms: int = 0
    holder: str = ""

    @classmethod
    def read(cls, raw: list[Any]) -> ClaimInstanceReply:
        if text_of(raw[0]) == "ours":
            return cls(True, reserved_ms=int(raw[1]))
        return cls(False, holder=text_of(raw[1]))


@dataclass(frozen=True, slots=True)
class Retire(Builder):
    SCRIPT: ClassVar[Script] = load("retire")
    instance_key: str = key_field()
    nonce: str = ""
    lease_ms: int = 0
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
class ForgetGateway(Builder):
    """Mark a dead gateway (or with ``force`` our crashed self) forgotten (a beat of 0); its
    reply: 1 marked, 0 alive after all."""

    SCRIPT: ClassVar[Script] = load("forget_gateway")
    gateways_key: str = key_field()
    grace_key: str = key_field()
    pulse_key: str = key_field()
    gw: str = ""
    now_ms: int = 0
    lease_ms: int = 0
    force: int = 0


@dataclass(frozen=True, slots=True)
class UnregisterGateway(Builder):
    """The end of a reap: a forgotten gateway leaves the register (unless it beat again)."""

    SCRIPT: ClassVar[Script] = load("unregister_gateway")
    gateways_key: str = key_field()
    gw: str = ""


@dataclass(frozen=True, slots=True)
class ReleaseReaper(Builder):
    SCRIPT: ClassVar[Script] = load("release_reaper")
    reaper_key: str = key_field()
    me: str = ""


@dataclass(frozen=True, slots=True)
class DropGateway(Builder):
    SCRIPT: ClassVar[Script] = load("drop_gateway")
    members_key: str = key_field()
    names_key: str = key_field()
    reaper_key: str = key_field()
    me: str = ""


__all__ = [
    "Beat",
    "ClaimInstance",
    "ClaimInstanceReply",
    "DeadGateways",
    "DropGateway",
    "ForgetGateway",
    "Heartbeat",
    "HeartbeatReply",
    "ReleaseReaper",
    "Retire",
    "UnregisterGateway",
    "Verdict",
]
