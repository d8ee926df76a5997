"""Poisson send schedules and the rate search of the many-rooms scenario."""

from __future__ import annotations

import random

import pytest

from bench.population import Span, assign
from bench.schedule import NS_PER_S, RateSearch, poisson_schedule


def test_schedule_is_ordered_within_the_duration_and_sends_into_the_senders_rooms() -> None:
    pop = assign(200, 67, Span(5, 10), Span(2, 3), random.Random(1))
    s = poisson_schedule(1000.0, 2.0, pop, random.Random(2))
    offsets = list(s.offsets_ns)
    assert offsets == sorted(offsets)
    assert offsets[0] >= 0 and offsets[-1] < 2 * NS_PER_S
    assert len(s) == len(s.senders) == len(s.rooms)
    assert all(room in pop.rooms_of[user] for user, room in zip(s.senders, s.rooms, strict=True))


def test_schedule_rate_and_gaps_are_those_of_a_poisson_process() -> None:
    pop = assign(100, 30, Span(5, 10), Span(2, 3), random.Random(1))
    s = poisson_schedule(5000.0, 4.0, pop, random.Random(3))
    # 20,000 expected; a Poisson count's standard deviation is about 141.
    assert 19_000 < len(s) < 21_000
    gaps = [b - a for a, b in zip(s.offsets_ns, s.offsets_ns[1:], strict=False)]
    mean_gap = sum(gaps) / len(gaps)
    assert 0.95 * NS_PER_S / 5000 < mean_gap < 1.05 * NS_PER_S / 5000
    # Exponential gaps: about 1 - 1/e (63%) are shorter than the mean; even pacing gives ~0%.
    short = sum(1 for g in gaps if g < mean_gap) / len(gaps)
    assert 0.58 < short < 0.68
    assert len(set(s.senders)) == 100, "every user sends"


def test_schedule_refuses_a_zero_rate() -> None:
    pop = assign(10, 2, Span(5, 5), Span(1, 1), random.Random(1))
    with pytest.raises(ValueError):
        poisson_schedule(0.0, 1.0, pop, random.Random(1))


def test_rate_search_steps_up_then_bisects_until_close() -> None:
    search = RateSearch(100.0, factor=2.0, resolution=0.1)
    tried = []
    ceiling = 700.0  # the system meets the target up to here
    while (rate := search.next_rate()) is not None:
        tried.append(rate)
        search.record(rate, rate <= ceiling)
        assert len(tried) < 20
    assert tried[:4] == [100.0, 200.0, 400.0, 800.0]
    assert search.best is not None and search.lowest_fail is not None
    assert search.best <= ceiling < search.lowest_fail <= search.best * 1.1


def test_rate_search_steps_down_when_the_first_rate_fails() -> None:
    search = RateSearch(1000.0, factor=2.0, resolution=0.5, floor=10.0)
    search.record(1000.0, False)
    assert search.next_rate() == 500.0
    search.record(500.0, True)
    assert search.next_rate() == pytest.approx((500.0 * 1000.0) ** 0.5)
    never = RateSearch(20.0, factor=2.0, floor=10.0)
    never.record(20.0, False)
    assert never.next_rate() == 10.0
    never.record(10.0, False)
    assert never.next_rate() is None
