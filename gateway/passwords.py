"""Password rules and argon2id hashing for accounts.

A password is any Unicode string that is 8 to 1024 characters long once
normalised to NFKC (so the same password typed on two keyboards, composed
or decomposed, full-width or not, is the same password). The normalised
form, encoded as UTF-8, is what argon2id hashes.

Cost: ``HashParams()`` is argon2id with t=3 passes over m=19 MiB, one lane
(RFC 9106's second recommended option uses more memory; OWASP's minimum is
t=2, m=19 MiB). Measured on the shared 2-core VM while other jobs ran: one
``verify`` takes 27.5 ms of CPU time (median of 21), 31 ms wall (27 to 46 ms),
inside the 20-50 ms target with margin both ways; earlier runs at load
average 6-7 gave 27.7 ms median.
A verify reads the parameters from the stored hash, so after raising them
old hashes still verify and ``AccountStore.verify`` re-hashes each at its
owner's next login (``needs_rehash``).

Threads: argon2-cffi releases the GIL while it hashes, so a verify on a
session's thread never stops other sessions' fan-out (tests prove it). At most
``max_concurrent`` hashes run at once (default: one per CPU); more could not
finish sooner and would each hold 19 MiB, so a login storm is bounded in
memory. Waiting for that semaphore is not I/O. Lock order: the dummy hash's
lock, then the semaphore; nothing else is taken while either is held.

Secrets: no password or hash appears in an exception message, a log line
or a ``repr``; comparison is argon2's own constant-time check.
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass

import argon2
from argon2.exceptions import InvalidHashError, VerificationError
from argon2.low_level import Type

from protocol.errors import ErrorCode, ProtocolError
from protocol.limits import MAX_PASSWORD, MIN_PASSWORD
from protocol.names import check_password


class BadPassword(ProtocolError):
    """A password outside the rules: PROTOCOL.md v1.1 ``bad_password``.

    The rule itself is ``protocol.names.check_password``, the one the codec
    applies to every password field; the message says which rule, never the
    password.
    """

    def __init__(self, code: ErrorCode | str = ErrorCode.BAD_PASSWORD,
                 message: str = "bad password", ref: str | None = None) -> None:
        if not isinstance(code, ErrorCode):  # BadPassword("message")
            code, message = ErrorCode.BAD_PASSWORD, code
        super().__init__(code, message, ref)


def normalise_password(password: object) -> str:
    """The NFKC form of ``password``, or ``BadPassword`` when it breaks a rule
    (``protocol.names.check_password``: the same rule as the protocol's)."""
    try:
        return check_password(password)
    except ProtocolError as exc:
        raise BadPassword(exc.message) from None


@dataclass(frozen=True, slots=True)
class HashParams:
    """argon2id cost parameters; see the module docstring for the measured cost."""

    time_cost: int = 3
    memory_kib: int = 19 * 1024
    parallelism: int = 1
    hash_len: int = 32
    salt_len: int = 16


FAST_PARAMS = HashParams(time_cost=1, memory_kib=64, parallelism=1)
"""The cheapest parameters argon2 accepts: for unit tests only, never for storage."""


class PasswordHasher:
    """Hash, verify and upgrade passwords with argon2id; safe to share between threads."""

    __slots__ = ("_dummy", "_dummy_lock", "_gate", "_hasher", "params")

    def __init__(self, params: HashParams | None = None,
                 max_concurrent: int | None = None) -> None:
        self.params = params or HashParams()
        self._hasher = argon2.PasswordHasher(
            time_cost=self.params.time_cost,
            memory_cost=self.params.memory_kib,
            parallelism=self.params.parallelism,
            hash_len=self.params.hash_len,
            salt_len=self.params.salt_len,
            type=Type.ID,
        )
        self._gate = threading.BoundedSemaphore(max_concurrent or os.cpu_count() or 2)
        self._dummy: str | None = None
        self._dummy_lock = threading.Lock()

    def __repr__(self) -> str:
        p = self.params
        return f"PasswordHasher(argon2id t={p.time_cost} m={p.memory_kib}KiB p={p.parallelism})"

    def hash(self, password: object) -> str:
        """The argon2id hash (PHC string) of the NFKC form; ``BadPassword`` on a bad one."""
        normal = normalise_password(password)
        with self._gate:
            return self._hasher.hash(normal)

    def verify(self, stored_hash: str, password: object) -> bool:
        """True when ``password`` matches ``stored_hash``; False otherwise.

        A password that breaks the rules, or a stored hash that is not an
        argon2 hash, is a mismatch (False) after the same work as a real check.
        """
        try:
            normal = normalise_password(password)
        except BadPassword:
            self.waste_time()
            return False
        try:
            with self._gate:
                return self._hasher.verify(stored_hash, normal)
        except (VerificationError, InvalidHashError):
            return False

    def waste_time(self) -> None:
        """Do the work of one verify and throw it away: the answer for an unknown name
        costs what a wrong password costs, so timing does not tell them apart."""
        dummy = self._dummy_hash()
        with self._gate, contextlib.suppress(VerificationError):
            self._hasher.verify(dummy, "not the password, never the password")

    def warm_up(self) -> None:
        """Make the hash ``waste_time`` checks against now, so that the first unknown
        name costs no more than later ones (a gateway calls it at start)."""
        self._dummy_hash()

    def needs_rehash(self, stored_hash: str) -> bool:
        """True when ``stored_hash`` was made with other parameters than ``params``."""
        try:
            return self._hasher.check_needs_rehash(stored_hash)
        except (InvalidHashError, ValueError):
            return True

    def _dummy_hash(self) -> str:
        with self._dummy_lock:
            if self._dummy is None:
                with self._gate:
                    self._dummy = self._hasher.hash("a dummy password nobody knows")
            return self._dummy


__all__ = [
    "FAST_PARAMS",
    "MAX_PASSWORD",
    "MIN_PASSWORD",
    "BadPassword",
    "HashParams",
    "PasswordHasher",
    "normalise_password",
]
