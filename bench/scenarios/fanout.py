"""Fan-out: R receivers and S senders in one room, spread round-robin over gateways.

``saturate`` keeps ``window`` unacknowledged sends per sender in flight and
reports deliveries per second and loss after a drain; ``rate`` paces sends at
a fixed total rate and reports end-to-end latency from each send to every
receipt. Receivers only count lines (and, in rate mode, read send stamps);
counting starts after a marker message, published behind every ``joined``,
so each counted line is a message of the run.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from array import array
from collections.abc import Callable
from functools import partial

from bench.cluster import Target
from bench.connection import RECEIVER_MARKERS, BenchConnection
from bench.cost import CostMeter, redis_client
from bench.options import Address, FanoutOptions
from bench.procstat import CpuMeter, CpuUse
from bench.results import FanoutResult
from bench.scenarios.common import (
    LoginPlan,
    closed_all,
    login_many,
    require_all,
    wait_progress,
)
from bench.stats import LatencySummary, per_second
from bench.wire import (
    hello,
    marker_send,
    nonce,
    padding,
    send_ref,
    start_marker,
    timed_send,
)
from protocol.frames import Ack, Error, ServerFrame

log = logging.getLogger(__name__)

SETTLE_TIMEOUT_S = 60.0
SLOW_RCVBUF = 4096
"""Kernel receive buffer of a slow consumer, so the gateway's buffer fills, not ours."""

Report = Callable[[str, float, str], None]


class Sender(BenchConnection):
    """Sends timed messages; counts acks; in saturate mode refills its window per read."""

    def __init__(self, name: str, index: int, room: str, pad: str) -> None:
        super().__init__(name)
        self.index = index
        self.room = room
        self.pad = pad
        self._prefix = send_ref(index, 0)[:-1]  # "~A<index>."
        self.sent = 0
        self.acked = 0
        self.errors = 0
        self.max_id = 0
        self.first_error: str | None = None
        self.window = 0
        self._refill = 0

    @property
    def in_flight(self) -> int:
        return self.sent - self.acked - self.errors

    def frame_received(self, frame: ServerFrame, now_ns: int) -> None:
        if isinstance(frame, Ack) and frame.ref.startswith(self._prefix):
            self.acked += 1
            self._refill += 1
            if frame.id is not None and frame.id > self.max_id:
                self.max_id = frame.id
        elif isinstance(frame, Error) and frame.ref and frame.ref.startswith(self._prefix):
            self.errors += 1
            self._refill += 1
            if self.first_error is None:
                self.first_error = f"{frame.code.value}: {frame.message}"
                log.warning("%s: send refused: %s", self.name, self.first_error)

    def read_done(self) -> None:
        if self._refill:
            count, self._refill = self._refill, 0
            if self.window:
                self.send_batch(count)

    def send_batch(self, count: int) -> None:
        """``count`` sends in one write, stamped with the time of the write."""
        now = time.monotonic_ns()
        room, pad, index, first = self.room, self.pad, self.index, self.sent + 1
        self.write(b"".join(
            timed_send(room, send_ref(index, seq), now, pad)
            for seq in range(first, first + count)
        ))
        self.sent += count

    def start_saturating(self, window: int) -> None:
        self.window = window
        self.send_batch(window)

    def stop(self) -> None:
        self.window = 0

    async def pace(self, rate: float, start_ns: int, end_ns: int) -> int:
        """Send at ``rate`` per second from ``start_ns`` until ``end_ns``; max lag in ns."""
        period = 1e9 / rate
        sent = 0
        lag = 0
        while True:
            now = time.monotonic_ns()
            if now >= end_ns:
                return lag
            due = int((now - start_ns) / period) + 1 - sent
            if due > 0:
                lag = max(lag, now - int(start_ns + sent * period))
                self.send_batch(due)
                sent += due
            wake = start_ns + sent * period
            await asyncio.sleep(max(0.0, (wake - time.monotonic_ns()) / 1e9))


