"""Brute-force limit on password checks, shared by every gateway through Redis.

Two counters, each with the window as its expiry (Redis's clock, so all
gateways agree): one per name, ``{user:<lower>}:authfail`` in the name's slot,
and one per source address, ``{authaddr:<address>}:fail`` in a slot of its
own. With the defaults, once 5 checks for a name, or 20 from an address, have
failed in a window, further checks are refused until it ends; the window
starts at the first counted check and lasts 5 minutes.

A check is counted *before* the password is verified (``begin``) and taken
back if it succeeds (``succeeded``): so parallel guesses cannot overshoot the
limit, and a gateway that dies mid-check leaves a failure, not a free guess.
Each counter is touched by one small Lua script (``gateway.accounts.scripts``), and
a name and an address are never in one script, so it all runs on Redis
Cluster. Names are counted whether or not they have an account: the limiter
never looks, so its answers say nothing about which names exist.

A redis-py retry of a lost reply may count one check twice: the limit errs
towards refusing, never towards more guesses.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis

from gateway import account_keys as keys
from gateway.accounts.scripts import AcquireAttempt, AttemptReply, ReleaseAttempt, run
from gateway.accounts.store import guard_redis
from protocol.names import check_name

logger = logging.getLogger("gateway.accounts.login_limit")


@dataclass(frozen=True, slots=True)
class LoginLimits:
    per_name: int = 5
    """Failed checks for one name within a window before it is locked."""
    per_address: int = 20
    """Failed checks from one source address within a window before it is locked."""
    window_ms: int = 5 * 60 * 1000

    def __post_init__(self) -> None:
        if self.per_name < 1 or self.per_address < 1 or self.window_ms < 1:
            raise ValueError("login limits must be positive")


@dataclass(frozen=True, slots=True)
class Attempt:
    """A counted password check: report how it went with ``succeeded`` (or ``failed``)."""

    name: str
    address: str


@dataclass(frozen=True, slots=True)
class Refused:
    """Too many failures: no check may be made for ``retry_after_ms``."""

    retry_after_ms: int
    by_address: bool
    """Which limit refused (for logs and metrics only: never tell the client)."""


class LoginLimiter:
    """Cluster-wide counters of failed password checks; safe to share between threads."""

    __slots__ = ("_limits", "_redis")

    def __init__(self, client: redis.Redis, limits: LoginLimits | None = None) -> None:
        self._redis = client
        self._limits = limits or LoginLimits()

    @property
    def limits(self) -> LoginLimits:
        return self._limits

    def begin(self, name: str, address: str) -> Attempt | Refused:
        """Count one password check for ``name`` from ``address``, or refuse it.

        The address is counted first, so a locked address spends none of a
        name's attempts. ``BrokerUnavailable`` when Redis is out of reach (the
        caller refuses the login: no check without counting).
        """
        check_name(name)
        window = self._limits.window_ms
        address_key = keys.address_failures(address)
        with guard_redis("login limit"):
            by_address = self._acquire(address_key, self._limits.per_address, window)
        if not by_address.allowed:
            logger.info("event=login_limited by=address address=%s", address)
            return Refused(by_address.retry_after_ms, by_address=True)
        with guard_redis("login limit"):
            by_name = self._acquire(keys.name_failures(name), self._limits.per_name, window)
        if not by_name.allowed:
            with guard_redis("login limit"):
                self._release(address_key)
            logger.info("event=login_limited by=name name=%s address=%s", name, address)
            return Refused(by_name.retry_after_ms, by_address=False)
        return Attempt(name, address)

    def succeeded(self, attempt: Attempt) -> None:
        """The password was right: the check is not a failure, take it back."""
        with guard_redis("login limit"):
            self._release(keys.address_failures(attempt.address))
            self._release(keys.name_failures(attempt.name))

    def failed(self, attempt: Attempt) -> None:
        """The password was wrong: the check stays counted (nothing to write)."""
        logger.info("event=password_failed name=%s address=%s", attempt.name, attempt.address)

    def _acquire(self, counter_key: str, limit: int, window_ms: int) -> AttemptReply:
        return AttemptReply.read(run(self._redis, AcquireAttempt(counter_key, limit,
                                                                 window_ms).call()))

    def _release(self, counter_key: str) -> None:
        run(self._redis, ReleaseAttempt(counter_key).call())

    def clear_address(self, address: str) -> None:
        """Forget an address's failures (an operator's unlock)."""
        with guard_redis("login limit"):
            self._redis.delete(keys.address_failures(address))


__all__ = ["Attempt", "LoginLimiter", "LoginLimits", "Refused"]
