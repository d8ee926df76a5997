"""Room scripts: publish a message, read history, renew an epoch, join, leave, who."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from gateway.redis.scripts.core import Builder, Script, ScriptCall, key_field, load, text_of


@dataclass(slots=True)  # not frozen: built for every message, and a frozen init costs more
class PublishMessage(Builder):
    SCRIPT: ClassVar[Script] = load("publish_message")
    seq_key: str = key_field()
    epoch_key: str = key_field()
    log_key: str = key_field()
    ref_key: str = key_field()
    members_key: str = key_field()
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
            return cls(text_of(raw[0]))
        return cls(text_of(raw[0]), int(raw[1]), text_of(raw[2]))


@dataclass(frozen=True, slots=True)
class RenewEpoch(Builder):
    SCRIPT: ClassVar[Script] = load("renew_epoch")
    epoch_key: str = key_field()
    seq_key: str = key_field()
    log_key: str = key_field()
    members_key: str = key_field()
    rolled_back: str = ""
    fresh: str = ""
    room_ttl_ms: int = 0


@dataclass(frozen=True, slots=True)
class ReadHistory(Builder):
    SCRIPT: ClassVar[Script] = load("read_history")
    seq_key: str = key_field()
    epoch_key: str = key_field()
    log_key: str = key_field()
    members_key: str = key_field()
    epoch_candidate: str = ""
    mode: bytes = b"a"
    """``a``: after ``id``; ``b``: the newest ``limit`` before ``id``."""
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
        epoch, last = text_of(raw[0]), int(raw[1])
        if len(raw) < 5:
            return cls(epoch, last, bool(raw[2]) if len(raw) > 2 else True, last + 1, ())
        return cls(epoch, last, bool(raw[2]), int(raw[3]), tuple(raw[4]))


@dataclass(frozen=True, slots=True)
class Who(Builder):
    SCRIPT: ClassVar[Script] = load("who")
    members_key: str = key_field()
    gateways_key: str = key_field()
    grace_key: str = key_field()
    pulse_key: str = key_field()
    now_ms: int = 0
    lease_ms: int = 0


@dataclass(frozen=True, slots=True)
class Join(Builder):
    SCRIPT: ClassVar[Script] = load("join")
    members_key: str = key_field()
    gateways_key: str = key_field()
    my_members_key: str = key_field()
    grace_key: str = key_field()
    pulse_key: str = key_field()
    name_rooms_key: str = key_field()
    seq_key: str = key_field()
    epoch_key: str = key_field()
    log_key: str = key_field()
    new_rooms_key: str = key_field()
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
class Leave(Builder):
    SCRIPT: ClassVar[Script] = load("leave")
    members_key: str = key_field()
    my_members_key: str = key_field()
    name_rooms_key: str = key_field()
    seq_key: str = key_field()
    epoch_key: str = key_field()
    log_key: str = key_field()
    lower: str = ""
    me: str = ""
    channel: str = ""
    left_prefix: bytes = b""
    left_suffix: bytes = b""
    membership: str = ""
    room: str = ""
    room_ttl_ms: int = 0


__all__ = [
    "HistoryReply",
    "Join",
    "Leave",
    "PublishMessage",
    "PublishReply",
    "ReadHistory",
    "RenewEpoch",
    "Who",
]