class FanoutRoom:
    """One room of receivers and senders, logged in and settled, ready to measure."""

    def __init__(self, target: Target, receivers: int, senders: int, slow: int,
                 room: str | None, size: int) -> None:
        self.run = nonce()
        self.room = room or f"bench-{self.run}"
        self.target = target
        self._counts = (receivers, senders, slow)
        self._pad = padding(size)
        self.receivers: list[BenchConnection] = []
        self.senders: list[Sender] = []
        self.slow: list[BenchConnection] = []

    @property
    def members(self) -> list[BenchConnection]:
        return [*self.receivers, *self.senders]

    def _plans(self) -> list[LoginPlan[BenchConnection]]:
        receivers, senders, slow = self._counts
        rooms = [self.room]
        plans: list[LoginPlan[BenchConnection]] = []

        def at(index: int) -> Address:
            return self.target.address_for(index)

        for i in range(receivers):
            name = f"b{self.run}r{i}"
            plans.append(LoginPlan(partial(BenchConnection, name, RECEIVER_MARKERS), at(i),
                                   hello(name, rooms)))
        for j in range(senders):
            name = f"b{self.run}s{j}"
            plans.append(LoginPlan(partial(Sender, name, j, self.room, self._pad), at(j),
                                   hello(name, rooms)))
        for k in range(slow):
            name = f"b{self.run}w{k}"
            plans.append(LoginPlan(partial(BenchConnection, name, RECEIVER_MARKERS), at(k),
                                   hello(name, rooms),
                                   rcvbuf=SLOW_RCVBUF))
        return plans

    async def setup(self, concurrency: int, timeout: float,
                    progress: Callable[[int, int], None] | None = None) -> None:
        """Log everyone in, then wait until every member counts from the start marker."""
        logins = await login_many(self._plans(), concurrency, timeout, stop_on_failure=True,
                                  on_progress=progress)
        conns = require_all(logins)
        receivers, senders, _ = self._counts
        self.receivers = conns[:receivers]
        self.senders = [c for c in conns[receivers : receivers + senders]
                        if isinstance(c, Sender)]
        self.slow = conns[receivers + senders :]
        for conn in self.slow:
            conn.pause_reading()
        switched = [c.count_after(start_marker(self.run)) for c in self.members]
        self.senders[0].write(marker_send(self.room, self.run))
        try:
            await asyncio.wait_for(asyncio.gather(*switched), SETTLE_TIMEOUT_S)
        except BaseException:
            await self.close()
            raise

    def received(self) -> int:
        return sum(r.messages for r in self.receivers)

    def sent(self) -> int:
        return sum(s.sent for s in self.senders)

    def answered(self) -> int:
        return sum(s.acked + s.errors for s in self.senders)

    def acked(self) -> int:
        return sum(s.acked for s in self.senders)

    def record_latency(self, floor_ns: int) -> None:
        """From now on receivers record latencies of messages stamped at or after ``floor_ns``."""
        for r in self.receivers:
            r.stamp_floor = floor_ns
            r.stamps = array("q")

    def take_latencies(self) -> list[array[int]]:
        """The latencies recorded so far; recording continues into fresh arrays."""
        taken: list[array[int]] = []
        for r in self.receivers:
            if r.stamps is not None:
                taken.append(r.stamps)
                r.stamps = array("q")
        return taken

    async def drain(self, idle_timeout: float) -> None:
        """Wait for every ack, then for every expected delivery (or until nothing moves)."""
        await wait_progress(lambda: all(s.in_flight <= 0 for s in self.senders),
                            self.answered, idle_timeout)
        expected = self.acked() * len(self.receivers)
        await wait_progress(lambda: self.received() >= expected, self.received, idle_timeout)

    async def slow_dropped(self, timeout: float = 5.0) -> int:
        """How many slow consumers the gateways disconnected (they read at last now)."""
        for conn in self.slow:
            conn.resume_reading()
        pending = [c.closed for c in self.slow if not c.closed.done()]
        if pending:
            await asyncio.wait(pending, timeout=timeout)
        return sum(1 for c in self.slow if c.closed.done())

    async def close(self) -> None:
        await closed_all([*self.receivers, *self.senders, *self.slow])


