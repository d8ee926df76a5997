"""chat-bench rooms end to end, tiny: exact delivery, CPU per message, every field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from deploy.local_cluster import LocalCluster

REPO = Path(__file__).resolve().parents[2]

STEP_FIELDS = ("rate_target", "sent", "acked", "errors", "messages_per_s", "deliveries",
               "latency", "lag_p99_ms", "drained", "met", "bench_util", "cost")


def run_bench(args: list[str], results: Path) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "rooms", *args, "--no-progress",
         "--results", str(results)],
        cwd=REPO, capture_output=True, text=True, timeout=80,
    )
    assert proc.returncode == 0, proc.stderr
    assert "lost / dup / misdelivered" in proc.stdout
    lines = results.read_bytes().splitlines()
    assert len(lines) == 1
    run: dict[str, object] = orjson.loads(lines[0])
    return run


def check_exact(result: dict[str, object]) -> None:
    a = result["accounting"]
    assert isinstance(a, dict)
    assert a["acked"] > 0
    assert a["lost"] == 0 and a["duplicates"] == 0 and a["misdelivered"] == 0
    assert a["delivered"] == a["expected"] > a["acked"]
    assert result["disconnects"] == 0


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_rooms_step_on_a_local_gateway_is_exact_and_reports_cpu_per_message(
        tmp_path: Path) -> None:
    run = run_bench(["--local", "1", "--users", "30", "--room-size", "3-5",
                     "--mode", "step", "--rate", "50", "--factor", "2", "--duration", "1",
                     "--warmup", "0.2", "--p99-ms", "1000", "--budget", "4"],
                    tmp_path / "r.jsonl")
    assert run["scenario"] == "rooms" and run["target"] == "local"
    r = run["result"]
    assert isinstance(r, dict)
    assert r["users"] == 30 and r["mode"] == "step"
    assert r["mean_room_size"] >= 3 and r["memberships"] >= 60
    steps = r["steps"]
    # Every step passes (p99 within 1 s), so the rate doubles until the budget is spent.
    assert [s["rate_target"] for s in steps] == [50.0, 100.0, 200.0][: len(steps)]
    assert 1 <= len(steps) <= 3 and r["elapsed_s"] < 60
    for step in steps:
        for field in STEP_FIELDS:
            assert field in step, field
        assert step["drained"] and step["errors"] == 0
        cost = step["cost"]
        assert cost["gateways_measured"] == 1
        assert cost["gateway"]["us"] > 0 and cost["redis"]["us"] > 0
    best = r["sustained"]
    assert best is not None and best["met"] and best["latency"]["p99_ms"] <= 1000
    check_exact(r)


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_rooms_against_given_gateways_finds_their_pid_and_asks_redis(tmp_path: Path) -> None:
    with LocalCluster(1, base_port=0, base_health_port=0, data_dir=tmp_path / "cluster",
                      log_level="WARNING",
                      gateway_args=["--rate-per-s", "10000", "--burst", "10000"]) as cluster:
        run = run_bench(["--gateways", str(cluster.gateway_addresses[0]),
                         "--redis-url", cluster.redis_url,
                         "--users", "20", "--room-size", "3-5", "--mode", "rate",
                         "--rate", "100", "--duration", "1", "--warmup", "0.2"],
                        tmp_path / "r.jsonl")
    assert run["target"] == "remote"
    r = run["result"]
    assert isinstance(r, dict)
    (step,) = r["steps"]
    assert step["cost"]["gateways_measured"] == 1 and step["cost"]["gateway"]["us"] > 0
    assert step["cost"]["redis"]["us"] > 0
    check_exact(r)
