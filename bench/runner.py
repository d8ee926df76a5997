"""Runs a parsed command: opens the target, runs the scenario (each sweep point), reports.

Each finished run is shown and appended to ``--results`` at once, so a long
sweep that is interrupted keeps the runs it finished.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

from bench.cluster import GatewaySettings, Target, open_target
from bench.options import FanoutOptions, IdleOptions, Options, RoomsOptions, StormOptions
from bench.procstat import CpuUse, Machine
from bench.report import Progress
from bench.results import Result, RunRecord, utc_now
from bench.scenarios.fanout import run_fanout
from bench.scenarios.idle import run_idle
from bench.scenarios.resume import run_resume
from bench.scenarios.rooms import run_rooms
from bench.scenarios.storm import run_storm

LoopFactory = Callable[[], asyncio.AbstractEventLoop]
OnRecord = Callable[[RunRecord], None]


def choose_loop() -> tuple[LoopFactory | None, str]:
    """uvloop when importable (faster reads and writes), else asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return None, "asyncio"
    factory: LoopFactory = uvloop.new_event_loop
    return factory, "uvloop"


def scenario_name(opts: Options) -> str:
    if isinstance(opts, FanoutOptions):
        return "fanout"
    if isinstance(opts, IdleOptions):
        return "idle"
    if isinstance(opts, StormOptions):
        return "storm"
    if isinstance(opts, RoomsOptions):
        return "rooms"
    return "resume"


Point = Callable[[Target, Progress], Coroutine[Any, Any, tuple[Result, CpuUse]]]


def points(opts: Options) -> list[Point]:
    """One coroutine factory per run the options ask for (one per sweep point)."""
    if isinstance(opts, FanoutOptions):
        f = opts
        return [partial(_fanout_point, f, r) for r in f.receivers]
    if isinstance(opts, IdleOptions):
        i = opts
        return [partial(_idle_point, i, c) for c in i.connections]
    if isinstance(opts, StormOptions):
        s = opts
        return [lambda target, progress: run_storm(target, s, progress.update)]
    if isinstance(opts, RoomsOptions):
        m = opts
        return [lambda target, progress: run_rooms(target, m, progress.update)]
    r = opts
    return [lambda target, progress: run_resume(target, r, progress.update)]


def _fanout_point(opts: FanoutOptions, receivers: int, target: Target,
                  progress: Progress) -> Coroutine[Any, Any, tuple[Result, CpuUse]]:
    return run_fanout(target, opts, receivers, progress.update)


def _idle_point(opts: IdleOptions, connections: int, target: Target,
                progress: Progress) -> Coroutine[Any, Any, tuple[Result, CpuUse]]:
    return run_idle(target, opts, connections, progress.update)


def execute(opts: Options, progress: Progress, on_record: OnRecord) -> list[RunRecord]:
    """Run every point, each on a fresh local cluster when one is asked for.

    A fresh cluster per point keeps points independent: a gateway keeps
    memory it once allocated, which would flatter the next point's figure.
    """
    common = opts.common
    settings = GatewaySettings(rate_per_s=common.gateway_rate, burst=common.gateway_burst,
                               max_outbound=common.max_outbound)
    factory, loop_name = choose_loop()
    records: list[RunRecord] = []
    for point in points(opts):
        started = utc_now()
        machine = Machine.read()
        with open_target(common.gateways, common.local, settings, common.cluster_dir,
                         common.redis_url, common.redis_mode) as target, \
                asyncio.Runner(loop_factory=factory) as runner:
            try:
                result, cpu = runner.run(point(target, progress))
            finally:
                progress.done()
            record = RunRecord(
                scenario=scenario_name(opts), started_utc=started,
                target="local" if target.local else "remote",
                gateways=tuple(str(a) for a in target.addresses), loop=loop_name,
                options=opts, result=result, cpu=cpu, machine=machine,
            )
        records.append(record)
        on_record(record)
    return records
