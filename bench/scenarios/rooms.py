"""Many rooms: U users in N small rooms, senders at random intervals, exact accounting.

The users log in (each ``hello`` names its 2 or 3 rooms), spread round-robin
over the gateways, and switch to counting at once: their rooms are fresh, so
every numbered message they then receive belongs to the run. A step draws a
Poisson schedule at the step's rate (``bench.schedule``) and one pacing task
writes each send on its user's connection when due, stamped with the time of
the write; every member (the sender too) records, per read, the sequence
number and latency of each numbered message. After the step's sends the
bench drains: every send answered, every owed delivery arrived. A step
*meets* the target when p99 is within ``--p99-ms``, nothing was refused, the
drain completed, and the bench's own pacing stayed within the same budget.

Mode ``rate`` runs one step; mode ``step`` lets ``RateSearch`` choose rates
until it converges or the time budget would be overrun. At the end,
``bench.ledger.account`` checks every acked message against every member of
its room.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from array import array
from collections.abc import Callable
from functools import partial

from bench.cluster import Target
from bench.connection import BenchConnection
from bench.cost import CostMeter, redis_client
from bench.ledger import account
from bench.options import RoomsOptions
from bench.population import Population, assign, default_rooms
from bench.procstat import CpuMeter, CpuUse, own_cpu_seconds
from bench.results import RoomsResult, RoomsStep
from bench.scenarios.common import LoginPlan, closed_all, login_many, require_all, wait_progress
from bench.schedule import RateSearch, Schedule, poisson_schedule
from bench.stats import LatencySummary, percentile
from bench.wire import hello, nonce, numbered_send, padding
from protocol.frames import Ack, Error, ServerFrame

log = logging.getLogger(__name__)

Report = Callable[[str, float, str], None]

REF_PREFIX = "~A"
STEP_OVERHEAD_S = 1.0
"""Set-up and drain time a step adds to its duration, for the budget."""


class Tally:
    """What the run's sends became: acked sequence numbers, refusals, owed deliveries.

    Owned by the run, touched only on the event loop (no lock).
    """

    def __init__(self, population: Population) -> None:
        self._sizes = [len(m) for m in population.members]
        self.room_of: array[int] = array("l")
        """Sequence number -> room it was sent to (every send of the run, in order)."""
        self.acked: array[int] = array("q")
        self.errors = 0
        self.owed = 0
        """Deliveries owed: the room size of every acked message."""
        self.first_error: str | None = None

    @property
    def answered(self) -> int:
        return len(self.acked) + self.errors

    def on_ack(self, seq: int) -> None:
        self.acked.append(seq)
        self.owed += self._sizes[self.room_of[seq]]

    def on_error(self, text: str) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = text
            log.warning("send refused: %s", text)


class RoomUser(BenchConnection):
    """A member of a few rooms: sends when the schedule says, records what it receives."""

    def __init__(self, name: str, tally: Tally) -> None:
        super().__init__(name)
        self._tally = tally

    def frame_received(self, frame: ServerFrame, now_ns: int) -> None:
        if isinstance(frame, Ack) and frame.ref.startswith(REF_PREFIX):
            self._tally.on_ack(int(frame.ref[len(REF_PREFIX):]))
        elif isinstance(frame, Error) and frame.ref and frame.ref.startswith(REF_PREFIX):
            self._tally.on_error(f"{frame.code.value}: {frame.message}")

    def start_recording(self) -> None:
        self.seqs = array("q")
        self.stamps = array("q")
        self.count_now()


class RoomsRun:
    """The logged-in population of one run, and its steps."""

    def __init__(self, target: Target, opts: RoomsOptions) -> None:
        self.target = target
        self.opts = opts
        rng = random.Random(opts.seed)
        rooms = opts.rooms or default_rooms(opts.users, opts.room_size, opts.rooms_per_user)
        self.population = assign(opts.users, rooms, opts.room_size, opts.rooms_per_user, rng)
        self.rng = rng
        self.run = nonce()
        self.room_names = [f"m{self.run}-{r}" for r in range(self.population.rooms)]
        self.tally = Tally(self.population)
        self.users: list[RoomUser] = []
        self.pad = padding(opts.size)

    async def setup(self, report: Report) -> float:
        """Log every user in to its rooms; the seconds it took."""
        plans = [
            LoginPlan(partial(RoomUser, f"b{self.run}u{u}", self.tally),
                      self.target.address_for(u),
                      hello(f"b{self.run}u{u}", [self.room_names[r] for r in rooms]))
            for u, rooms in enumerate(self.population.rooms_of)
        ]
        logins = await login_many(
            plans, self.opts.common.concurrency, self.opts.common.connect_timeout,
            stop_on_failure=True,
            on_progress=lambda d, t: report("rooms login", d / t, f"{d:,}/{t:,}"))
        self.users = [u for u in require_all(logins) if isinstance(u, RoomUser)]
        for user in self.users:
            user.start_recording()
        return logins.elapsed_s

    def received(self) -> int:
        return sum(len(u.seqs) for u in self.users if u.seqs is not None)

    async def pace(self, schedule: Schedule, seq0: int, t0: int) -> array[int]:
        """Write every send of ``schedule`` when due; the lateness of each (ns)."""
        offsets, senders, rooms = schedule.offsets_ns, schedule.senders, schedule.rooms
        users, names, pad = self.users, self.room_names, self.pad
        lags: array[int] = array("q")
        i, n = 0, len(offsets)
        while i < n:
            now = time.monotonic_ns()
            rel = now - t0
            if offsets[i] > rel:
                await asyncio.sleep((offsets[i] - rel) / 1e9)
                continue
            while i < n and offsets[i] <= rel:
                users[senders[i]].write(numbered_send(names[rooms[i]], seq0 + i, now, pad))
                lags.append(rel - offsets[i])
                i += 1
            await asyncio.sleep(0)  # let reads in even when behind
        return lags

    async def step(self, rate: float, report: Report) -> RoomsStep:
        opts = self.opts
        tally = self.tally
        schedule = poisson_schedule(rate, opts.duration, self.population, self.rng)
        seq0 = len(tally.room_of)
        tally.room_of.extend(schedule.rooms)
        acked0, errors0, received0 = len(tally.acked), tally.errors, self.received()
        client = redis_client(self.target.redis_url)
        try:
            costs = CostMeter(self.target.gateway_pids, client)
            own0, wall0 = own_cpu_seconds(), time.monotonic()
            t0 = time.monotonic_ns()
            for user in self.users:
                user.stamp_floor = t0 + int(opts.warmup * 1e9)
            pacer = asyncio.create_task(self.pace(schedule, seq0, t0))
            label = f"rooms {rate:,.0f} msg/s"
            while not pacer.done():
                await asyncio.wait({pacer}, timeout=0.2)
                elapsed = (time.monotonic_ns() - t0) / 1e9
                report(label, min(elapsed / opts.duration, 1.0),
                       f"acked {len(tally.acked) - acked0:,}")
            lags = pacer.result()
            send_s = (time.monotonic_ns() - t0) / 1e9
            total = len(tally.room_of)
            answered = await wait_progress(lambda: tally.answered >= total,
                                           lambda: tally.answered, opts.drain_timeout)
            delivered = await wait_progress(lambda: self.received() >= tally.owed,
                                            self.received, opts.drain_timeout)
            acked = len(tally.acked) - acked0
            cost = costs.read(acked)
            bench_util = (own_cpu_seconds() - own0) / max(time.monotonic() - wall0, 1e-9)
        finally:
            if client is not None:
                client.close()
        samples: list[array[int]] = []
        for user in self.users:
            if user.stamps is not None:
                samples.append(user.stamps)
                user.stamps = array("q")
        latency = LatencySummary.of_ns(itertools.chain.from_iterable(samples))
        ordered_lags = sorted(lags)
        lag_p99 = percentile(ordered_lags, 99) / 1e6 if ordered_lags else 0.0
        errors = tally.errors - errors0
        drained = answered and delivered
        met = (latency is not None and latency.p99_ms <= opts.p99_ms and errors == 0
               and drained and lag_p99 <= opts.p99_ms)
        return RoomsStep(
            rate_target=rate, sent=len(schedule), acked=acked, errors=errors, send_s=send_s,
            messages_per_s=acked / max(send_s, opts.duration),
            deliveries=self.received() - received0, latency=latency, lag_p99_ms=lag_p99,
            lag_max_ms=(ordered_lags[-1] / 1e6 if ordered_lags else 0.0), drained=drained,
            met=met, bench_util=bench_util, cost=cost,
        )

    async def close(self) -> None:
        await closed_all(list(self.users))


def _rates(opts: RoomsOptions) -> RateSearch | None:
    if opts.mode == "rate":
        return None
    return RateSearch(opts.rate, factor=opts.factor, resolution=opts.resolution)


async def run_rooms(target: Target, opts: RoomsOptions,
                    report: Report) -> tuple[RoomsResult, CpuUse]:
    began = time.monotonic()
    run = RoomsRun(target, opts)
    pop = run.population
    log.info("rooms: %d users, %d rooms, %d memberships (%.2f per room)", pop.users, pop.rooms,
             pop.memberships, pop.mean_room_size)
    try:
        login_s = await run.setup(report)
        meter = CpuMeter(target.watched_pids())
        steps: list[RoomsStep] = []
        search = _rates(opts)
        deadline = time.monotonic() + opts.budget
        rate: float | None = opts.rate
        while rate is not None:
            step = await run.step(rate, report)
            steps.append(step)
            log.info("step %.0f msg/s: p99 %s, met %s", rate,
                     "n/a" if step.latency is None else f"{step.latency.p99_ms:.2f} ms",
                     step.met)
            if search is None:
                break
            search.record(rate, step.met)
            rate = search.next_rate()
            if time.monotonic() + opts.duration + STEP_OVERHEAD_S > deadline:
                break
        cpu = meter.read()
        accounting = account(pop, run.tally.room_of, run.tally.acked,
                             [u.seqs if u.seqs is not None else () for u in run.users])
        disconnects = sum(1 for u in run.users if u.closed.done())
    finally:
        await run.close()
    met = [s for s in steps if s.met]
    result = RoomsResult(
        mode=opts.mode, users=pop.users, rooms=pop.rooms, memberships=pop.memberships,
        mean_room_size=pop.mean_room_size, p99_target_ms=opts.p99_ms, steps=tuple(steps),
        sustained=max(met, key=lambda s: s.messages_per_s) if met else None,
        accounting=accounting, disconnects=disconnects, login_s=login_s,
        elapsed_s=time.monotonic() - began,
    )
    return result, cpu
