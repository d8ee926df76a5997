"""TokenBucket: the per-connection frame rate, on a clock the test moves."""

from __future__ import annotations

import pytest

from gateway.front.ratelimit import ByteBudget, TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_a_full_bucket_allows_exactly_the_burst(clock: FakeClock) -> None:
    bucket = TokenBucket(rate=20.0, burst=40, clock=clock)
    assert all(bucket.take() for _ in range(40))
    assert not bucket.take()
    assert not bucket.take()


def test_tokens_come_back_at_the_rate(clock: FakeClock) -> None:
    bucket = TokenBucket(rate=20.0, burst=40, clock=clock)
    for _ in range(40):
        bucket.take()
    clock.now += 0.049  # not quite one token (1/20 s)
    assert not bucket.take()
    clock.now += 0.002
    assert bucket.take()
    assert not bucket.take()
    clock.now += 0.5  # ten tokens
    assert [bucket.take() for _ in range(11)] == [True] * 10 + [False]


def test_saving_up_is_capped_at_the_burst(clock: FakeClock) -> None:
    bucket = TokenBucket(rate=5.0, burst=3, clock=clock)
    clock.now += 3600
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


def test_refused_frames_cost_nothing(clock: FakeClock) -> None:
    """A dropped frame does not push the next allowed one further away."""
    bucket = TokenBucket(rate=1.0, burst=1, clock=clock)
    assert bucket.take()
    for _ in range(100):
        assert not bucket.take()
    clock.now += 1.0
    assert bucket.take()


def test_fractional_rates_accumulate(clock: FakeClock) -> None:
    bucket = TokenBucket(rate=0.5, burst=1, clock=clock)
    assert bucket.take()
    clock.now += 1.0
    assert not bucket.take()
    clock.now += 1.0
    assert bucket.take()


def test_a_steady_sender_at_the_rate_is_never_refused(clock: FakeClock) -> None:
    bucket = TokenBucket(rate=20.0, burst=2, clock=clock)
    for _ in range(1000):
        assert bucket.take()
        clock.now += 0.05


def test_byte_budget_serves_while_above_zero_and_repays_a_debt_at_the_rate(
        clock: FakeClock) -> None:
    budget = ByteBudget(rate=1000.0, burst=5000, clock=clock)
    assert budget.ready()
    budget.spend(12_000)  # one big answer: 7000 bytes in debt
    assert not budget.ready()
    clock.now += 6.9
    assert not budget.ready()
    clock.now += 0.2
    assert budget.ready()


def test_byte_budget_saves_up_at_most_its_burst(clock: FakeClock) -> None:
    budget = ByteBudget(rate=1000.0, burst=5000, clock=clock)
    clock.now += 3600
    budget.spend(5000)
    assert not budget.ready()


def test_a_wait_of_the_owner_is_credited_then_the_burst_applies_again(
        clock: FakeClock) -> None:
    """A reader that waited 3 s for Redis finds the 60 frames a client sent meanwhile at
    20 a second: they pass (read on time, each would have), a 61st does not; once the
    credit's time is over, the bucket saves up to its burst again, no more."""
    bucket = TokenBucket(rate=20.0, burst=40, clock=clock)
    assert all(bucket.take() for _ in range(40))
    clock.now += 3.0
    bucket.credit(3.0)
    assert [bucket.take() for _ in range(61)] == [True] * 60 + [False]
    clock.now += 60.0
    assert [bucket.take() for _ in range(41)] == [True] * 40 + [False]


def test_without_the_credit_frames_sent_during_a_wait_are_a_burst(clock: FakeClock) -> None:
    bucket = TokenBucket(rate=20.0, burst=40, clock=clock)
    assert all(bucket.take() for _ in range(40))
    clock.now += 3.0
    assert [bucket.take() for _ in range(41)] == [True] * 40 + [False]


def test_an_unused_credit_expires(clock: FakeClock) -> None:
    bucket = TokenBucket(rate=20.0, burst=40, clock=clock)
    clock.now += 2.0
    bucket.credit(2.0)  # an idle client: 40 + 40 for two seconds
    clock.now += 2.0
    assert [bucket.take() for _ in range(41)] == [True] * 40 + [False]
