"""What the Redis Cluster tests (tests/rcluster) share: the Redis under their gateways,
and the mark on tests that need the gateways to serve Redis Cluster (issue 11).

``CHAT_RCLUSTER_BACKEND`` picks that Redis: ``cluster`` (the default, and
the point: a ``LocalRedisCluster`` of 3 masters with a replica each) or
``single`` (one redis-server; a Sentinel topology where a test kills the
primary), which runs the same tests on a Redis the gateways already serve,
to check the tests' own logic. Assertions about slots, masters and sharded
pub/sub apply to ``cluster`` only.

``CLUSTER_GATEWAY`` is a strict xfail on the cluster backend: on a branch
where the gateway still refuses ``redis+cluster://`` URLs the tests fail as
expected; once it serves Redis Cluster they pass, pytest reports
XPASS(strict) as a failure, and the mark's ``condition`` becomes ``False``
(or the mark is removed from the tests) so every such test counts again.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from deploy.redis_cluster import LocalRedisCluster
from gateway.redis import keys
from tests.conftest import require_program, require_redis_cluster
from tests.support.gateways import GatewayProcess
from tests.support.redis_server import RedisServer

BACKEND = os.environ.get("CHAT_RCLUSTER_BACKEND", "cluster")
if BACKEND not in ("cluster", "single"):
    raise RuntimeError(f"CHAT_RCLUSTER_BACKEND={BACKEND!r}: cluster or single")
ON_CLUSTER = BACKEND == "cluster"

CLUSTER_GATEWAY = pytest.mark.xfail(
    condition=False, strict=True,
    reason="issue 11: the gateways do not serve Redis Cluster yet (slots + shards branches)")


@dataclass(slots=True)
class ChatRedis:
    """The Redis under an rcluster test's gateways: a cluster, or one redis-server."""

    url: str
    cluster: LocalRedisCluster | None = None
    server: RedisServer | None = None

    def node(self, key: str) -> redis.Redis:
        """A plain client of the node holding ``key`` (its master, on a cluster)."""
        if self.cluster is not None:
            return self.cluster.client(self.cluster.master_of(key))
        assert self.server is not None
        return self.server.client()

    def master_of(self, key: str) -> int:
        """The port of the master holding ``key`` (the one server's, on a single Redis)."""
        if self.cluster is not None:
            return self.cluster.master_of(key)
        assert self.server is not None
        return self.server.port

    def spread(self, prefix: str, n: int, *, user: bool = False) -> list[str]:
        """``n`` room names (or user names) starting with ``prefix`` whose keys live on
        ``n`` different masters (any ``n`` names on a single Redis)."""
        if self.cluster is None:
            return [f"{prefix}{i}" for i in range(n)]
        if n > self.cluster.masters_count:
            raise ValueError(f"only {self.cluster.masters_count} masters")
        found: dict[int, str] = {}
        i = 0
        while len(found) < n:
            name = f"{prefix}{i}"
            tag = keys.user(name) if user else keys.room_tag(name)
            found.setdefault(self.cluster.master_of(tag), name)
            i += 1
        return list(found.values())


@contextmanager
def chat_redis(tmp_path: Path) -> Iterator[ChatRedis]:
    """The backend ``CHAT_RCLUSTER_BACKEND`` names, started in ``tmp_path``; stopped after."""
    if ON_CLUSTER:
        require_redis_cluster()
        with LocalRedisCluster(tmp_path / "redis-cluster") as cluster:
            yield ChatRedis(cluster.url, cluster=cluster)
        return
    require_program("redis-server", "redis-server")
    server = RedisServer(persist=False, data_dir=str(tmp_path))
    try:
        server.start()
        yield ChatRedis(server.url, server=server)
    finally:
        server.close()


@contextmanager
def gateway_processes(url: str, count: int, *extra: str) -> Iterator[list[GatewayProcess]]:
    """``count`` ``python -m gateway`` processes (gw1, ...) on ``url``, killed after."""
    procs: list[GatewayProcess] = []
    try:
        for i in range(count):
            procs.append(GatewayProcess(url, f"gw{i + 1}", *extra))
        yield procs
    finally:
        for proc in procs:
            proc.close()


__all__ = ["BACKEND", "CLUSTER_GATEWAY", "ON_CLUSTER", "ChatRedis", "chat_redis",
           "gateway_processes"]
