"""Fixtures of the account tests: fast hashing, a fakeredis per test."""

from __future__ import annotations

from collections.abc import Iterator

import fakeredis
import pytest

from gateway.accounts import AccountStore
from gateway.login_limit import LoginLimiter
from gateway.passwords import FAST_PARAMS, PasswordHasher


@pytest.fixture
def fake_redis() -> Iterator[fakeredis.FakeRedis]:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    yield client
    client.close()


@pytest.fixture
def fast_hasher() -> PasswordHasher:
    return PasswordHasher(FAST_PARAMS)


@pytest.fixture
def store(fake_redis: fakeredis.FakeRedis, fast_hasher: PasswordHasher) -> AccountStore:
    return AccountStore(fake_redis, fast_hasher, clock=lambda: 1_700_000_000.5)


@pytest.fixture
def limiter(fake_redis: fakeredis.FakeRedis) -> LoginLimiter:
    return LoginLimiter(fake_redis)
