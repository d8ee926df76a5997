"""What one run measured, as frozen records, and their JSON lines.

One ``RunRecord`` per run (each point of a sweep is a run) is appended as
one JSON line to ``--results``, so runs from different days and machines
can be compared with ``jq`` or a notebook.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import orjson

from bench.cost import MessageCost
from bench.ledger import Accounting
from bench.procstat import CpuUse, Machine
from bench.stats import LatencySummary


@dataclass(frozen=True, slots=True)
class FanoutResult:
    mode: str
    receivers: int
    senders: int
    slow: int
    send_s: float
    """How long the senders sent."""
    sent: int
    acked: int
    errors: int
    expected: int
    """acked x receivers."""
    received: int
    """Messages received, summed over receivers."""
    lost: int
    extra: int
    """Messages received beyond the expected (duplicates; control frames are not counted)."""
    deliveries_per_s: float
    """received / (last receipt - first send)."""
    messages_per_s: float
    """acked / send_s."""
    drain_s: float
    disconnects: int
    slow_dropped: int
    rate_target: float
    send_lag_ms_max: float
    """Rate mode: how late the bench's pacing fell behind its schedule."""
    latency: LatencySummary | None
    cost: MessageCost | None = None
    """Gateway and Redis CPU per acked message, from the first send to the end of the drain."""


@dataclass(frozen=True, slots=True)
class GatewayMemory:
    gateway: str
    connections: int
    rss_before_kib: int
    rss_after_kib: int
    per_connection_kib: float


@dataclass(frozen=True, slots=True)
class IdleResult:
    connections: int
    room_size: int
    logged_in: int
    login_failures: int
    first_failure: str | None
    login_s: float
    logins_per_s: float
    answered_first: int
    """Connections that answered the ping right after logging in."""
    answered_after_hold: int
    hold_s: float
    ping_spread_s: float
    """Each round's pings were spread evenly over this long (0: all at once)."""
    ping_latency: LatencySummary | None
    memory: tuple[GatewayMemory, ...]
    per_connection_kib_max: float | None


@dataclass(frozen=True, slots=True)
class StormResult:
    cap: int
    logged_in: int
    failed: int
    first_failure: str | None
    elapsed_s: float
    logins_per_s: float
    peak_logins_per_s: float
    """Best 250 ms window, per second."""
    login_latency: LatencySummary | None
    background_rate: float
    baseline_latency: LatencySummary | None
    storm_latency: LatencySummary | None
    p99_ratio: float | None
    """Background p99 during the storm / before it."""


@dataclass(frozen=True, slots=True)
class ResumeResult:
    clients: int
    resumed: int
    failed: int
    first_failure: str | None
    resume_latency: LatencySummary | None
    """From the kill to the resume history on the new gateway."""
    welcome_latency: LatencySummary | None
    replayed_total: int
    replayed_max: int
    gaps: int
    duplicates: int
    missing_at_end: int
    sent: int
    acked: int


@dataclass(frozen=True, slots=True)
class RoomsStep:
    """One rate of the many-rooms scenario: sends at Poisson times, then a drain."""

    rate_target: float
    sent: int
    acked: int
    errors: int
    send_s: float
    """From the step's start to its last send."""
    messages_per_s: float
    """acked / the longer of send_s and the step's duration."""
    deliveries: int
    """Numbered messages received in the step, summed over users."""
    latency: LatencySummary | None
    """Send to every delivery (the sender's own copy included), after the warm-up."""
    lag_p99_ms: float
    lag_max_ms: float
    """How late the bench's sends were against the schedule."""
    drained: bool
    """Every send answered and every owed delivery arrived before the drain gave up."""
    met: bool
    """p99 within the target, nothing refused, drained, and the bench kept its schedule."""
    bench_util: float
    cost: MessageCost


@dataclass(frozen=True, slots=True)
class RoomsResult:
    mode: str
    users: int
    rooms: int
    memberships: int
    mean_room_size: float
    p99_target_ms: float
    steps: tuple[RoomsStep, ...]
    sustained: RoomsStep | None
    """The step with the highest accepted rate that met the target; None if none did."""
    accounting: Accounting
    """Over the whole run: every acked message to every member of its room exactly once."""
    disconnects: int
    login_s: float
    elapsed_s: float


Result = FanoutResult | IdleResult | StormResult | ResumeResult | RoomsResult


@dataclass(frozen=True, slots=True)
class RunRecord:
    scenario: str
    started_utc: str
    target: str
    """'local' (started by the bench) or 'remote'."""
    gateways: tuple[str, ...]
    loop: str
    options: object
    """The scenario's option object, as parsed."""
    result: Result
    cpu: CpuUse
    machine: Machine


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _default(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def to_json_line(record: RunRecord) -> bytes:
    """One JSON object and a newline."""
    return orjson.dumps(record, default=_default) + b"\n"


def append_record(path: Path, record: RunRecord) -> None:
    """Append one line; whole lines only, so concurrent readers never see half a run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as out:
        out.write(to_json_line(record))
