"""Idle: C logged-in connections that do nothing but answer ping.

Reports each local gateway's resident memory per connection (VmRSS after
the logins and a ping round, minus before, over the connections it holds)
and checks that every connection answers ping, at once and again after a
hold. Remote gateways: no memory figures, pings only.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from functools import partial

from bench.cluster import Target
from bench.connection import BenchConnection
from bench.options import IdleOptions
from bench.procstat import CpuMeter, CpuUse, rss_kib
from bench.results import GatewayMemory, IdleResult
from bench.scenarios.common import LoginPlan, closed_all, login_many
from bench.stats import LatencySummary, per_second
from bench.wire import PONG_MARK, hello, nonce, ping, pong_ref
from protocol.frames import Pong, ServerFrame

Report = Callable[[str, float, str], None]


class IdleConnection(BenchConnection):
    """Decodes everything (there is little) and remembers when its pong came."""

    def __init__(self, name: str, gateway: str) -> None:
        super().__init__(name, markers=(PONG_MARK,))
        self.gateway = gateway
        self.pong_ns = 0
        self._want: str | None = None

    def frame_received(self, frame: ServerFrame, now_ns: int) -> None:
        if isinstance(frame, Pong) and frame.ref == self._want:
            self.pong_ns = now_ns

    def send_ping(self, ref: str) -> int:
        self._want = ref
        self.pong_ns = 0
        sent = time.monotonic_ns()
        self.write(ping(ref))
        return sent


async def ping_round(conns: list[IdleConnection], round_no: int, spread: float, timeout: float,
                     report: Report) -> tuple[int, list[int]]:
    """Ping every connection, spread evenly over ``spread`` seconds (0: all at once).

    Returns how many answered within ``timeout`` of the last ping, and their
    round trips in ns. Real clients ping every 30 s, each on its own clock,
    so a spread is the realistic load; a burst is the worst case.
    """
    sent: list[int] = []
    ref = pong_ref(round_no)
    start = time.monotonic()
    label = f"idle ping round {round_no}"
    for index, conn in enumerate(conns):
        due = start + spread * index / max(len(conns), 1)
        if (wait := due - time.monotonic()) > 0.002:
            report(label, index / max(len(conns), 1), f"{index:,}/{len(conns):,} pinged")
            await asyncio.sleep(wait)
        sent.append(conn.send_ping(ref))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answered = sum(1 for c in conns if c.pong_ns)
        report(label, answered / max(len(conns), 1), f"{answered:,}/{len(conns):,} answered")
        if all(c.pong_ns or c.closed.done() for c in conns):
            break
        await asyncio.sleep(0.05)
    rtts = [c.pong_ns - t for c, t in zip(conns, sent, strict=True) if c.pong_ns]
    return len(rtts), rtts


def _rooms(run: str, index: int, room_size: int) -> list[str]:
    return [f"idle-{run}-{index // room_size}"] if room_size else []


async def run_idle(target: Target, opts: IdleOptions, connections: int,
                   report: Report) -> tuple[IdleResult, CpuUse]:
    common = opts.common
    run = nonce()
    meter = CpuMeter(target.watched_pids())
    before = {g.id: rss_kib(g.pid) for g in target.gateways if g.pid is not None}
    plans: list[LoginPlan[IdleConnection]] = []
    for i in range(connections):
        gateway = target.gateways[i % len(target.gateways)]
        name = f"b{run}i{i}"
        plans.append(LoginPlan(partial(IdleConnection, name, gateway.id), gateway.address,
                               hello(name, _rooms(run, i, opts.room_size))))
    logins = await login_many(
        plans, common.concurrency, common.connect_timeout, stop_on_failure=False,
        on_progress=lambda d, t: report("idle login", d / t, f"{d:,}/{t:,}"),
    )
    conns = logins.live
    try:
        answered_first, rtts = await ping_round(conns, 1, opts.ping_spread, opts.ping_timeout,
                                                report)
        after = {g.id: rss_kib(g.pid) for g in target.gateways if g.pid is not None}
        held = Counter(c.gateway for c in conns)
        memory = tuple(
            GatewayMemory(gw, held[gw], b, a, (a - b) / held[gw])
            for gw, b in before.items()
            if b is not None and (a := after.get(gw)) is not None and held[gw]
        )
        hold_end = time.monotonic() + opts.hold
        while (left := hold_end - time.monotonic()) > 0:
            report("idle hold", 1 - left / max(opts.hold, 1e-9), f"{left:.0f} s left")
            await asyncio.sleep(min(0.25, left))
        answered_after, more = await ping_round(conns, 2, opts.ping_spread, opts.ping_timeout,
                                                report)
        cpu = meter.read()
    finally:
        await closed_all(conns)
    result = IdleResult(
        connections=connections,
        room_size=opts.room_size,
        logged_in=logins.succeeded,
        login_failures=logins.failures,
        first_failure=logins.first_failure,
        login_s=logins.elapsed_s,
        logins_per_s=per_second(logins.succeeded, logins.elapsed_s),
        answered_first=answered_first,
        answered_after_hold=answered_after,
        hold_s=opts.hold,
        ping_spread_s=opts.ping_spread,
        ping_latency=LatencySummary.of_ns(rtts + more),
        memory=memory,
        per_connection_kib_max=max((m.per_connection_kib for m in memory), default=None),
    )
    return result, cpu
