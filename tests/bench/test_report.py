"""Terminal table, progress bar and JSON lines of a run."""

from __future__ import annotations

import io
from pathlib import Path

import orjson

from bench.options import parse_args
from bench.procstat import CpuUse, Machine
from bench.report import Progress, format_table, human, render
from bench.results import FanoutResult, IdleResult, RunRecord, append_record, to_json_line
from bench.stats import LatencySummary


def fanout_result(mode: str = "rate") -> FanoutResult:
    return FanoutResult(
        mode=mode, receivers=200, senders=10, slow=0, send_s=10.0, sent=5000, acked=5000,
        errors=0, expected=1_000_000, received=1_000_000, lost=0, extra=0,
        deliveries_per_s=100_000.0, messages_per_s=500.0, drain_s=0.1, disconnects=0,
        slow_dropped=0, rate_target=500.0, send_lag_ms_max=0.8,
        latency=LatencySummary.of_ns([1_000_000, 2_000_000, 3_000_000]),
    )


def record(result: FanoutResult | IdleResult, cpu_util: float = 0.5) -> RunRecord:
    return RunRecord(
        scenario="fanout", started_utc="2024-01-01T00:00:00+00:00", target="local",
        gateways=("127.0.0.1:1", "127.0.0.1:2"), loop="uvloop",
        options=parse_args(["fanout", "--local", "2", "--results", "x.jsonl"]),
        result=result, cpu=CpuUse(10.0, 10.0 * cpu_util, cpu_util, (("gw1", 0.7),), 1.5, 0.3),
        machine=Machine("cpu", 2, 1000, 900, "6.1", "3.11.7", 0.5),
    )


def test_human_numbers() -> None:
    assert human(1_234_567) == "1.23 M"
    assert human(1_500) == "1.5 k"
    assert human(12.34) == "12.3"
    assert human(2.5e9) == "2.5 G"


def test_table_aligns_values_in_one_column() -> None:
    text = format_table("title", [("a", "1"), ("longer key", "2")])
    lines = text.splitlines()
    assert lines[0] == "title"
    assert set(lines[1]) == {"-"}
    assert lines[2].index("1") == lines[3].index("2") == len("longer key") + 2


def test_render_shows_rate_latency_and_cpu() -> None:
    text = render(record(fanout_result()))
    assert "chat-bench fanout rate" in text
    assert "p99 / p99.9" in text and "3.000 ms" in text
    assert "deliveries/s" in text and "100 k" in text
    assert "bench CPU" in text and "gw1 70%" in text
    assert "1.50 of" in text and "0.30 by other processes" in text
    assert "saturated" not in text


def test_render_flags_a_saturated_bench() -> None:
    assert "the bench saturated" in render(record(fanout_result("saturate"), cpu_util=0.97))


def test_render_idle_without_memory_says_so() -> None:
    idle = IdleResult(
        connections=10, room_size=0, logged_in=10, login_failures=0, first_failure=None,
        login_s=1.0, logins_per_s=10.0, answered_first=10, answered_after_hold=10, hold_s=1.0,
        ping_spread_s=0.0,
        ping_latency=None, memory=(), per_connection_kib_max=None,
    )
    text = render(record(idle))
    assert "not measured (remote gateways)" in text
    assert "every connection at once" in text


def test_json_line_has_the_documented_fields(tmp_path: Path) -> None:
    line = to_json_line(record(fanout_result()))
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    data = orjson.loads(line)
    assert data["scenario"] == "fanout"
    assert data["result"]["lost"] == 0
    assert data["result"]["latency"]["p99_ms"] == 3.0
    assert data["cpu"]["bench_util"] == 0.5
    assert data["options"]["common"]["results"] == "x.jsonl"
    assert data["machine"]["cpus"] == 2
    out = tmp_path / "sub" / "r.jsonl"
    append_record(out, record(fanout_result()))
    append_record(out, record(fanout_result()))
    assert len(out.read_bytes().splitlines()) == 2


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_draws_on_a_tty_and_clears() -> None:
    stream = FakeTty()
    bar = Progress(stream, enabled=True, width=10)
    bar.update("run", 0.5, "detail", force=True)
    assert "[#####.....]" in stream.getvalue() and "detail" in stream.getvalue()
    bar.done()
    assert stream.getvalue().endswith("\r\x1b[K")


def test_progress_is_silent_when_not_a_tty() -> None:
    stream = io.StringIO()
    bar = Progress(stream, enabled=True)
    bar.update("run", 0.5, force=True)
    bar.done()
    assert stream.getvalue() == ""


def test_bar_clamps() -> None:
    assert Progress.bar(2.0, 4) == "[####]"
    assert Progress.bar(-1.0, 4) == "[....]"
