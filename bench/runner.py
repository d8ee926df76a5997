"""Runs a parsed command: opens the target, runs the scenario (each sweep point), reports.

Each finished run is shown and appended to ``--results`` at once, so a long
sweep that is interrupted keeps the runs it finished.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from bench.cluster import GatewaySettings, Target, open_target
from bench.options import FanoutOptions, IdleOptions, Options, StormOptions
from bench.procstat import CpuUse, Machine
from bench.report import Progress
from bench.results import Result, RunRecord, utc_now
from bench.scenarios.fanout import run_fanout
from bench.scenarios.idle import run_idle
from bench.scenarios.resume import run_resume
from bench.scenarios.storm import run_storm

log = logging.getLogger(__name__)

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
    return "resume"


async def run_scenario(opts: Options, target: Target, progress: Progress, loop_name: str,
                       on_record: OnRecord) -> list[RunRecord]:
    """Every run the options ask for (one per sweep point), in order."""
    machine = Machine.read()
    records: list[RunRecord] = []

    def keep(result: Result, cpu: CpuUse, started: str) -> None:
        progress.done()
        record = RunRecord(
            scenario=scenario_name(opts), started_utc=started,
            target="local" if target.local else "remote",
            gateways=tuple(str(a) for a in target.addresses), loop=loop_name,
            options=opts, result=result, cpu=cpu, machine=machine,
        )
        records.append(record)
        on_record(record)

    report = progress.update
    if isinstance(opts, FanoutOptions):
        for receivers in opts.receivers:
            started = utc_now()
            keep(*await run_fanout(target, opts, receivers, report), started)
    elif isinstance(opts, IdleOptions):
        for connections in opts.connections:
            started = utc_now()
            keep(*await run_idle(target, opts, connections, report), started)
    elif isinstance(opts, StormOptions):
        started = utc_now()
        keep(*await run_storm(target, opts, report), started)
    else:
        started = utc_now()
        keep(*await run_resume(target, opts, report), started)
    return records


def execute(opts: Options, progress: Progress, on_record: OnRecord) -> list[RunRecord]:
    """Open the target (starting a local cluster if asked), run, stop what was started."""
    common = opts.common
    settings = GatewaySettings(rate_per_s=common.gateway_rate, burst=common.gateway_burst,
                               max_outbound=common.max_outbound)
    factory, loop_name = choose_loop()
    with open_target(common.gateways, common.local, settings, common.cluster_dir) as target, \
            asyncio.Runner(loop_factory=factory) as runner:
        try:
            return runner.run(run_scenario(opts, target, progress, loop_name, on_record))
        finally:
            progress.done()
