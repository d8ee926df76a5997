"""Reconnect delay policies: exponential with jitter and a cap, and no-sleep variants for tests."""

from __future__ import annotations

import random

import pytest

from client.backoff import ConstantBackoff, ExponentialBackoff, NoBackoff


def test_exponential_without_jitter_doubles_up_to_the_cap() -> None:
    backoff = ExponentialBackoff(base=0.5, cap=3.0, jitter=0.0)
    assert [backoff.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


def test_jitter_stays_within_its_fraction_and_varies() -> None:
    backoff = ExponentialBackoff(base=1.0, cap=10.0, jitter=0.5, rng=random.Random(7))
    delays = [backoff.delay(3) for _ in range(200)]
    assert all(2.0 <= d <= 4.0 for d in delays)
    assert len(set(delays)) > 100


def test_default_starts_small_and_never_exceeds_ten_seconds() -> None:
    backoff = ExponentialBackoff()
    assert backoff.delay(1) <= 0.2
    assert all(backoff.delay(n) <= 10.0 for n in (1, 5, 10, 100, 10_000))


def test_seeded_rng_makes_delays_reproducible() -> None:
    first = ExponentialBackoff(rng=random.Random(1))
    second = ExponentialBackoff(rng=random.Random(1))
    assert [first.delay(n) for n in range(1, 8)] == [second.delay(n) for n in range(1, 8)]


def test_no_backoff_and_constant_backoff_for_tests() -> None:
    assert [NoBackoff().delay(n) for n in (1, 2, 50)] == [0.0, 0.0, 0.0]
    assert ConstantBackoff(0.01).delay(9) == 0.01


@pytest.mark.parametrize(
    "kwargs", [{"base": 0.0}, {"base": 2.0, "cap": 1.0}, {"jitter": 1.5}, {"jitter": -0.1}]
)
def test_bad_parameters_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ExponentialBackoff(**kwargs)  # type: ignore[arg-type]


def test_attempts_count_from_one() -> None:
    with pytest.raises(ValueError):
        ExponentialBackoff().delay(0)
    with pytest.raises(ValueError):
        ConstantBackoff(-1)
