"""Scenario helpers: per-second peaks and drains that end when nothing moves."""

from __future__ import annotations

import asyncio
import time
from array import array

from bench.scenarios.common import peak_per_second, wait_progress


def test_peak_per_second_uses_a_sliding_window() -> None:
    s = 1_000_000_000
    times = array("q", [0, s // 2, s - 1, s + 10, 3 * s])
    assert peak_per_second(times, window_ns=s) == 3.0
    assert peak_per_second(array("q")) == 0.0


def test_peak_of_a_burst_shorter_than_the_window_is_scaled_to_per_second() -> None:
    times = array("q", range(0, 100_000_000, 1_000_000))  # 100 in 0.1 s
    assert peak_per_second(times, window_ns=250_000_000) == 400.0


def test_peak_is_never_below_the_mean() -> None:
    s = 1_000_000_000
    times = array("q", [i * s // 10 for i in range(21)])  # 21 over 2 s, evenly
    assert peak_per_second(times, window_ns=250_000_000) >= 10.0


def test_wait_progress_returns_as_soon_as_done() -> None:
    async def scenario() -> tuple[bool, float]:
        counter = [0]

        async def tick() -> None:
            for _ in range(5):
                await asyncio.sleep(0.01)
                counter[0] += 1

        task = asyncio.create_task(tick())
        began = time.monotonic()
        ok = await wait_progress(lambda: counter[0] >= 5, lambda: counter[0], idle_timeout=5.0)
        await task
        return ok, time.monotonic() - began

    ok, took = asyncio.run(scenario())
    assert ok and took < 2.0


def test_wait_progress_gives_up_when_nothing_moves() -> None:
    async def scenario() -> tuple[bool, float]:
        began = time.monotonic()
        ok = await wait_progress(lambda: False, lambda: 1, idle_timeout=0.1)
        return ok, time.monotonic() - began

    ok, took = asyncio.run(scenario())
    assert not ok and 0.1 <= took < 2.0
