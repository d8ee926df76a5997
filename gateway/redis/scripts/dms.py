"""The live dm script (in the recipient's slot)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from gateway.redis.scripts.core import Builder, Script, ScriptCall, key_field, load, text_of


@dataclass(slots=True)  # not frozen, as PublishMessage
class SendDm(Builder):
    SCRIPT: ClassVar[Script] = load("send_dm")
    user_key: str = key_field()
    ref_key: str = key_field()
    """``keys.dm_ref``: in the recipient's slot, with its record."""
    line_prefix: bytes = b""
    line_suffix: bytes = b""
    to_as_given: str = ""
    ref_ttl_ms: int = 0
    deadline_ms: int = 0
    """Last, as in ``PublishMessage``."""

    def call(self) -> ScriptCall:
        return ScriptCall(self.SCRIPT, (self.user_key, self.ref_key),
                          (self.line_prefix, self.line_suffix, self.to_as_given,
                           self.ref_ttl_ms, self.deadline_ms))


@dataclass(frozen=True, slots=True)
class DmReply:
    outcome: str
    """``deliver`` (publish ``line`` to ``gateway`` if it is alive), ``repeat``,
    ``no_such_user`` or ``too_late``."""
    line: bytes = b""
    gateway: str = ""

    @classmethod
    def read(cls, raw: list[Any]) -> DmReply:
        return cls(text_of(raw[0]), bytes(raw[1]) if len(raw) > 1 else b"",
                   text_of(raw[2]) if len(raw) > 2 else "")


__all__ = ["DmReply", "SendDm"]
