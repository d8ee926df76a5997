"""Accounts in Redis: a name, its argon2id password hash and when it was made.

One hash per account, ``{user:<lower>}:account`` (``gateway.account_keys``),
in the slot of the name's record, written only by the Lua scripts of
``gateway.accounts.scripts``; so every change is one atomic command and works on
Redis Cluster. Names are validated with ``protocol.names.check_name`` and keyed
case-insensitively, the display form being the one given at creation.

Exceptions (all under ``protocol.errors.ChatError``)::

    ChatError
    ├── ProtocolError (bad_name)       from check_name: not a valid name
    ├── BadPassword                    gateway.accounts.passwords: outside the rules
    ├── AccountError                   an account operation that cannot be done
    │   ├── AccountExists              create: the name has an account
    │   └── NoSuchAccount              set_password: the name has none
    └── BrokerUnavailable              Redis out of reach (connection, timeout)

Hashing is CPU work done before or after a Redis command, never during one,
and no lock of ours is held across either (``PasswordHasher`` only bounds how
many hashes run at once). Passwords and hashes never reach a log line, an
exception message or a ``repr``; ``Account`` has no hash field at all.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis

from gateway import account_keys as keys
from gateway.accounts import scripts
from gateway.accounts.passwords import BadPassword, PasswordHasher, normalise_password
from gateway.redis.broker import BrokerUnavailable
from protocol.errors import ChatError, ProtocolError
from protocol.names import check_name

logger = logging.getLogger("gateway.accounts.store")

_CAS_TRIES = 3
"""change_password re-reads the hash this often when another change races it."""


class AccountError(ChatError):
    """An account operation that cannot be done as asked."""


class AccountExists(AccountError):
    """The name already has an account."""


class NoSuchAccount(AccountError):
    """The name has no account."""


@dataclass(frozen=True, slots=True)
class Account:
    """What the store tells about an account: never its hash."""

    name: str
    """The display form given at creation (names compare case-insensitively)."""
    created_ms: int
    """When it was created, ms since the epoch (creator's clock)."""


@dataclass(frozen=True, slots=True)
class AccountPage:
    """One SCAN step: pass ``cursor`` back for the next page; 0 means done."""

    cursor: int
    accounts: tuple[Account, ...]


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


@contextmanager
def guard_redis(what: str) -> Iterator[None]:
    """Redis out of reach becomes ``BrokerUnavailable`` (the gateway answers
    ``unavailable``), as in ``gateway.redis.broker``."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise BrokerUnavailable(f"redis unavailable during {what}: {exc}") from exc


class AccountStore:
    """Create, check, change, delete and list accounts; safe to share between threads.

    ``client`` is any redis-py client (the broker's ``Broker.redis``, or one of
    its own); replies may be bytes or str. ``clock`` gives seconds since the
    epoch for ``created``.
    """

    __slots__ = ("_clock", "_hasher", "_redis")

    def __init__(self, client: redis.Redis, hasher: PasswordHasher | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self._redis = client
        self._hasher = hasher or PasswordHasher()
        self._clock = clock

    def __repr__(self) -> str:
        return f"AccountStore({self._hasher!r})"

    @property
    def redis(self) -> redis.Redis:
        return self._redis

    @property
    def hasher(self) -> PasswordHasher:
        return self._hasher

    # ------------------------------------------------------------------ reads

    def exists(self, name: str) -> bool:
        """Whether ``name`` (any case) has an account."""
        check_name(name)
        with guard_redis("account lookup"):
            return bool(self._redis.exists(keys.account(name)))

    def get(self, name: str) -> Account | None:
        """The account of ``name`` (any case), or None."""
        check_name(name)
        with guard_redis("account lookup"):
            shown, created = self._redis.hmget(keys.account(name), ["name", "created"])
        return _account(shown, created)

    def verify(self, name: str, password: object) -> bool:
        """True when ``name`` has an account and ``password`` is its password.

        An unknown or invalid name, or a password that breaks the rules, costs
        the same argon2 work as a wrong password and gives the same False. A
        right password whose hash was made with older parameters is re-hashed
        with the current ones (unless a change raced it).
        """
        try:
            check_name(name)
        except ProtocolError:
            self._hasher.waste_time()
            return False
        with guard_redis("account lookup"):
            stored = self._redis.hget(keys.account(name), "hash")
        if stored is None:
            self._hasher.waste_time()
            return False
        stored_hash = _text(stored)
        if not self._hasher.verify(stored_hash, password):
            return False
        if self._hasher.needs_rehash(stored_hash):
            fresh = self._hasher.hash(password)
            with guard_redis("password rehash"):
                done = scripts.SetHashReply.read(scripts.run(self._redis, scripts.SetHash.of(
                    name, fresh, expected_hash=stored_hash).call()))
            if done is scripts.SetHashReply.SET:
                logger.info("event=password_rehashed name=%s", name)
        return True

    def list_page(self, cursor: int = 0, count: int = 100) -> AccountPage:
        """One page of accounts by SCAN (``count`` is SCAN's hint, not a cap).

        Like SCAN, every account that exists for the whole scan is returned at
        least once; pages come in no particular order. On Redis Cluster, scan
        each primary (``RedisCluster.get_primaries``) with its own store.
        """
        with guard_redis("account listing"):
            next_cursor, found = self._redis.scan(cursor=cursor, match=keys.ACCOUNT_PATTERN,
                                                  count=count)
            rows: list[Any] = []
            if found:
                pipe = self._redis.pipeline(transaction=False)
                for key in found:
                    pipe.hmget(key, ["name", "created"])
                rows = pipe.execute()
        accounts = tuple(a for a in (_account(*row) for row in rows) if a is not None)
        return AccountPage(int(next_cursor), accounts)

    def iter_accounts(self, count: int = 100) -> Iterator[Account]:
        """Every account, page by page (see ``list_page``)."""
        cursor = 0
        while True:
            page = self.list_page(cursor, count)
            yield from page.accounts
            cursor = page.cursor
            if cursor == 0:
                return

    # ----------------------------------------------------------------- writes

    def create(self, name: str, password: object) -> Account:
        """Give ``name`` an account; ``AccountExists`` when it has one.

        Whether a guest is online with that name now is the caller's business.
        """
        check_name(name)
        hashed = self._hasher.hash(password)
        created = int(self._clock() * 1000)
        with guard_redis("account creation"):
            done = scripts.CreateReply.read(scripts.run(
                self._redis, scripts.CreateAccount.of(name, hashed, created).call()))
        if done is scripts.CreateReply.EXISTS:
            raise AccountExists(f"{name} already has an account")
        logger.info("event=account_created name=%s", name)
        return Account(name, created)

    def set_password(self, name: str, password: object) -> None:
        """Replace the password (an operator's reset) and clear the name's failed
        attempts; ``NoSuchAccount`` when it has no account."""
        check_name(name)
        hashed = self._hasher.hash(password)
        with guard_redis("password change"):
            done = scripts.SetHashReply.read(scripts.run(
                self._redis, scripts.SetHash.of(name, hashed, clear_failures=True).call()))
        if done is scripts.SetHashReply.NO_ACCOUNT:
            raise NoSuchAccount(f"{name} has no account")
        logger.info("event=password_reset name=%s", name)

    def change_password(self, name: str, old: object, new: object) -> bool:
        """The user's own change: True when ``old`` was right and ``new`` is stored.

        ``BadPassword`` when ``new`` breaks the rules (checked first, before any
        hashing); False for a wrong ``old`` or no account.
        """
        check_name(name)
        normalise_password(new)
        account_key = keys.account(name)
        for _ in range(_CAS_TRIES):
            with guard_redis("account lookup"):
                stored = self._redis.hget(account_key, "hash")
            if stored is None:
                self._hasher.waste_time()
                return False
            stored_hash = _text(stored)
            if not self._hasher.verify(stored_hash, old):
                return False
            hashed = self._hasher.hash(new)
            with guard_redis("password change"):
                done = scripts.SetHashReply.read(scripts.run(self._redis, scripts.SetHash.of(
                    name, hashed, expected_hash=stored_hash).call()))
            if done is scripts.SetHashReply.SET:
                logger.info("event=password_changed name=%s", name)
                return True
            if done is scripts.SetHashReply.NO_ACCOUNT:
                return False
        raise AccountError(f"the password of {name} kept changing; try again")

    def delete(self, name: str) -> bool:
        """Delete the account and the name's failed-attempt counter: the name is
        free again. False when there was no account."""
        check_name(name)
        with guard_redis("account deletion"):
            done = scripts.DeleteReply.read(scripts.run(
                self._redis, scripts.DeleteAccount.of(name).call()))
        if done is scripts.DeleteReply.DELETED:
            logger.info("event=account_deleted name=%s", name)
        return done is scripts.DeleteReply.DELETED


def _account(shown: bytes | str | None, created: bytes | str | None) -> Account | None:
    if shown is None:
        return None
    return Account(_text(shown), int(_text(created)) if created is not None else 0)


__all__ = [
    "Account",
    "AccountError",
    "AccountExists",
    "AccountPage",
    "AccountStore",
    "BadPassword",
    "NoSuchAccount",
    "guard_redis",
]
