"""The brute-force limit on fakeredis: per name, per address, windows, races, no leaks."""

from __future__ import annotations

import threading

import fakeredis
import pytest

from gateway import account_keys
from gateway.accounts import AccountStore
from gateway.auth import Authenticator, AuthOutcome
from gateway.login_limit import Attempt, LoginLimiter, LoginLimits, Refused
from gateway.passwords import BadPassword
from tests.support.waiting import wait_for

PW = "the right password"
WRONG = "a wrong password"


def begin_ok(limiter: LoginLimiter, name: str, address: str) -> Attempt:
    attempt = limiter.begin(name, address)
    assert isinstance(attempt, Attempt), attempt
    return attempt


def test_five_failures_lock_a_name(limiter: LoginLimiter) -> None:
    for i in range(5):
        limiter.failed(begin_ok(limiter, "Alice", f"10.0.0.{i}"))
    refused = limiter.begin("alice", "10.0.0.99")
    assert isinstance(refused, Refused) and not refused.by_address
    assert 0 < refused.retry_after_ms <= LoginLimits().window_ms
    assert isinstance(limiter.begin("Bob", "10.0.0.99"), Attempt)  # other names unaffected


def test_twenty_failures_lock_an_address(limiter: LoginLimiter) -> None:
    for i in range(20):
        limiter.failed(begin_ok(limiter, f"user{i}", "192.0.2.7"))
    refused = limiter.begin("someone", "192.0.2.7")
    assert isinstance(refused, Refused) and refused.by_address
    assert isinstance(limiter.begin("someone", "192.0.2.8"), Attempt)


def test_successes_are_not_counted(limiter: LoginLimiter) -> None:
    for _ in range(30):
        limiter.succeeded(begin_ok(limiter, "Alice", "192.0.2.1"))
    assert isinstance(limiter.begin("Alice", "192.0.2.1"), Attempt)


def test_a_success_does_not_erase_earlier_failures(limiter: LoginLimiter) -> None:
    for _ in range(4):
        limiter.failed(begin_ok(limiter, "Alice", "192.0.2.1"))
    limiter.succeeded(begin_ok(limiter, "Alice", "192.0.2.1"))
    limiter.failed(begin_ok(limiter, "Alice", "192.0.2.1"))
    assert isinstance(limiter.begin("Alice", "192.0.2.1"), Refused)


def test_a_locked_name_spends_no_address_attempts(limiter: LoginLimiter,
                                                  fake_redis: fakeredis.FakeRedis) -> None:
    for _ in range(5):
        limiter.failed(begin_ok(limiter, "Alice", "192.0.2.1"))
    for _ in range(30):
        assert isinstance(limiter.begin("Alice", "192.0.2.1"), Refused)
    assert int(fake_redis.get(account_keys.address_failures("192.0.2.1")) or 0) == 5
    assert isinstance(limiter.begin("Bob", "192.0.2.1"), Attempt)


def test_the_window_passes(fake_redis: fakeredis.FakeRedis) -> None:
    limiter = LoginLimiter(fake_redis, LoginLimits(per_name=2, per_address=3, window_ms=300))
    limiter.failed(begin_ok(limiter, "Alice", "192.0.2.1"))
    limiter.failed(begin_ok(limiter, "Alice", "192.0.2.1"))
    assert isinstance(limiter.begin("Alice", "192.0.2.1"), Refused)
    wait_for(lambda: isinstance(limiter.begin("Alice", "192.0.2.1"), Attempt), timeout=10,
             what="the window to pass")


def test_counters_expire_with_the_window(limiter: LoginLimiter,
                                         fake_redis: fakeredis.FakeRedis) -> None:
    limiter.failed(begin_ok(limiter, "Alice", "192.0.2.1"))
    for key in (account_keys.name_failures("Alice"), account_keys.address_failures("192.0.2.1")):
        assert 0 < fake_redis.pttl(key) <= LoginLimits().window_ms


def test_a_counter_without_expiry_gets_one(limiter: LoginLimiter,
                                           fake_redis: fakeredis.FakeRedis) -> None:
    """A counter left without a TTL (restored by hand, say) cannot lock a name forever."""
    fake_redis.set(account_keys.name_failures("Alice"), 9)
    refused = limiter.begin("Alice", "192.0.2.1")
    assert isinstance(refused, Refused) and refused.retry_after_ms == LoginLimits().window_ms
    assert fake_redis.pttl(account_keys.name_failures("Alice")) > 0


def test_parallel_guesses_cannot_overshoot(fake_redis: fakeredis.FakeRedis) -> None:
    """Attempts are counted before the password is checked: 20 threads at once get 5."""
    limiter = LoginLimiter(fake_redis)
    start = threading.Barrier(20)
    results: list[Attempt | Refused] = []
    lock = threading.Lock()

    def guess(i: int) -> None:
        start.wait()
        result = limiter.begin("Alice", f"198.51.100.{i}")
        with lock:
            results.append(result)

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(isinstance(r, Attempt) for r in results) == 5


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError):
        LoginLimits(per_name=0)


# --------------------------------------------------------------- Authenticator


@pytest.fixture
def auth(store: AccountStore, limiter: LoginLimiter) -> Authenticator:
    store.create("Alice", PW)
    return Authenticator(store, limiter)


def test_login_outcomes(auth: Authenticator) -> None:
    assert auth.login("Alice", PW, "192.0.2.1").ok
    assert auth.login("alice", WRONG, "192.0.2.1").outcome is AuthOutcome.WRONG
    assert auth.login("Nobody", PW, "192.0.2.1").outcome is AuthOutcome.WRONG


def test_locked_name_refuses_even_the_right_password(auth: Authenticator) -> None:
    for _ in range(5):
        assert auth.login("Alice", WRONG, "192.0.2.1").outcome is AuthOutcome.WRONG
    result = auth.login("Alice", PW, "192.0.2.2")
    assert result.outcome is AuthOutcome.LIMITED and result.retry_after_ms > 0


def outcomes(auth: Authenticator, name: str, address: str) -> list[AuthOutcome]:
    return [auth.login(name, WRONG, address).outcome for _ in range(8)]


def test_unknown_and_known_names_behave_alike(auth: Authenticator) -> None:
    """The limiter's answers do not tell whether a name has an account."""
    known = outcomes(auth, "Alice", "192.0.2.1")
    unknown = outcomes(auth, "Nobody", "192.0.2.2")
    assert known == unknown == [AuthOutcome.WRONG] * 5 + [AuthOutcome.LIMITED] * 3


def test_change_password_is_limited_too(auth: Authenticator) -> None:
    for _ in range(5):
        assert auth.change_password("Alice", WRONG, "new password!", "192.0.2.1").outcome \
            is AuthOutcome.WRONG
    assert auth.change_password("Alice", PW, "new password!", "192.0.2.1").outcome \
        is AuthOutcome.LIMITED
    assert auth.store.verify("Alice", PW)


def test_change_password(auth: Authenticator) -> None:
    assert auth.change_password("Alice", PW, "new password!", "192.0.2.1").ok
    assert auth.login("Alice", "new password!", "192.0.2.1").ok
    with pytest.raises(BadPassword):
        auth.change_password("Alice", "new password!", "short", "192.0.2.1")
