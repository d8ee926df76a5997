"""What every script builder shares: loading ``lua/`` files, ``Script``, ``ScriptCall``,
``Builder``."""

from __future__ import annotations

import hashlib
from dataclasses import astuple, dataclass, field, fields
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any, ClassVar

Arg = str | bytes | int

STOPPED = "~stopped"
"""A gateway's instance key after its graceful shutdown (no nonce is spelled so)."""


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script as Redis gets it: by its SHA1, by its text when Redis lacks it."""

    name: str
    source: bytes
    sha: bytes

    @classmethod
    def of(cls, name: str, source: str) -> Script:
        data = source.encode()
        return cls(name, data, hashlib.sha1(data).hexdigest().encode())


@dataclass(frozen=True, slots=True)
class ScriptCall:
    """One run of a script: what the publisher writes, or the broker runs on its client."""

    script: Script
    keys: tuple[str, ...]
    args: tuple[Arg, ...]


_LUA = resources.files("gateway.redis") / "lua"


def _text(name: str, folder: Traversable = _LUA) -> str:
    return (folder / f"{name}.lua").read_text(encoding="utf-8")


def load(name: str, folder: Traversable = _LUA) -> Script:
    """``<folder>/<name>.lua`` with ``args.lua`` and its ``-- includes:`` snippets before it.

    ``folder`` is ``gateway/redis/lua/`` unless another package's scripts (the accounts')
    share the Redis layer's cursors and snippets, which always come from there."""
    body = _text(name, folder)
    parts = [_text("args")]
    for line in body.splitlines():
        if line.startswith("-- includes:"):
            parts += [_text(part.strip()) for part in line.split(":", 1)[1].split(",")]
    return Script.of(name, "\n".join([*parts, body]))


def text_of(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# ---------------------------------------------------------------- builders
#
# Field order is the order the script reads: keys first (``key()``), then
# arguments (``arg()``). Fields marked ``key`` go to KEYS.


def key_field() -> Any:
    return field(metadata={"key": True})


class Builder:
    """A typed builder: its fields, keys first, make a ``ScriptCall`` of ``SCRIPT``."""

    SCRIPT: ClassVar[Script]

    def call(self) -> ScriptCall:
        values = astuple(self)  # type: ignore[call-overload]
        marks = [f.metadata.get("key", False) for f in fields(self)]  # type: ignore[arg-type]
        return ScriptCall(
            self.SCRIPT,
            tuple(v for v, is_key in zip(values, marks, strict=True) if is_key),
            tuple(v for v, is_key in zip(values, marks, strict=True) if not is_key))


__all__ = [
    "STOPPED",
    "Arg",
    "Builder",
    "Script",
    "ScriptCall",
    "key_field",
    "load",
    "text_of",
]
