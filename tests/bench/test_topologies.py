"""chat-bench on the three Redis topologies: ``--local N --redis single|sentinel|cluster``.

The bench starts the topology (``LocalCluster``'s ``redis_mode``), reports
it in the run's title and record, watches the CPU of every Redis data node,
and sums their ``INFO cpu`` for Redis CPU per message (``RedisNodes``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from bench.cost import RedisNodes, redis_client, redis_cpu
from bench.options import FanoutOptions, parse_args
from deploy.local_cluster import LocalCluster
from deploy.redis_cluster import LocalRedisCluster
from deploy.sentinel import LocalSentinel
from tests.conftest import require_program
from tests.support.rcluster import CLUSTER_GATEWAY
from tests.support.redis_server import RedisEndpoint

REPO = Path(__file__).resolve().parents[2]


def test_redis_chooses_the_topology_of_a_local_run() -> None:
    opts = parse_args(["fanout", "--local", "2", "--redis", "sentinel"])
    assert isinstance(opts, FanoutOptions)
    assert opts.common.redis_mode == "sentinel"
    assert parse_args(["fanout", "--local", "1"]).common.redis_mode == "single"


@pytest.mark.parametrize("argv", [
    ["fanout", "--gateways", "127.0.0.1:5050", "--redis", "cluster"],
    ["fanout", "--local", "2", "--redis", "galaxy"],
])
def test_a_topology_without_a_local_run_or_unknown_is_refused(
        argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    assert "--redis" in capsys.readouterr().err


def test_one_redis_is_one_node(shared_redis: RedisEndpoint) -> None:
    nodes = redis_client(shared_redis.url)
    assert nodes is not None
    try:
        assert len(nodes.clients) == 1
        cpu = redis_cpu(nodes)
        assert cpu is not None and cpu.total_s > 0
    finally:
        nodes.close()


def test_a_cluster_url_is_every_master_and_replica(
        shared_redis_cluster: LocalRedisCluster) -> None:
    nodes = RedisNodes.from_url(shared_redis_cluster.url)
    try:
        ports = sorted(c.connection_pool.connection_kwargs["port"] for c in nodes.clients)
        assert ports == sorted(shared_redis_cluster.ports)
        total = redis_cpu(nodes)
        assert total is not None
        single = redis_cpu(nodes.clients[0])
        assert single is not None and total.total_s > single.total_s
    finally:
        nodes.close()


def test_nodes_that_cannot_be_found_are_unknown_not_fatal() -> None:
    assert redis_client("redis+cluster://127.0.0.1:1") is None
    assert redis_client("redis+sentinel://127.0.0.1:1/chat") is None
    assert redis_client("bogus://x") is None


@pytest.mark.slow
def test_a_sentinel_url_is_the_primary_and_its_replicas(tmp_path: Path) -> None:
    require_program("redis-server", "redis-server")
    with LocalSentinel(tmp_path / "sentinel") as sentinel:
        nodes = RedisNodes.from_url(sentinel.url)
        try:
            ports = sorted(c.connection_pool.connection_kwargs["port"] for c in nodes.clients)
            assert ports == sorted(sentinel.redis_ports)
        finally:
            nodes.close()


def test_a_local_single_redis_is_watched_as_redis(tmp_path: Path) -> None:
    require_program("redis-server", "redis-server")
    with LocalCluster(1, base_port=0, base_health_port=0, data_dir=tmp_path,
                      log_level="WARNING") as cluster:
        pids = cluster.redis_pids()
        assert list(pids) == ["redis"]
        assert set(cluster.pids) == {pids["redis"], cluster.gateway_pid(0)}


def run_bench(tmp_path: Path, redis_mode: str) -> tuple[subprocess.CompletedProcess[str],
                                                        dict[str, object]]:
    results = tmp_path / "results.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "fanout", "--local", "2", "--redis", redis_mode,
         "--receivers", "5", "--senders", "2", "--duration", "2", "--mode", "saturate",
         "--no-progress", "--results", str(results), "--cluster-dir", str(tmp_path / "c")],
        cwd=REPO, capture_output=True, text=True, timeout=100, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (line,) = results.read_bytes().splitlines()
    run: dict[str, object] = orjson.loads(line)
    return proc, run


def check_run(proc: subprocess.CompletedProcess[str], run: dict[str, object], redis_mode: str,
              nodes: int) -> None:
    assert f"Redis {redis_mode}" in proc.stdout
    assert run["options"]["common"]["redis_mode"] == redis_mode  # type: ignore[index]
    r = run["result"]
    assert r["acked"] > 0 and r["errors"] == 0  # type: ignore[index]
    assert r["lost"] == 0 and r["received"] == r["expected"]  # type: ignore[index]
    assert r["cost"]["redis"]["us"] > 0, "Redis CPU summed over the nodes"  # type: ignore[index]
    watched = {name for name, _ in run["cpu"]["procs"]}  # type: ignore[index]
    assert len({n for n in watched if n.startswith("redis:")}) == nodes, watched


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_fanout_on_sentinel_loses_nothing_and_reports_every_node(tmp_path: Path) -> None:
    require_program("redis-server", "redis-server")
    proc, run = run_bench(tmp_path, "sentinel")
    check_run(proc, run, "sentinel", nodes=3)


@CLUSTER_GATEWAY
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_fanout_on_redis_cluster_loses_nothing_and_reports_every_node(tmp_path: Path) -> None:
    require_program("redis-cli", "redis-tools")
    proc, run = run_bench(tmp_path, "cluster")
    check_run(proc, run, "cluster", nodes=6)
