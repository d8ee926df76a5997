"""The terminal side of a run: a progress bar on stderr and a table on stdout.

Plain text, no dependency: the table is two aligned columns, the progress
bar is redrawn in place with a carriage return when stderr is a terminal.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import TextIO

from bench.cost import MessageCost, PerMessage
from bench.procstat import CpuUse
from bench.results import (
    FanoutResult,
    IdleResult,
    Result,
    ResumeResult,
    RoomsResult,
    RoomsStep,
    RunRecord,
    StormResult,
)
from bench.stats import LatencySummary

Row = tuple[str, str]


def human(value: float) -> str:
    """1234567 -> '1.23 M', 1234 -> '1.23 k', 12.3 -> '12.3'."""
    for limit, suffix in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}"


def ms(value: float) -> str:
    return f"{value:.3f} ms" if value < 10 else f"{value:.1f} ms"


def format_table(title: str, rows: Sequence[Row]) -> str:
    """A titled two-column table, keys left-aligned, values after a gap."""
    width = max((len(k) for k, _ in rows), default=0)
    lines = [title, "-" * max(len(title), width + 2 + max((len(v) for _, v in rows), default=0))]
    lines += [f"{k.ljust(width)}  {v}" for k, v in rows]
    return "\n".join(lines) + "\n"


def latency_rows(label: str, summary: LatencySummary | None) -> list[Row]:
    if summary is None:
        return [(label, "no samples")]
    return [
        (f"{label} p50 / p90", f"{ms(summary.p50_ms)} / {ms(summary.p90_ms)}"),
        (f"{label} p99 / p99.9", f"{ms(summary.p99_ms)} / {ms(summary.p999_ms)}"),
        (f"{label} max (n)", f"{ms(summary.max_ms)} ({summary.count:,} samples)"),
    ]


def cpu_rows(cpu: CpuUse) -> list[Row]:
    flag = "  << the bench saturated: figures are a floor" if cpu.bench_saturated else ""
    rows: list[Row] = [("bench CPU", f"{cpu.bench_util:.0%} of one core{flag}")]
    if cpu.procs:
        rows.append(("local CPU", ", ".join(f"{n} {u:.0%}" for n, u in cpu.procs)))
    if cpu.machine_busy is not None:
        rows.append(("machine CPU", f"{cpu.machine_busy:.2f} of {os.cpu_count()} cores busy, "
                                    f"{cpu.others or 0.0:.2f} by other processes"))
    return rows


def _per_message(value: PerMessage | None, unknown: str) -> str:
    if value is None:
        return unknown
    return f"{value.us:.1f} µs ({value.user_us:.1f} user, {value.system_us:.1f} system)"


def cost_rows(cost: MessageCost | None) -> list[Row]:
    """CPU per message taken in, for the gateways and for Redis."""
    if cost is None:
        return []
    gateways = _per_message(cost.gateway, "unknown (no gateway pid on this machine)")
    if cost.gateway is not None:
        gateways += f" over {cost.gateways_measured} gateway(s)"
    return [
        ("gateway CPU / message", gateways),
        ("Redis CPU / message", _per_message(cost.redis, "unknown (give --redis-url)")),
    ]


def _fanout_rows(r: FanoutResult) -> list[Row]:
    rows: list[Row] = [
        ("receivers / senders", f"{r.receivers} / {r.senders}"
         + (f" (+{r.slow} slow, {r.slow_dropped} dropped)" if r.slow else "")),
        ("sent / acked / errors", f"{r.sent:,} / {r.acked:,} / {r.errors:,}"),
        ("messages/s (acked)", human(r.messages_per_s)),
        ("deliveries/s", human(r.deliveries_per_s)),
        ("received / expected", f"{r.received:,} / {r.expected:,}"),
        ("lost / extra", f"{r.lost:,} / {r.extra:,}"),
        ("drain", f"{r.drain_s:.2f} s"),
        ("disconnects", str(r.disconnects)),
    ]
    if r.mode == "rate":
        rows.insert(2, ("target rate", f"{r.rate_target:g} msg/s"))
        rows.append(("pacing lag max", ms(r.send_lag_ms_max)))
        rows += latency_rows("latency", r.latency)
    return rows + cost_rows(r.cost)


def _idle_rows(r: IdleResult) -> list[Row]:
    rows: list[Row] = [
        ("connections", f"{r.logged_in:,} of {r.connections:,} logged in"
         + (f" (room size {r.room_size})" if r.room_size else " (no room)")),
        ("logins/s", human(r.logins_per_s)),
        ("answered ping", f"{r.answered_first:,} after login, {r.answered_after_hold:,} after "
                          f"{r.hold_s:g} s idle"),
        ("ping spread", f"each round over {r.ping_spread_s:g} s" if r.ping_spread_s
                        else "every connection at once"),
    ]
    if r.first_failure:
        rows.append(("first failure", f"{r.first_failure} ({r.login_failures} failed)"))
    rows += latency_rows("ping", r.ping_latency)
    for m in r.memory:
        rows.append((f"RSS {m.gateway}", f"{m.rss_before_kib:,} -> {m.rss_after_kib:,} KiB for "
                     f"{m.connections:,} conns = {m.per_connection_kib:.1f} KiB/conn"))
    if not r.memory:
        rows.append(("RSS", "not measured (remote gateways)"))
    return rows


def _storm_rows(r: StormResult) -> list[Row]:
    rows: list[Row] = [
        ("logged in", f"{r.logged_in:,} of cap {r.cap:,} in {r.elapsed_s:.2f} s"),
        ("logins/s (mean / peak)", f"{human(r.logins_per_s)} / {human(r.peak_logins_per_s)}"),
        ("failed", str(r.failed) + (f" (first: {r.first_failure})" if r.first_failure else "")),
        *latency_rows("login", r.login_latency),
    ]
    if r.background_rate:
        rows += latency_rows("background before", r.baseline_latency)
        rows += latency_rows("background during", r.storm_latency)
        rows.append(("p99 during / before",
                     "n/a" if r.p99_ratio is None else f"{r.p99_ratio:.2f}x"))
    return rows


def _resume_rows(r: ResumeResult) -> list[Row]:
    return [
        ("clients resumed", f"{r.resumed} of {r.clients}"
         + (f" (first failure: {r.first_failure})" if r.first_failure else "")),
        *latency_rows("kill -> history", r.resume_latency),
        *latency_rows("kill -> welcome", r.welcome_latency),
        ("replayed", f"{r.replayed_total:,} messages (max {r.replayed_max} per client)"),
        ("gaps / duplicates", f"{r.gaps} / {r.duplicates}"),
        ("missing at end", str(r.missing_at_end)),
        ("sent / acked", f"{r.sent:,} / {r.acked:,}"),
    ]


def _step_line(s: RoomsStep) -> str:
    p99 = "no samples" if s.latency is None else f"p99 {ms(s.latency.p99_ms)}"
    gw = "?" if s.cost.gateway is None else f"{s.cost.gateway.us:.0f}"
    rd = "?" if s.cost.redis is None else f"{s.cost.redis.us:.0f}"
    flags = "" if s.met else "  MISSED" + ("" if s.drained else " (not drained)") \
        + (f" ({s.errors} refused)" if s.errors else "") \
        + (f" (bench lag p99 {ms(s.lag_p99_ms)})" if s.lag_p99_ms > 1.0 else "")
    return (f"{human(s.messages_per_s)} msg/s acked, {p99}, CPU/msg gw {gw} µs, "
            f"Redis {rd} µs, bench {s.bench_util:.0%}{flags}")


def _rooms_rows(r: RoomsResult) -> list[Row]:
    a = r.accounting
    rows: list[Row] = [
        ("users / rooms", f"{r.users:,} / {r.rooms:,} ({r.memberships:,} memberships, "
                          f"{r.mean_room_size:.2f} per room)"),
        ("logins", f"{r.login_s:.1f} s"),
    ]
    for s in r.steps:
        rows.append((f"step {s.rate_target:,.0f} msg/s", _step_line(s)))
    best = r.sustained
    if best is None:
        rows.append(("sustained", f"no step met p99 <= {ms(r.p99_target_ms)}"))
    else:
        rows.append(("sustained", f"{human(best.messages_per_s)} msg/s with p99 "
                     f"{ms(best.latency.p99_ms if best.latency else 0.0)} "
                     f"(target {ms(r.p99_target_ms)})"))
        rows += latency_rows("latency", best.latency)
        rows += cost_rows(best.cost)
    rows += [
        ("acked / owed deliveries", f"{a.acked:,} / {a.expected:,}"),
        ("lost / dup / misdelivered", f"{a.lost:,} / {a.duplicates:,} / {a.misdelivered:,}"
         + ("  (exact)" if a.exact else "  << NOT EXACT")),
        ("unacked delivered", f"{a.unacked_delivered:,}"),
        ("disconnects", str(r.disconnects)),
    ]
    return rows


def result_rows(result: Result) -> list[Row]:
    if isinstance(result, FanoutResult):
        return _fanout_rows(result)
    if isinstance(result, IdleResult):
        return _idle_rows(result)
    if isinstance(result, StormResult):
        return _storm_rows(result)
    if isinstance(result, RoomsResult):
        return _rooms_rows(result)
    return _resume_rows(result)


def render(record: RunRecord) -> str:
    """The table printed after a run."""
    mode = getattr(record.result, "mode", "")
    redis = getattr(getattr(record.options, "common", None), "redis_mode", "single")
    where = record.target if redis == "single" else f"{record.target}, Redis {redis}"
    title = f"chat-bench {record.scenario}{' ' + mode if mode else ''}  " \
            f"({where}, {len(record.gateways)} gateway(s), {record.loop})"
    return format_table(title, [*result_rows(record.result), *cpu_rows(record.cpu)])


class Progress:
    """A one-line progress bar, redrawn at most ``hz`` times a second."""

    def __init__(self, stream: TextIO, enabled: bool, width: int = 28, hz: float = 5.0) -> None:
        self._stream = stream
        self._enabled = enabled and stream.isatty()
        self._width = width
        self._interval = 1.0 / hz
        self._last = 0.0
        self._shown = False

    @staticmethod
    def bar(fraction: float, width: int) -> str:
        filled = round(min(max(fraction, 0.0), 1.0) * width)
        return "[" + "#" * filled + "." * (width - filled) + "]"

    def update(self, label: str, fraction: float, detail: str = "", force: bool = False) -> None:
        if not self._enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < self._interval:
            return
        self._last = now
        self._stream.write(f"\r{label} {self.bar(fraction, self._width)} "
                           f"{fraction:4.0%} {detail}\x1b[K")
        self._stream.flush()
        self._shown = True

    def done(self) -> None:
        if self._shown:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
            self._shown = False
