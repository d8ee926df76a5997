"""Percentile math and latency summaries (pure)."""

from __future__ import annotations

import pytest

from bench.stats import LatencySummary, per_second, percentile


def test_nearest_rank_percentiles_of_one_to_hundred() -> None:
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 90) == 90
    assert percentile(values, 99) == 99
    assert percentile(values, 99.9) == 100
    assert percentile(values, 100) == 100
    assert percentile(values, 0) == 1


def test_percentile_of_a_thousand_samples_picks_the_999th_for_p999() -> None:
    values = list(range(1, 1001))
    assert percentile(values, 99.9) == 999
    assert percentile(values, 99) == 990


def test_a_single_sample_is_every_percentile() -> None:
    for p in (0, 50, 99.9, 100):
        assert percentile([7], p) == 7


def test_percentile_refuses_no_samples_and_out_of_range() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1], 101)
    with pytest.raises(ValueError):
        percentile([1], -1)


def test_summary_converts_nanoseconds_to_milliseconds_and_sorts() -> None:
    samples = [5_000_000, 1_000_000, 3_000_000, 2_000_000, 4_000_000]
    s = LatencySummary.of_ns(samples)
    assert s is not None
    assert s.count == 5
    assert s.p50_ms == 3.0
    assert s.p99_ms == 5.0
    assert s.max_ms == 5.0
    assert s.mean_ms == 3.0
    assert [label for label, _ in s.by_label()] == ["p50", "p90", "p99", "p99.9", "max"]


def test_summary_of_nothing_is_none() -> None:
    assert LatencySummary.of_ns([]) is None
    assert LatencySummary.of_ns(iter(())) is None


def test_per_second_of_an_empty_interval_is_zero() -> None:
    assert per_second(10, 0.0) == 0.0
    assert per_second(10, 2.0) == 5.0
