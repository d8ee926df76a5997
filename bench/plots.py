"""PNG plots of a session's runs, drawn with matplotlib's object API (no pyplot state).

- ``fanout-latency.png``: latency percentiles of every rate-mode run,
  one group of bars per run, log scale, with the issue's p99/p99.9 targets.
- ``fanout-deliveries.png``: deliveries per second against receivers for
  saturate-mode runs (a sweep such as ``--receivers 50,100,200``).
- ``idle-memory.png``: KiB per idle connection against connections.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, FuncFormatter

from bench.results import FanoutResult, IdleResult, RunRecord

P99_TARGET_MS = 3.0
P999_TARGET_MS = 6.0
DELIVERIES_TARGET = 1_200_000
IDLE_KIB_TARGET = 24.0


def latency_plot(results: Sequence[FanoutResult], path: Path) -> bool:
    runs = [r for r in results if r.mode == "rate" and r.latency is not None]
    if not runs:
        return False
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    labels = [label for label, _ in runs[0].latency.by_label()] if runs[0].latency else []
    width = 0.8 / len(runs)
    for i, r in enumerate(runs):
        assert r.latency is not None
        values = [v for _, v in r.latency.by_label()]
        xs = [x + i * width for x in range(len(labels))]
        bars = ax.bar(xs, values, width, label=f"R={r.receivers}, {r.rate_target:g} msg/s "
                      f"({r.deliveries_per_s:,.0f} deliveries/s)")
        ax.bar_label(bars, labels=[f"{v:.3g}" for v in values], fontsize="x-small", padding=2)
    ax.set_xticks([x + width * (len(runs) - 1) / 2 for x in range(len(labels))], labels)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.tick_params(axis="y", which="minor", labelsize="x-small")
    ax.set_ylabel("send to receipt (ms)")
    ax.axhline(P99_TARGET_MS, color="tab:red", linestyle="--", linewidth=1, label="p99 target")
    ax.axhline(P999_TARGET_MS, color="tab:purple", linestyle=":", linewidth=1,
               label="p99.9 target")
    ax.set_title("End-to-end latency (fanout, rate mode)")
    ax.legend(fontsize="small")
    fig.savefig(path, dpi=110)
    return True


def deliveries_plot(results: Sequence[FanoutResult], path: Path) -> bool:
    runs = sorted((r for r in results if r.mode == "saturate"), key=lambda r: r.receivers)
    if not runs:
        return False
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    xs = [r.receivers for r in runs]
    ys = [r.deliveries_per_s for r in runs]
    ax.plot(xs, ys, marker="o", label="measured (zero loss unless marked)")
    for x, y in zip(xs, ys, strict=True):
        ax.annotate(f"{y / 1000:,.0f}k", (x, y), textcoords="offset points", xytext=(0, 6),
                    ha="center", fontsize="small")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v / 1000:,.0f}k"))
    for r in runs:
        if r.lost:
            ax.annotate(f"lost {r.lost:,}", (r.receivers, r.deliveries_per_s),
                        textcoords="offset points", xytext=(4, -14), fontsize="small",
                        color="tab:red")
    ax.axhline(DELIVERIES_TARGET, color="tab:red", linestyle="--", linewidth=1,
               label="target (R=200)")
    ax.set_xlabel("receivers in the room")
    ax.set_ylabel("deliveries per second")
    ax.set_ylim(bottom=0)
    ax.set_title(f"Fan-out saturation ({runs[0].senders} senders)")
    ax.legend(fontsize="small")
    fig.savefig(path, dpi=110)
    return True


def idle_plot(results: Sequence[IdleResult], path: Path) -> bool:
    runs = sorted((r for r in results if r.per_connection_kib_max is not None),
                  key=lambda r: r.connections)
    if not runs:
        return False
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    xs = [r.connections for r in runs]
    ys = [r.per_connection_kib_max or 0.0 for r in runs]
    ax.plot(xs, ys, marker="o", label="measured (worst gateway)")
    for x, y in zip(xs, ys, strict=True):
        ax.annotate(f"{y:.1f}", (x, y), textcoords="offset points", xytext=(0, 6),
                    ha="center", fontsize="small")
    ax.axhline(IDLE_KIB_TARGET, color="tab:red", linestyle="--", linewidth=1, label="target")
    ax.set_xlabel("idle logged-in connections")
    ax.set_ylabel("gateway RSS per connection (KiB)")
    ax.set_ylim(0, max([*ys, IDLE_KIB_TARGET]) * 1.2)
    ax.set_title("Memory per idle connection")
    ax.legend(fontsize="small")
    fig.savefig(path, dpi=110)
    return True


def write_plots(records: Sequence[RunRecord], directory: Path) -> list[Path]:
    """Every plot the session's records support; the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    fanout = [r.result for r in records if isinstance(r.result, FanoutResult)]
    idle = [r.result for r in records if isinstance(r.result, IdleResult)]
    candidates = (
        (directory / "fanout-latency.png", latency_plot(fanout, directory / "fanout-latency.png")),
        (directory / "fanout-deliveries.png",
         deliveries_plot(fanout, directory / "fanout-deliveries.png")),
        (directory / "idle-memory.png", idle_plot(idle, directory / "idle-memory.png")),
    )
    return [path for path, drawn in candidates if drawn]
