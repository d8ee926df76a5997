"""Conversation scripts (``gateway.conversations``): route a dm, store one, mark an owner.

A conversation's history is read with the rooms' ``ReadHistory``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from gateway.redis.scripts.core import Builder, Script, key_field, load, text_of


@dataclass(frozen=True, slots=True)
class RouteDm(Builder):
    SCRIPT: ClassVar[Script] = load("route_dm")
    user_key: str = key_field()
    account_key: str = key_field()


@dataclass(frozen=True, slots=True)
class RouteReply:
    display: str
    """The holder's display name, or empty when nobody holds the name."""
    gateway: str
    """The holder's gateway (alive or not: ask ``Broker.alive``), else empty."""
    account: bool
    account_display: str
    """The account's display name, or empty without an account."""

    @classmethod
    def read(cls, raw: list[Any]) -> RouteReply:
        return cls(text_of(raw[0]), text_of(raw[1]), bool(raw[2]), text_of(raw[3]))


@dataclass(frozen=True, slots=True)
class StoreDm(Builder):
    SCRIPT: ClassVar[Script] = load("store_dm")
    seq_key: str = key_field()
    epoch_key: str = key_field()
    log_key: str = key_field()
    ref_key: str = key_field()
    epoch_candidate: str = ""
    line_prefix: bytes = b""
    """The dm line up to ``"id":``."""
    history: int = 0
    ref_ttl_ms: int = 0
    deadline_ms: int = 0


@dataclass(frozen=True, slots=True)
class StoreDmReply:
    outcome: str
    """``sent``, ``repeat`` (the ref was seen: nothing written, the first id) or ``too_late``."""
    id: int = 0
    epoch: str = ""
    line: bytes = b""
    """The stored line; empty for a repeat."""

    @classmethod
    def read(cls, raw: list[Any]) -> StoreDmReply:
        if len(raw) == 1:
            return cls(text_of(raw[0]))
        return cls(text_of(raw[0]), int(raw[1]), text_of(raw[2]), bytes(raw[3]))


@dataclass(frozen=True, slots=True)
class MarkOwner(Builder):
    SCRIPT: ClassVar[Script] = load("mark_owner")
    user_key: str = key_field()
    session: str = ""


__all__ = ["MarkOwner", "RouteDm", "RouteReply", "StoreDm", "StoreDmReply"]
