"""Redis keys of accounts and of the login limiter (issue 12), in one place.

An account's keys share the hash tag ``{user:<lower>}`` of the name record in
``gateway.redis.keys.user``, so on Redis Cluster they live in the name's slot and one
Lua script may read the name record and the account together (a guest taking a
name checks the account in the same script). The per-address failure counter
has a tag of its own, ``{authaddr:<address>}``: addresses spread over slots, and
no script needs a name and an address together. Pure functions, no I/O.
"""

from __future__ import annotations

from gateway.redis.keys import user

ACCOUNT_SUFFIX = ":account"
ACCOUNT_PATTERN = "{user:*}" + ACCOUNT_SUFFIX
"""SCAN MATCH pattern of every account key (names hold no glob characters)."""


def account(name: str) -> str:
    """hash: ``name`` (display form), ``hash`` (argon2id PHC string), ``created`` (ms
    since the epoch). Exists exactly while the name has an account."""
    return f"{user(name)}{ACCOUNT_SUFFIX}"


def name_failures(name: str) -> str:
    """string counter, PX = the limiter window: failed (or pending) password checks
    for ``name``, whether or not it has an account."""
    return f"{user(name)}:authfail"


def address_failures(address: str) -> str:
    """string counter, PX = the limiter window: failed (or pending) password checks
    from one source address (IPv4 dotted, IPv6 as the socket gives it)."""
    return f"{{authaddr:{address}}}:fail"


__all__ = ["ACCOUNT_PATTERN", "ACCOUNT_SUFFIX", "account", "address_failures", "name_failures"]
