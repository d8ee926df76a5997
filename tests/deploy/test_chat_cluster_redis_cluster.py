"""chat-cluster --redis cluster: a Redis Cluster (3 masters, 3 replicas) under the gateways.

The Redis part is ``deploy.redis_cluster.LocalRedisCluster``; what is tested
here is that chat-cluster starts it, hands its ``redis+cluster://`` URL to
the gateways and prints it, clients chat across gateways over it, and
nothing it started outlives it, even when a gateway fails to start.
"""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import pytest

from deploy.cluster import build_parser
from deploy.local_cluster import ClusterError, LocalCluster
from tests.conftest import require_redis_cluster
from tests.deploy.test_chat_cluster import alive, redis_url_printed
from tests.support.rcluster import CLUSTER_GATEWAY
from tests.support.wire import WireClient

pytestmark = pytest.mark.slow


def test_the_parser_takes_redis_cluster() -> None:
    assert build_parser().parse_args(["--redis", "cluster"]).redis_mode == "cluster"


def test_an_unknown_topology_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match="single, sentinel, cluster"):
        LocalCluster(1, data_dir=tmp_path, redis_mode="galaxy")


def test_a_gateway_that_fails_to_start_leaves_no_redis_node_behind(tmp_path: Path) -> None:
    require_redis_cluster()
    cluster = LocalCluster(1, base_port=0, base_health_port=0, data_dir=tmp_path,
                           log_level="WARNING", redis_mode="cluster",
                           gateway_args=["--no-such-option"], startup_timeout=30)
    seen: list[int] = []
    original = cluster._spawn_gateway

    def spawn(slot):  # type: ignore[no-untyped-def]
        seen.extend(cluster.redis_cluster.pids)
        assert cluster.redis_url.startswith("redis+cluster://")
        return original(slot)

    cluster._spawn_gateway = spawn  # type: ignore[method-assign]
    with pytest.raises(ClusterError, match="exited with code 2"):
        cluster.start()
    assert len(seen) == 6, "the six Redis nodes were not running when the gateway started"
    assert not any(alive(pid) for pid in seen)
    assert cluster.redis_cluster is None


@CLUSTER_GATEWAY
def test_chat_cluster_redis_cluster_prints_the_url_and_chats_over_it(tmp_path: Path) -> None:
    require_redis_cluster()
    done, url = redis_url_printed(tmp_path, "cluster")
    assert url.startswith("redis+cluster://"), done.stdout
    assert len(url.removeprefix("redis+cluster://").split(",")) == 3
    masters = next(line for line in done.stdout.splitlines() if line.startswith("masters "))
    assert masters.count(",") == 4, masters  # 3 masters, 3 replicas
    with LocalCluster(2, base_port=0, base_health_port=0, data_dir=tmp_path / "again",
                      log_level="WARNING", redis_mode="cluster") as cluster:
        redis_cluster = cluster.redis_cluster
        rooms = {redis_cluster.master_of(f"{{room:r{i}}}"): f"r{i}" for i in range(30)}
        assert len(rooms) == 3
        first, second = cluster.gateway_addresses
        with closing(WireClient(first)) as alice, closing(WireClient(second)) as bob:
            for who, name in ((alice, "alice"), (bob, "bob")):
                who.hello(name, rooms=sorted(rooms.values()))
            for n, room in enumerate(sorted(rooms.values())):
                bob.send(type="send", room=room, text=f"across {room}", ref=f"r{n}")
                assert alice.recv_type("message", room=room)["text"] == f"across {room}"
        pids = cluster.pids
        assert len(pids) == 8
    assert not any(alive(pid) for pid in pids)
