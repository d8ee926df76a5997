"""Name scripts: claim (with the rooms a takeover brings), release."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from gateway.redis.scripts.core import Arg, Builder, Script, ScriptCall, key_field, load, text_of


@dataclass(frozen=True, slots=True)
class RoomOfName:
    """A room of the name whose membership a token takeover may move (``ClaimName``)."""

    members_key: str
    room: str


@dataclass(frozen=True, slots=True)
class ClaimName(Builder):
    SCRIPT: ClassVar[Script] = load("claim_name")
    user_key: str = key_field()
    gateways_key: str = key_field()
    my_names_key: str = key_field()
    grace_key: str = key_field()
    pulse_key: str = key_field()
    my_members_key: str = key_field()
    name_rooms_key: str = key_field()
    holder_members_key: str = key_field()
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
        if text_of(raw[0]) != "claimed":
            return cls(False)
        return cls(True, text_of(raw[1]), text_of(raw[2]),
                   tuple(text_of(room) for room in raw[3]), bool(raw[4]))


@dataclass(frozen=True, slots=True)
class ReleaseName(Builder):
    SCRIPT: ClassVar[Script] = load("release_name")
    user_key: str = key_field()
    my_names_key: str = key_field()
    session: str = ""
    me: str = ""
    lower: str = ""


__all__ = ["ClaimName", "ClaimReply", "ReleaseName", "RoomOfName"]
