"""Password checks for logins and password changes, under the brute-force limit.

The one place where ``AccountStore`` (is the password right?) and
``LoginLimiter`` (may we check at all?) meet; the session asks it and turns the
outcome into a frame: ``OK``, ``WRONG`` (``error``/``auth_failed``),
``LIMITED`` (``error``/``rate_limited``). A name without an account is
``WRONG`` after the same work and the same counting as a wrong password.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from gateway.accounts import AccountStore
from gateway.login_limit import LoginLimiter, Refused
from gateway.passwords import normalise_password


class AuthOutcome(enum.Enum):
    OK = "ok"
    WRONG = "wrong"
    LIMITED = "limited"


@dataclass(frozen=True, slots=True)
class AuthResult:
    outcome: AuthOutcome
    retry_after_ms: int = 0
    """For ``LIMITED``: when the window passes (for logs; the protocol has no field)."""

    @property
    def ok(self) -> bool:
        return self.outcome is AuthOutcome.OK


_OK = AuthResult(AuthOutcome.OK)
_WRONG = AuthResult(AuthOutcome.WRONG)


class Authenticator:
    """Checks passwords for sessions; safe to share between threads."""

    __slots__ = ("_limiter", "_store")

    def __init__(self, store: AccountStore, limiter: LoginLimiter) -> None:
        self._store = store
        self._limiter = limiter

    @property
    def store(self) -> AccountStore:
        return self._store

    @property
    def limiter(self) -> LoginLimiter:
        return self._limiter

    def login(self, name: str, password: object, address: str) -> AuthResult:
        """May ``address`` log in as ``name`` with ``password``?"""
        attempt = self._limiter.begin(name, address)
        if isinstance(attempt, Refused):
            return AuthResult(AuthOutcome.LIMITED, attempt.retry_after_ms)
        if self._store.verify(name, password):
            self._limiter.succeeded(attempt)
            return _OK
        self._limiter.failed(attempt)
        return _WRONG

    def change_password(self, name: str, old: object, new: object,
                        address: str) -> AuthResult:
        """``passwd``: the old password is checked under the same limit as a login
        (a stolen resume token must not become a way to guess it). ``BadPassword``
        when ``new`` breaks the rules, before anything is counted."""
        normalise_password(new)
        attempt = self._limiter.begin(name, address)
        if isinstance(attempt, Refused):
            return AuthResult(AuthOutcome.LIMITED, attempt.retry_after_ms)
        if self._store.change_password(name, old, new):
            self._limiter.succeeded(attempt)
            return _OK
        self._limiter.failed(attempt)
        return _WRONG


__all__ = ["AuthOutcome", "AuthResult", "Authenticator"]
