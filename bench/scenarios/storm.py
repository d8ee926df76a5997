"""Storm: logins as fast as ``--concurrency`` allows, until one fails or a cap.

Optionally a background fan-out runs at a fixed rate; its latency is
measured for ``--baseline`` seconds before the storm and again while the
storm lasts, so the report says how much a storm hurts everyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable
from functools import partial

from bench.cluster import Target
from bench.connection import BenchConnection
from bench.options import StormOptions
from bench.procstat import CpuMeter, CpuUse
from bench.results import StormResult
from bench.scenarios.common import LoginPlan, closed_all, login_many, peak_per_second
from bench.scenarios.fanout import FanoutRoom
from bench.stats import LatencySummary, per_second
from bench.wire import hello, nonce

Report = Callable[[str, float, str], None]

FAR_FUTURE_NS = 1 << 62


async def run_storm(target: Target, opts: StormOptions,
                    report: Report) -> tuple[StormResult, CpuUse]:
    common = opts.common
    background: FanoutRoom | None = None
    pacers: list[asyncio.Task[int]] = []
    baseline = during = None
    if opts.background_rate > 0:
        background = FanoutRoom(target, opts.receivers, opts.senders, 0, None, 64)
        await background.setup(common.concurrency, common.connect_timeout)
    try:
        meter = CpuMeter(target.watched_pids())
        if background is not None:
            start = time.monotonic_ns()
            background.record_latency(start)
            per_sender = opts.background_rate / len(background.senders)
            pacers = [asyncio.create_task(s.pace(per_sender, start + i * 1_000_000, FAR_FUTURE_NS))
                      for i, s in enumerate(background.senders)]
            end = time.monotonic() + opts.baseline
            while (left := end - time.monotonic()) > 0:
                report("storm baseline", 1 - left / opts.baseline, "background only")
                await asyncio.sleep(min(0.2, left))
            baseline = LatencySummary.of_ns(
                itertools.chain.from_iterable(background.take_latencies()))

        run = nonce()
        rooms = [opts.room] if opts.room else []
        plans = [LoginPlan(partial(BenchConnection, f"b{run}t{i}"), target.address_for(i),
                           hello(f"b{run}t{i}", rooms)) for i in range(opts.connections)]
        logins = await login_many(
            plans, common.concurrency, common.connect_timeout, stop_on_failure=True,
            on_progress=lambda d, t: report("storm", d / t, f"{d:,}/{t:,} logged in"),
        )
        if background is not None:
            during = LatencySummary.of_ns(
                itertools.chain.from_iterable(background.take_latencies()))
        cpu = meter.read()
        await closed_all(logins.live)
    finally:
        for task in pacers:
            task.cancel()
        for task in pacers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if background is not None:
            await background.close()
    ratio = None
    if baseline is not None and during is not None and baseline.p99_ms > 0:
        ratio = during.p99_ms / baseline.p99_ms
    result = StormResult(
        cap=opts.connections,
        logged_in=logins.succeeded,
        failed=logins.failures,
        first_failure=logins.first_failure,
        elapsed_s=logins.elapsed_s,
        logins_per_s=per_second(logins.succeeded, logins.elapsed_s),
        peak_logins_per_s=peak_per_second(logins.finished_ns),
        login_latency=LatencySummary.of_ns(logins.latencies_ns),
        background_rate=opts.background_rate,
        baseline_latency=baseline,
        storm_latency=during,
        p99_ratio=ratio,
    )
    return result, cpu