async def run_fanout(target: Target, opts: FanoutOptions, receivers: int,
                     report: Report) -> tuple[FanoutResult, CpuUse]:
    """One fan-out run with ``receivers`` receivers."""
    common = opts.common
    room = FanoutRoom(target, receivers, opts.senders, opts.slow, opts.room, opts.size)
    label = f"fanout {opts.mode} R={receivers}"
    await room.setup(common.concurrency, common.connect_timeout,
                     lambda done, total: report(f"{label} login", done / total, f"{done}/{total}"))
    try:
        return await _measure(room, opts, receivers, report, label)
    finally:
        await room.close()


async def _measure(room: FanoutRoom, opts: FanoutOptions, receivers: int, report: Report,
                   label: str) -> tuple[FanoutResult, CpuUse]:
    client = redis_client(room.target.redis_url)
    try:
        return await _measure_with(room, opts, receivers, report, label,
                                   CostMeter(room.target.gateway_pids, client))
    finally:
        if client is not None:
            client.close()


async def _measure_with(room: FanoutRoom, opts: FanoutOptions, receivers: int, report: Report,
                        label: str, costs: CostMeter) -> tuple[FanoutResult, CpuUse]:
    meter = CpuMeter(room.target.watched_pids())
    t0 = time.monotonic_ns()
    end = t0 + int(opts.duration * 1e9)
    pacers: list[asyncio.Task[int]] = []
    if opts.mode == "saturate":
        for s in room.senders:
            s.start_saturating(opts.window)
    else:
        room.record_latency(t0 + int(opts.warmup * 1e9))
        per_sender = opts.rate / len(room.senders)
        offset = 1e9 / opts.rate  # stagger senders so their sends interleave
        pacers = [asyncio.create_task(s.pace(per_sender, t0 + int(i * offset), end))
                  for i, s in enumerate(room.senders)]
    while (now := time.monotonic_ns()) < end:
        await asyncio.sleep(min(0.2, (end - now) / 1e9))
        elapsed = (time.monotonic_ns() - t0) / 1e9
        report(label, elapsed / opts.duration,
               f"sent {room.sent():,}  deliveries {per_second(room.received(), elapsed):,.0f}/s")
    lag_ns = max(await asyncio.gather(*pacers), default=0)
    for s in room.senders:
        s.stop()
    send_end = time.monotonic_ns()
    report(f"{label} drain", 1.0, "")
    await room.drain(opts.drain_timeout)
    drained = time.monotonic_ns()
    cpu = meter.read()
    cost = costs.read(room.acked())

    received = room.received()
    acked = room.acked()
    expected = acked * receivers
    last_rx = max((r.last_rx_ns for r in room.receivers), default=t0)
    deliver_s = max(last_rx - t0, 1) / 1e9
    latency = None
    if opts.mode == "rate":
        latency = LatencySummary.of_ns(itertools.chain.from_iterable(room.take_latencies()))
    dropped = await room.slow_dropped() if room.slow else 0
    result = FanoutResult(
        mode=opts.mode,
        receivers=receivers,
        senders=len(room.senders),
        slow=len(room.slow),
        send_s=(send_end - t0) / 1e9,
        sent=room.sent(),
        acked=acked,
        errors=sum(s.errors for s in room.senders),
        expected=expected,
        received=received,
        lost=max(0, expected - received),
        extra=max(0, received - expected),
        deliveries_per_s=received / deliver_s,
        messages_per_s=per_second(acked, (send_end - t0) / 1e9),
        drain_s=(drained - send_end) / 1e9,
        disconnects=sum(1 for c in room.members if c.closed.done()),
        slow_dropped=dropped,
        rate_target=opts.rate,
        send_lag_ms_max=lag_ns / 1e6,
        latency=latency,
        cost=cost,
    )
    return result, cpu
