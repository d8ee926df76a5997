"""The dm script."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from gateway.redis.scripts.core import Builder, Script, ScriptCall, key_field, load, text_of


@dataclass(slots=True)  # not frozen, as PublishMessage
class SendDm(Builder):
    SCRIPT: ClassVar[Script] = load("send_dm")
    user_key: str = key_field()
    gateways_key: str = key_field()
    ref_key: str = key_field()
    grace_key: str = key_field()
    pulse_key: str = key_field()
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
        return cls(text_of(raw[0]), bytes(raw[1]) if len(raw) > 1 else b"")


__all__ = ["DmReply", "SendDm"]
