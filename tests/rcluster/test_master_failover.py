"""SIGKILL of the master owning a busy room, under load: nothing acknowledged is lost.

Two gateway processes on a Redis Cluster (3 masters with two replicas each:
the promoted master must still have a replica for ``WAIT 1``), so every
send is acknowledged only once a replica has it (the gateways'
``--redis-min-replicas`` defaults to 1 with Cluster: a ``WAIT`` per master
part of each publisher batch). Six ``ChatClient``s chat in two rooms on
different masters every 0.1-0.2 s; then the busy room's master gets SIGKILL
and its replica is promoted (about 3 s later: ``cluster-node-timeout`` 2 s).
What must hold:

- no acknowledged message is lost, duplicated or reordered (the chaos judge,
  against what the promoted replica stored), and no room changes epoch;
- every send ends acknowledged exactly once (held ``unavailable`` sends are
  resent with their ref; a resend after a write the replica took meets its
  dedup key and gets the first id);
- the gateways follow the promotion (commands, publisher and sharded
  subscriptions) and the busy room works again within 10 s of it;
- the calm room, on a master that did not fail, keeps working throughout:
  sends made between the kill and the promotion are acknowledged before the
  promotion (``cluster-require-full-coverage no``; per-master links).

The gateways' lease is 8 s, longer than the promotion takes, as in
production (15 s against a 5 s node timeout in deploy/compose.cluster.yml):
this test is about the data, not the outage grace.

With ``CHAT_RCLUSTER_BACKEND=single`` the same test runs on Sentinel (the
primary killed, a replica promoted), without the calm-room check (one
primary holds both rooms): a check of the test's own logic.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from client import events as ev
from deploy.redis_cluster import LocalRedisCluster
from deploy.sentinel import LocalSentinel
from gateway.redis import keys
from tests.chaos.harness import (
    NOTES_KEY,
    SUMMARY_KEY,
    Crowd,
    acked_between,
    assert_every_send_acked,
    drain,
    sent_count,
    spread_crowd,
    verdict_of,
)
from tests.conftest import require_program, require_redis_cluster
from tests.support.rcluster import CLUSTER_GATEWAY, ON_CLUSTER, gateway_processes
from tests.support.waiting import wait_for

pytestmark = [CLUSTER_GATEWAY, pytest.mark.slow, pytest.mark.timeout(150)]

GATEWAY_FLAGS = ("--lease-ms", "8000", "--rate-per-s", "1000", "--burst", "1000")
"""A lease longer than a promotion takes, and rate limits out of the way: the clients
resend every send held during the failover at once, and a limiter's refusal is not
what this test is about."""


@dataclass(slots=True)
class Topology:
    """A cluster, or (backend single) a Sentinel topology standing in for it."""

    url: str
    cluster: LocalRedisCluster | None = None
    sentinel: LocalSentinel | None = None

    def owner(self, key: str) -> int:
        if self.cluster is not None:
            return self.cluster.master_of(key)
        assert self.sentinel is not None
        return self.sentinel.primary_port()

    def client(self, port: int) -> redis.Redis:
        if self.cluster is not None:
            return self.cluster.client(port)
        assert self.sentinel is not None
        return self.sentinel.client(port)

    def rooms(self) -> tuple[str, str]:
        """A busy room and a calm one, on different masters."""
        if self.cluster is None:
            return ("busy", "calm")
        busy = next(f"busy{i}" for i in range(100)
                    if self.cluster.master_of(keys.room_tag(f"busy{i}")) != self.cluster.master_of(
                        keys.room_tag("calm")))
        return (busy, "calm")


@contextmanager
def topology(tmp_path: Path) -> Iterator[Topology]:
    if ON_CLUSTER:
        require_redis_cluster()
        # two replicas a master: the promoted one still has a replica, so WAIT 1 can be met
        with LocalRedisCluster(tmp_path / "redis-cluster", replicas_per_master=2) as cluster:
            yield Topology(cluster.url, cluster=cluster)
        return
    require_program("redis-server", "redis-server")
    with LocalSentinel(tmp_path / "sentinel") as sentinel:
        yield Topology(sentinel.url, sentinel=sentinel)


def outcome_counts(crowd: Crowd, since: float) -> dict[tuple[str, str], int]:
    """(room, outcome) -> sends made since ``since`` (crowd time): what a failure shows."""
    counts: Counter[tuple[str, str]] = Counter()
    for sent in crowd.sent:
        if sent.at < since:
            continue
        found = crowd.logs[sent.sender].outcomes().get(sent.ref)
        if not found:
            counts[(sent.room, "no outcome yet")] += 1
        elif isinstance(found[0], ev.Acked):
            counts[(sent.room, "acked")] += 1
        else:
            counts[(sent.room, f"failed {found[0].error.code}")] += 1
    return dict(counts)


def test_sigkill_of_a_busy_rooms_master_loses_no_acknowledged_message(
        tmp_path: Path, record_property: Callable[[str, object], None],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="client")
    with topology(tmp_path) as topo, gateway_processes(topo.url, 2, *GATEWAY_FLAGS) as procs:
        busy, calm = rooms = topo.rooms()
        crowd = spread_crowd([f"f{i}" for i in range(6)], rooms, procs)
        try:
            crowd.connect_all()
            crowd.start_chatting()
            wait_for(sent_count(crowd, 60), 20, what="some chat before the failover")
            old = topo.owner(keys.room_tag(busy))
            epochs = {}
            for room in rooms:
                with topo.client(topo.owner(keys.room_tag(room))) as node:
                    epochs[room] = node.get(keys.room_epoch(room))

            killed_at = crowd.elapsed()
            killed = time.monotonic()
            if topo.cluster is not None:
                new = topo.cluster.kill_master(old)
            else:
                assert topo.sentinel is not None
                topo.sentinel.kill(old)
                wait_for(lambda: topo.owner(keys.room_tag(busy)) != old, 30, interval=0.1,
                         what="a replica promoted")
                new = topo.owner(keys.room_tag(busy))
            promoted = time.monotonic()
            promoted_at = crowd.elapsed()
            calm_during = acked_between(crowd, killed_at + 0.5, promoted_at, room=calm)
            try:
                wait_for(lambda: acked_between(crowd, promoted_at, room=busy), 20, interval=0.05,
                         what="a send to the busy room acknowledged after the promotion")
            except AssertionError as exc:
                raise AssertionError("\n".join([
                    str(exc), f"outcomes of sends made since the promotion: "
                    f"{outcome_counts(crowd, promoted_at)}",
                    *(f"--- {proc.gateway_id} log:\n{proc.stderr_tail(3000)}"
                      for proc in procs)])) from None
            working = time.monotonic()
            before = len(crowd.sent)
            wait_for(sent_count(crowd, before + 80), 30, what="chat going on after the failover")
            crowd.stop_chatting()

            stored, after = drain(crowd, lambda room: topo.client(topo.owner(keys.room_tag(room))))
            assert after == epochs
            verdict, problems = verdict_of(crowd, stored, procs, caplog.records)
        finally:
            crowd.close_all()

    summary = verdict.summary("master failover")
    record_property(SUMMARY_KEY, summary)
    record_property(NOTES_KEY, [
        f"master {old} of {busy!r} killed at {killed_at:.1f}s; replica {new} promoted "
        f"{promoted - killed:.1f}s later; first busy-room ack after it "
        f"{working - promoted:.2f}s after it; calm room acked meanwhile: {calm_during}",
        f"sends failed: {verdict.failed}"])
    assert_every_send_acked(verdict, summary, problems)
    assert working - promoted < 10, "the busy room did not work again within 10 s"
    if ON_CLUSTER:
        assert calm_during, (f"no send to {calm!r} (on a master that did not fail) was "
                             "acknowledged between the kill and the promotion")
