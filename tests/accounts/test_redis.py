"""Accounts and the login limit on a real redis-server, shared by two gateways' clients."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from gateway.accounts import Account, AccountExists, AccountStore
from gateway.auth import Authenticator, AuthOutcome
from gateway.login_limit import Attempt, LoginLimiter, LoginLimits, Refused
from gateway.passwords import FAST_PARAMS, PasswordHasher
from tests.support.redis_server import RedisServer

PW = "the right password"


@pytest.fixture
def two_gateways(redis_server: RedisServer) -> Iterator[tuple[Authenticator, Authenticator]]:
    """Two authenticators, each on its own connection pool, like two gateways."""
    clients = [redis.Redis.from_url(redis_server.url) for _ in range(2)]
    auths = tuple(
        Authenticator(AccountStore(c, PasswordHasher(FAST_PARAMS)), LoginLimiter(c))
        for c in clients
    )
    yield auths[0], auths[1]
    for c in clients:
        c.close()


def test_an_account_made_on_one_gateway_logs_in_on_the_other(
        two_gateways: tuple[Authenticator, Authenticator]) -> None:
    a, b = two_gateways
    a.store.create("Alice", PW)
    with pytest.raises(AccountExists):
        b.store.create("alice", PW)
    assert b.login("ALICE", PW, "192.0.2.1").ok
    assert b.store.get("alice") == a.store.get("Alice")


def test_the_limit_holds_across_gateways(
        two_gateways: tuple[Authenticator, Authenticator]) -> None:
    a, b = two_gateways
    a.store.create("Alice", PW)
    gateways = [a, b, a, b, a]
    assert [g.login("Alice", "wrong password", "192.0.2.1").outcome
            for g in gateways] == [AuthOutcome.WRONG] * 5
    assert a.login("Alice", PW, "192.0.2.9").outcome is AuthOutcome.LIMITED
    assert b.login("Alice", PW, "192.0.2.9").outcome is AuthOutcome.LIMITED


def test_address_limit_across_gateways(
        two_gateways: tuple[Authenticator, Authenticator]) -> None:
    a, b = two_gateways
    for i in range(20):
        gateway = a if i % 2 else b
        assert gateway.login(f"user{i}", "wrong password", "2001:db8::1").outcome \
            is AuthOutcome.WRONG
    assert a.login("fresh", "wrong password", "2001:db8::1").outcome is AuthOutcome.LIMITED
    assert b.login("fresh", "wrong password", "2001:db8::2").outcome is AuthOutcome.WRONG


def test_window_and_expiry_on_redis(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    limiter = LoginLimiter(client, LoginLimits(per_name=1, per_address=10, window_ms=60_000))
    attempt = limiter.begin("Alice", "192.0.2.1")
    assert isinstance(attempt, Attempt)
    limiter.failed(attempt)
    assert 0 < client.pttl("{user:allce}:authfail") <= 60_000
    assert 0 < client.pttl("{authaddr:192.0.2.1}:fail") <= 60_000
    refused = limiter.begin("Alice", "192.0.2.1")
    assert isinstance(refused, Refused) and 0 < refused.retry_after_ms <= 60_000
    client.close()


def test_store_lifecycle_and_listing_on_redis(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    store = AccountStore(client, PasswordHasher(FAST_PARAMS), clock=lambda: 1.0)
    names = [f"u{i}" for i in range(120)]
    for name in names:
        store.create(name, PW)
    client.hset("{user:ul}", mapping={"gw": "g", "sid": "s"})  # a name record, not an account
    assert sorted(a.name for a in store.iter_accounts(count=10)) == sorted(names)
    store.set_password("u1", "a new password")
    assert store.verify("u1", "a new password") and not store.verify("u1", PW)
    assert store.delete("u1") and not store.exists("u1")
    assert client.exists("{user:ul}")  # the name record is not the account's to delete
    assert Account("u2", 1000) in list(store.iter_accounts())
    client.close()
