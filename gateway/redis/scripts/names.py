"""Name scripts: claim, release (in the name's slot), and a takeover's step in a room."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from gateway.redis.scripts.core import Builder, Script, key_field, load, text_of


@dataclass(frozen=True, slots=True)
class ClaimName(Builder):
    SCRIPT: ClassVar[Script] = load("claim_name")
    user_key: str = key_field()
    account_key: str = key_field()
    """The name's account (``gateway.account_keys.account``), in the record's slot."""
    display: str = ""
    session: str = ""
    new_hash: str = ""
    presented_hash: str = ""
    me: str = ""
    holder_seen: str = ""
    """The gateway the caller saw holding the name ('' none) and read a verdict about."""
    holder_alive: int = 0


@dataclass(frozen=True, slots=True)
class ClaimReply:
    outcome: str
    """``claimed``, ``taken`` or ``verdict`` (ask again with a verdict about ``gateway``)."""
    replaced_gateway: str = ""
    replaced_session: str = ""
    account: bool = False
    """The name has an account and this claim is its owner's."""
    tell_gateway: str = ""
    """The gateway whose session lost the name (live or presumed dead), or ''; for
    ``verdict``, the gateway a verdict is wanted about."""
    tell_session: str = ""
    heir: str = ""
    """The gateway the name was taken from with its token (its memberships come along), or
    ''; a repeat of the claim reports what its first run took."""

    @classmethod
    def read(cls, raw: list[Any]) -> ClaimReply:
        outcome = text_of(raw[0])
        if outcome == "verdict":
            return cls(outcome, tell_gateway=text_of(raw[1]))
        if outcome != "claimed":
            return cls(outcome)
        return cls(outcome, text_of(raw[1]), text_of(raw[2]), bool(raw[3]), text_of(raw[4]),
                   text_of(raw[5]), text_of(raw[6]))


@dataclass(frozen=True, slots=True)
class ReleaseName(Builder):
    """Reply: ``released``, ``kept`` (another session of the gateway holds it) or ``other``."""

    SCRIPT: ClassVar[Script] = load("release_name")
    user_key: str = key_field()
    session: str = ""
    me: str = ""


@dataclass(frozen=True, slots=True)
class MoveMember(Builder):
    """Reply: ``moved``, ``ours``, ``other`` or ``absent``."""

    SCRIPT: ClassVar[Script] = load("move_member")
    members_key: str = key_field()
    lower: str = ""
    from_gateway: str = ""
    me: str = ""


__all__ = ["ClaimName", "ClaimReply", "MoveMember", "ReleaseName"]
