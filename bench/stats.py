"""Percentiles and latency summaries, pure and exact.

Nearest-rank percentiles over every sample, not estimates: the targets are
at p99.9, where sketch errors would matter, and the bench keeps at most a
few million samples per run, which sort in a second or two.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

NS_PER_MS = 1_000_000

PERCENTILES: tuple[float, ...] = (50.0, 90.0, 99.0, 99.9)


def percentile(ordered: Sequence[int | float], p: float) -> float:
    """The nearest-rank ``p``-th percentile of an ascending sequence.

    The smallest value with at least ``p`` percent of the samples at or below
    it; ``p`` = 0 gives the minimum, 100 the maximum.
    """
    if not ordered:
        raise ValueError("no samples")
    if not 0.0 <= p <= 100.0:
        raise ValueError(f"percentile {p} is outside 0..100")
    # Exact arithmetic: 99.9 / 100 * 1000 is 999.0000000000001 in floats.
    rank = math.ceil(Fraction(str(p)) * len(ordered) / 100)
    return float(ordered[min(max(rank, 1), len(ordered)) - 1])


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """End-to-end latency of one run, in milliseconds."""

    count: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    mean_ms: float

    @classmethod
    def of_ns(cls, samples_ns: Iterable[int]) -> LatencySummary | None:
        """Summarise nanosecond samples; None when there are none."""
        ordered = sorted(samples_ns)
        if not ordered:
            return None
        p50, p90, p99, p999 = (percentile(ordered, p) / NS_PER_MS for p in PERCENTILES)
        return cls(
            count=len(ordered),
            p50_ms=p50,
            p90_ms=p90,
            p99_ms=p99,
            p999_ms=p999,
            max_ms=ordered[-1] / NS_PER_MS,
            mean_ms=sum(ordered) / len(ordered) / NS_PER_MS,
        )

    def by_label(self) -> tuple[tuple[str, float], ...]:
        """(label, milliseconds) pairs in plotting order."""
        return (
            ("p50", self.p50_ms),
            ("p90", self.p90_ms),
            ("p99", self.p99_ms),
            ("p99.9", self.p999_ms),
            ("max", self.max_ms),
        )


def per_second(count: int, seconds: float) -> float:
    """A rate that is 0, not a crash, for an empty interval."""
    return count / seconds if seconds > 0 else 0.0
