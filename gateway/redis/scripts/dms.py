"""The live dm script (in the sender's slot)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from gateway.redis.scripts.core import Builder, Script, ScriptCall, key_field, load


@dataclass(slots=True)  # not frozen, as PublishMessage
class SendDm(Builder):
    """Reply: ``deliver``, ``repeat`` or ``too_late``."""

    SCRIPT: ClassVar[Script] = load("send_dm")
    ref_key: str = key_field()
    """``keys.dm_ref``: in the sender's slot."""
    ref_ttl_ms: int = 0
    deadline_ms: int = 0
    """Last, as in ``PublishMessage``."""

    def call(self) -> ScriptCall:
        return ScriptCall(self.SCRIPT, (self.ref_key,), (self.ref_ttl_ms, self.deadline_ms))


__all__ = ["SendDm"]
