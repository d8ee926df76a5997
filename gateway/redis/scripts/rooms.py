"""Room scripts (each in the room's slot): publish a message, read history, renew an epoch,
join, leave; and the name's bucket of new rooms (in the name's slot)."""

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
    channel_key: str = key_field()
    """The room's channel, in the room's slot: declared so the slot check covers it."""
    epoch_candidate: str = ""
    line_prefix: bytes = b""
    line_suffix: bytes = b""
    history: int = 0
    publish: str = "PUBLISH"
    """``PUBLISH``, or ``SPUBLISH`` on Redis Cluster (``BrokerBase.publish_command``)."""
    ref_ttl_ms: int = 0
    room_ttl_ms: int = 0
    message_tag: bytes = b""
    deadline_ms: int = 0
    """Last, so tests can stand in for a late retry by changing it."""

    def call(self) -> ScriptCall:  # the hot path: no dataclass introspection
        return ScriptCall(self.SCRIPT, (self.seq_key, self.epoch_key, self.log_key, self.ref_key,
                                        self.members_key, self.channel_key),
                          (self.epoch_candidate, self.line_prefix, self.line_suffix,
                           self.history, self.publish, self.ref_ttl_ms, self.room_ttl_ms,
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
class Join(Builder):
    SCRIPT: ClassVar[Script] = load("join")
    members_key: str = key_field()
    seq_key: str = key_field()
    epoch_key: str = key_field()
    log_key: str = key_field()
    channel_key: str = key_field()
    lower: str = ""
    member_value: str = ""
    me: str = ""
    publish: str = "PUBLISH"
    joined_payload: bytes = b""
    room_ttl_ms: int = 0
    may_create: int = 1
    """0: a new room is refused (``new_room``) until the caller took a token for it."""
    verdict_gw: str = ""
    """The gateway the caller read a verdict about ('' none), and that verdict."""
    verdict_alive: int = 0


@dataclass(frozen=True, slots=True)
class JoinReply:
    outcome: str
    """``joined``, ``present``, ``new_room`` or ``verdict`` (about ``gateway``)."""
    gateway: str = ""

    @classmethod
    def read(cls, raw: list[Any]) -> JoinReply:
        return cls(text_of(raw[0]), text_of(raw[1]) if len(raw) > 1 else "")


@dataclass(frozen=True, slots=True)
class Leave(Builder):
    """Reply: ``left``, ``absent`` or ``other``."""

    SCRIPT: ClassVar[Script] = load("leave")
    members_key: str = key_field()
    seq_key: str = key_field()
    epoch_key: str = key_field()
    log_key: str = key_field()
    channel_key: str = key_field()
    lower: str = ""
    owner: str = ""
    publish: str = "PUBLISH"
    left_prefix: bytes = b""
    left_suffix: bytes = b""
    room_ttl_ms: int = 0


@dataclass(frozen=True, slots=True)
class TakeRoomToken(Builder):
    """Reply: 1 a token of the name's bucket of new rooms was taken, 0 it is empty."""

    SCRIPT: ClassVar[Script] = load("take_room_token")
    bucket_key: str = key_field()
    per_min: str | int = 0
    burst: int = 1


__all__ = [
    "HistoryReply",
    "Join",
    "JoinReply",
    "Leave",
    "PublishMessage",
    "PublishReply",
    "ReadHistory",
    "RenewEpoch",
    "TakeRoomToken",
]
