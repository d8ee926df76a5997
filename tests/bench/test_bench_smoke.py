"""chat-bench end to end: a local Redis and two real gateways, a short saturate run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_fanout_saturate_on_a_local_cluster_loses_nothing(tmp_path: Path) -> None:
    """A saturate run appends one JSON line with every field, and zero loss."""
    results = tmp_path / "results.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "fanout", "--local", "2", "--receivers", "5",
         "--senders", "2", "--duration", "2", "--mode", "saturate", "--no-progress",
         "--results", str(results), "--plots", str(tmp_path / "plots")],
        cwd=REPO, capture_output=True, text=True, timeout=80,
    )
    assert proc.returncode == 0, proc.stderr
    assert "deliveries/s" in proc.stdout

    lines = results.read_bytes().splitlines()
    assert len(lines) == 1
    run = orjson.loads(lines[0])
    assert run["scenario"] == "fanout" and run["target"] == "local"
    assert len(run["gateways"]) == 2
    r = run["result"]
    for field in ("sent", "acked", "expected", "received", "lost", "deliveries_per_s",
                  "messages_per_s", "drain_s", "errors", "disconnects"):
        assert field in r, field
    assert r["mode"] == "saturate" and r["receivers"] == 5 and r["senders"] == 2
    assert r["acked"] > 0 and r["errors"] == 0
    assert r["expected"] == r["acked"] * 5
    assert r["lost"] == 0 and r["received"] == r["expected"]
    assert r["deliveries_per_s"] > 0
    assert run["cpu"]["bench_util"] > 0
    cost = r["cost"]
    assert cost["messages"] == r["acked"] and cost["gateways_measured"] == 2
    assert cost["gateway"]["us"] > 0 and cost["redis"]["us"] > 0
    assert "gateway CPU / message" in proc.stdout and "Redis CPU / message" in proc.stdout
    assert {name for name, _ in run["cpu"]["procs"]} >= {"gw1", "gw2"}
    assert run["machine"]["cpus"] >= 1
    assert (tmp_path / "plots" / "fanout-deliveries.png").stat().st_size > 0
