"""The accounts' Lua scripts: one ``.lua`` file each, one typed builder and reply each.

The same shape as the Redis layer's scripts (``gateway.redis.scripts``): the
files live in ``gateway/accounts/lua/`` (package data) and read their keys and
arguments by name through the cursors of ``gateway/redis/lua/args.lua``
(``local account_key = key()``); each builder here is a frozen dataclass whose
fields are those names in the same order, keys first, and whose ``call()``
makes the ``ScriptCall``; each reply comes back as a named type read from a
status word (``created``, ``refused`` ...), never a magic number.

Every script touches the keys of one hash slot only, so all of them run on
Redis Cluster: an account and its name's failure counter share the tag
``{user:<lower>}`` (``gateway.account_keys``), and a failure counter is a
script's only key. Lua 5.1 as Redis embeds it, so they also run on fakeredis.
``run`` executes a call on any redis-py client (by SHA1, loading the script
when Redis lacks it, as redis-py's own ``Script`` does).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from importlib import resources
from typing import Any, ClassVar, Self

import redis

from gateway import account_keys as keys
from gateway.redis.scripts import core
from gateway.redis.scripts.core import Builder, Script, ScriptCall, key_field, text_of

_LUA = resources.files("gateway.accounts") / "lua"


def load(name: str) -> Script:
    """``gateway/accounts/lua/<name>.lua`` with the Redis layer's ``args.lua`` cursors (and
    any ``-- includes:`` snippets) before it, as every script of ``gateway/redis/lua/``."""
    return core.load(name, _LUA)


def run(client: redis.Redis, call: ScriptCall) -> Any:
    """Run ``call`` on ``client``; its Redis errors are raised."""
    sha = call.script.sha.decode()
    try:
        return client.evalsha(sha, len(call.keys), *call.keys, *call.args)
    except redis.exceptions.NoScriptError:  # a restarted or new Redis: load it, run again
        client.script_load(call.script.source)
        return client.evalsha(sha, len(call.keys), *call.keys, *call.args)


def _status(raw: Any) -> str:
    return text_of(raw[0] if isinstance(raw, list) else raw)


class _StatusReply(enum.Enum):
    """A reply that is one status word (alone or first of a list): the member of that value."""

    @classmethod
    def read(cls, raw: Any) -> Self:
        return cls(_status(raw))


# ---------------------------------------------------------------- accounts


@dataclass(frozen=True, slots=True)
class CreateAccount(Builder):
    """The name's account with ``password_hash``, unless it has one (``CreateReply``)."""

    SCRIPT: ClassVar[Script] = load("create_account")
    account_key: str = key_field()
    display: str = ""
    """The name as given: the display form of the account."""
    password_hash: str = ""
    created_ms: int = 0

    @classmethod
    def of(cls, name: str, password_hash: str, created_ms: int) -> CreateAccount:
        return cls(keys.account(name), name, password_hash, created_ms)


class CreateReply(_StatusReply):
    CREATED = "created"
    EXISTS = "exists"
    """The name has an account: nothing written."""


@dataclass(frozen=True, slots=True)
class SetHash(Builder):
    """Replace the password hash (``SetHashReply``).

    ``expected_hash`` makes it a compare-and-set (the hash the caller verified
    the old password against); empty accepts any hash (an operator's reset).
    """

    SCRIPT: ClassVar[Script] = load("set_hash")
    account_key: str = key_field()
    failures_key: str = key_field()
    new_hash: str = ""
    expected_hash: str = ""
    clear_failures: int = 0
    """1: also forget the name's failed password checks."""

    @classmethod
    def of(cls, name: str, new_hash: str, *, expected_hash: str = "",
           clear_failures: bool = False) -> SetHash:
        return cls(keys.account(name), keys.name_failures(name), new_hash, expected_hash,
                   int(clear_failures))


class SetHashReply(_StatusReply):
    SET = "set"
    NO_ACCOUNT = "no_account"
    CHANGED = "changed"
    """The stored hash is no longer the expected one (another change won): nothing written."""


@dataclass(frozen=True, slots=True)
class DeleteAccount(Builder):
    """Delete the account and its name's failure counter (``DeleteReply``)."""

    SCRIPT: ClassVar[Script] = load("delete_account")
    account_key: str = key_field()
    failures_key: str = key_field()

    @classmethod
    def of(cls, name: str) -> DeleteAccount:
        return cls(keys.account(name), keys.name_failures(name))


class DeleteReply(_StatusReply):
    DELETED = "deleted"
    ABSENT = "absent"
    """There was no account (the failure counter is cleared all the same)."""


# ---------------------------------------------------------------- the login limiter


@dataclass(frozen=True, slots=True)
class AcquireAttempt(Builder):
    """Count one password check against ``counter_key`` unless it is at ``limit``
    (``AttemptReply``); the window starts at the first counted check."""

    SCRIPT: ClassVar[Script] = load("acquire_attempt")
    counter_key: str = key_field()
    """``gateway.account_keys.name_failures`` or ``address_failures``."""
    limit: int = 0
    window_ms: int = 0


@dataclass(frozen=True, slots=True)
class AttemptReply:
    allowed: bool
    count: int = 0
    """When allowed: the checks counted in this window, this one included."""
    retry_after_ms: int = 0
    """When refused: how long until the window passes."""

    @classmethod
    def read(cls, raw: list[Any]) -> AttemptReply:
        if _status(raw) == "allowed":
            return cls(True, count=int(raw[1]))
        if _status(raw) == "refused":
            return cls(False, retry_after_ms=int(raw[1]))
        raise ValueError(f"acquire_attempt replied {raw!r}")


@dataclass(frozen=True, slots=True)
class ReleaseAttempt(Builder):
    """Take back one counted check (``ReleaseReply``): it was not a failure."""

    SCRIPT: ClassVar[Script] = load("release_attempt")
    counter_key: str = key_field()


@dataclass(frozen=True, slots=True)
class ReleaseReply:
    count: int
    """The checks still counted in the window."""

    @classmethod
    def read(cls, raw: Any) -> ReleaseReply:
        return cls(int(raw))


__all__ = [
    "AcquireAttempt",
    "AttemptReply",
    "CreateAccount",
    "CreateReply",
    "DeleteAccount",
    "DeleteReply",
    "ReleaseAttempt",
    "ReleaseReply",
    "SetHash",
    "SetHashReply",
    "load",
    "run",
]
