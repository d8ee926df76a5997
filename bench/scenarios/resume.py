"""Resume: clients lose their gateway (SIGKILL) and resume on another.

Clients sit on the first local gateway while a sender on the second sends
at a steady rate. The first gateway is killed; each client reconnects at
once to a surviving gateway with ``hello`` carrying its ``token`` and
``since`` (the last id it saw), as docs/protocol.md prescribes. The run reports
the time from the kill to the resume ``history``, how many messages that
history replayed, and whether any id was skipped or seen twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from functools import partial

from bench.cluster import Target
from bench.connection import BenchConnection, LoginFailed, connect
from bench.options import ResumeOptions
from bench.procstat import CpuMeter, CpuUse
from bench.results import ResumeResult
from bench.scenarios.common import LoginPlan, closed_all, login_many, require_all, wait_progress
from bench.scenarios.fanout import Sender
from bench.stats import LatencySummary
from bench.wire import hello, nonce, padding
from protocol.frames import History, Message, Position, ServerFrame, Welcome

Report = Callable[[str, float, str], None]


class Tracker:
    """One client's view of the room: epoch, last id, gaps and duplicates."""

    def __init__(self, room: str) -> None:
        self.room = room
        self.epoch: str | None = None
        self.last_id = 0
        self.gaps = 0
        self.duplicates = 0

    def see(self, message_id: int) -> None:
        if message_id <= self.last_id:
            self.duplicates += 1
            return
        self.gaps += message_id - self.last_id - 1
        self.last_id = message_id

    def history(self, frame: History) -> int:
        """Apply a history frame; how many messages it brought that were new."""
        if frame.epoch != self.epoch:
            self.epoch = frame.epoch
            self.last_id = 0
        before = self.last_id
        for m in frame.messages:
            self.see(m.id)
        return sum(1 for m in frame.messages if m.id > before)


class TrackedConnection(BenchConnection):
    """Decodes every frame (a few hundred a second) and feeds its tracker."""

    def __init__(self, name: str, tracker: Tracker) -> None:
        super().__init__(name, markers=())
        self.tracker = tracker
        self.history_ns = 0
        self.welcome_ns = 0
        self.replayed = 0

    def frame_received(self, frame: ServerFrame, now_ns: int) -> None:
        if isinstance(frame, Welcome):
            self.welcome_ns = now_ns
        elif isinstance(frame, Message) and frame.room == self.tracker.room:
            self.tracker.see(frame.id)
        elif isinstance(frame, History) and frame.room == self.tracker.room:
            self.replayed += self.tracker.history(frame)
            if not self.history_ns:
                self.history_ns = now_ns


class ResumeClient:
    """A client that, when its connection dies, resumes on the next gateway."""

    def __init__(self, name: str, room: str) -> None:
        self.name = name
        self.room = room
        self.tracker = Tracker(room)
        self.conn: TrackedConnection | None = None
        self.welcome_ns = 0
        self.history_ns = 0
        self.replayed = 0
        self.failure: str | None = None

    def factory(self) -> TrackedConnection:
        return TrackedConnection(self.name, self.tracker)

    async def resume(self, target: Target, gateway: int, timeout: float) -> None:
        """Wait for the connection to die, then log in on ``gateway`` with since/token."""
        old = self.conn
        assert old is not None and old.welcome is not None
        await old.closed
        since = {}
        if self.tracker.epoch is not None:
            since[self.room] = Position(self.tracker.epoch, self.tracker.last_id)
        try:
            conn = await connect(self.factory, target.gateways[gateway].address, timeout)
            self.conn = conn
            await conn.login(hello(self.name, [self.room], since, old.welcome.token), timeout)
        except (OSError, TimeoutError, LoginFailed) as exc:
            self.failure = f"{self.name}: {type(exc).__name__}: {exc}"
            return
        await wait_progress(lambda: conn.history_ns > 0, lambda: 0, timeout)
        self.welcome_ns = conn.welcome_ns
        self.history_ns = conn.history_ns
        self.replayed = conn.replayed


async def run_resume(target: Target, opts: ResumeOptions,
                     report: Report) -> tuple[ResumeResult, CpuUse]:
    common = opts.common
    run = nonce()
    room = f"bench-{run}"
    clients = [ResumeClient(f"b{run}c{i}", room) for i in range(opts.clients)]
    victim, survivors = 0, list(range(1, len(target.gateways)))
    plans = [LoginPlan(c.factory, target.gateways[victim].address, hello(c.name, [room]))
             for c in clients]
    plans_sender = [LoginPlan(partial(Sender, f"b{run}s0", 0, room, padding(32)),
                              target.gateways[survivors[0]].address, hello(f"b{run}s0", [room]))]
    conns = require_all(await login_many(plans, common.concurrency, common.connect_timeout,
                                         stop_on_failure=True))
    for client, conn in zip(clients, conns, strict=True):
        client.conn = conn
    sender = require_all(await login_many(plans_sender, 1, common.connect_timeout, True))[0]
    assert isinstance(sender, Sender)
    sender.count_now()
    pacer: asyncio.Task[int] | None = None
    try:
        meter = CpuMeter(target.watched_pids())
        start = time.monotonic_ns()
        pacer = asyncio.create_task(sender.pace(opts.rate, start, 1 << 62))
        warm_end = time.monotonic() + opts.warmup
        while (left := warm_end - time.monotonic()) > 0:
            report("resume warm-up", 1 - left / opts.warmup, f"sent {sender.sent:,}")
            await asyncio.sleep(min(0.1, left))
        resumes = [
            asyncio.create_task(c.resume(target, survivors[i % len(survivors)],
                                         common.connect_timeout))
            for i, c in enumerate(clients)
        ]
        killed = time.monotonic_ns()
        await asyncio.get_running_loop().run_in_executor(None, target.kill_gateway, victim)
        await asyncio.gather(*resumes)
        after_end = time.monotonic() + opts.after
        while (left := after_end - time.monotonic()) > 0:
            report("resume after kill", 1 - left / opts.after, f"sent {sender.sent:,}")
            await asyncio.sleep(min(0.1, left))
        pacer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pacer
        await wait_progress(lambda: sender.in_flight <= 0, lambda: sender.acked, 5.0)
        last = sender.max_id
        live = [c for c in clients if c.failure is None]
        await wait_progress(lambda: all(c.tracker.last_id >= last for c in live),
                            lambda: sum(c.tracker.last_id for c in live), 5.0)
        cpu = meter.read()
    finally:
        if pacer is not None:
            pacer.cancel()
        await closed_all([sender, *(c.conn for c in clients if c.conn is not None)])
    ok = [c for c in clients if c.failure is None and c.history_ns]
    failures = [c.failure or f"{c.name}: no history after resume" for c in clients if c not in ok]
    result = ResumeResult(
        clients=len(clients),
        resumed=len(ok),
        failed=len(failures),
        first_failure=failures[0] if failures else None,
        resume_latency=LatencySummary.of_ns(c.history_ns - killed for c in ok),
        welcome_latency=LatencySummary.of_ns(c.welcome_ns - killed for c in ok),
        replayed_total=sum(c.replayed for c in ok),
        replayed_max=max((c.replayed for c in ok), default=0),
        gaps=sum(c.tracker.gaps for c in clients),
        duplicates=sum(c.tracker.duplicates for c in clients),
        missing_at_end=sum(max(0, last - c.tracker.last_id) for c in clients),
        sent=sender.sent,
        acked=sender.acked,
    )
    return result, cpu
