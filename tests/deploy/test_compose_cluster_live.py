"""deploy/compose.cluster.yml for real: its six Redis nodes and one-shot init on podman.

Part of the live compose tier (``-m compose``, run by hand: see the README),
with the same engine, stand-in images and environment override as
test_compose_live.py. Only the Redis side is brought up (``up -d
redis-cluster-init`` and what it depends on): the cluster must be created by
the init service, hand out service names rather than container IPs, follow
its own redirections by name, and a second run of the init must create
nothing. Then the whole stack (gateways and HAProxy too) chats in rooms
spread over the masters, once the gateways serve Redis Cluster.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from typing import cast

import pytest

from client import events as ev
from tests.client.recorder import Recorder
from tests.deploy.test_compose_live import (
    Deployment,
    chat_client,
    deployed,
    haproxy_uses_every_gateway,
    texts,
)
from tests.support.compose import ROOT
from tests.support.podman import podman_service
from tests.support.rcluster import CLUSTER_GATEWAY
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.compose, pytest.mark.slow, pytest.mark.timeout(420)]

CLUSTER_OVERRIDE = ROOT / "deploy" / "compose.cluster.yml"
NODES = ("redis", "redis-node-2", "redis-node-3", "redis-node-4", "redis-node-5",
         "redis-node-6")


@pytest.fixture(scope="module")
def redis_side(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """The override's Redis nodes and init, up once in a project of its own; `down -v`
    at the end."""
    with podman_service(tmp_path_factory.mktemp("podman")) as engine, \
            deployed(engine, CLUSTER_OVERRIDE, project_prefix="chatcluster",
                     up=("redis-cluster-init",)) as dep:
        yield dep


def init_state(dep: Deployment) -> tuple[str, int | None]:
    """The init container's state and exit code (None while it runs)."""
    rows = [r for r in dep.services() if r["Service"] == "redis-cluster-init"]
    if not rows:
        return ("missing", None)
    row = rows[0]
    return (str(row["State"]), int(row["ExitCode"]) if row["State"] == "exited" else None)


def redis_cli(dep: Deployment, service: str, *args: str) -> str:
    (container,) = dep.containers(service)
    code, out = container.exec_run(["redis-cli", *args])
    text = cast(bytes, out).decode()
    assert code == 0, f"redis-cli {' '.join(args)} on {service}: {text}"
    return text


def test_the_init_creates_a_cluster_that_names_its_nodes_by_service(
        redis_side: Deployment) -> None:
    dep = redis_side
    dep.settle(lambda: init_state(dep)[0] == "exited", "the init service to finish")
    assert init_state(dep) == ("exited", 0), dep.explain()
    logs = dep.compose("logs", "--no-color", "redis-cluster-init", timeout=60).stdout
    assert "[OK] All 16384 slots covered" in logs and "cluster ok" in logs
    for node in NODES:
        info = redis_cli(dep, node, "cluster", "info")
        assert "cluster_state:ok" in info and "cluster_known_nodes:6" in info, (node, info)
    shards = redis_cli(dep, "redis", "cluster", "shards")
    for node in NODES:
        assert node in shards, f"{node} is not named in CLUSTER SHARDS:\n{shards}"
    slots = redis_cli(dep, "redis", "cluster", "slots")
    assert "redis-node-" in slots or "redis\n" in slots, slots
    # A redirection names a service, which the network resolves: -c follows it.
    for i in range(12):
        assert redis_cli(dep, "redis-node-4", "-c", "-h", "redis-node-4", "set",
                         f"{{room:r{i}}}:probe", "1").strip() == "OK"
    roles = [redis_cli(dep, node, "role").split()[0] for node in NODES]
    assert sorted(roles) == ["master"] * 3 + ["slave"] * 3, roles


def test_a_second_init_creates_nothing(redis_side: Deployment) -> None:
    dep = redis_side
    dep.settle(lambda: init_state(dep)[0] == "exited", "the init service to finish")
    before = redis_cli(dep, "redis", "cluster", "myid")
    again = dep.compose("run", "--rm", "--no-deps", "redis-cluster-init", timeout=300).stdout
    assert "nothing to create" in again and "cluster ok" in again, again
    assert "Performing hash slots allocation" not in again
    assert redis_cli(dep, "redis", "cluster", "myid") == before


def test_the_nodes_keep_their_identity_on_their_volumes(redis_side: Deployment) -> None:
    dep = redis_side
    dep.settle(lambda: init_state(dep)[0] == "exited", "the init service to finish")
    for node in NODES:
        (container,) = dep.containers(node)
        code, out = container.exec_run(["sh", "-c", "test -s /data/nodes.conf && echo ok"])
        assert code == 0 and cast(bytes, out).strip() == b"ok", node


@pytest.fixture(scope="module")
def full_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """docker-compose.yml plus the Cluster override, everything up (gateways and HAProxy
    too) in a project of its own; `down -v` at the end."""
    with podman_service(tmp_path_factory.mktemp("podman-full")) as engine, \
            deployed(engine, CLUSTER_OVERRIDE) as dep:
        yield dep


def full_stack_healthy(dep: Deployment) -> bool:
    state = Counter((r["Service"], r["State"], r.get("Health") or "") for r in dep.services())
    return (all(state[(node, "running", "healthy")] == 1 for node in NODES)
            and state[("gateway", "running", "healthy")] == 3
            and state[("lb", "running", "")] == 1)


@CLUSTER_GATEWAY
def test_gateways_on_the_cluster_chat_through_haproxy_in_several_rooms(
        full_stack: Deployment) -> None:
    dep = full_stack
    dep.settle(lambda: full_stack_healthy(dep) and haproxy_uses_every_gateway(dep),
               "six nodes, three gateways and HAProxy healthy")
    assert init_state(dep) == ("exited", 0)
    gateway = dep.containers()[0]
    assert gateway.attrs["Config"]["Env"].count(
        "CHAT_REDIS_URL=redis+cluster://redis:6379,redis-node-2:6379,redis-node-3:6379") == 1
    rooms = ("lobby", "alpha", "beta", "gamma", "delta")
    logs = {name: Recorder() for name in ("alice", "bob")}
    with contextlib.ExitStack() as stack:
        clients = {name: stack.enter_context(chat_client(dep, name, log, rooms))
                   for name, log in logs.items()}
        for client in clients.values():
            try:
                client.connect(timeout=20)
            except Exception as exc:
                raise AssertionError(f"{exc}{dep.explain()}") from exc
        for room in rooms:
            text = f"hello in {room}"
            clients["alice"].send(room, text)

            def seen(t: str = text, r: str = room) -> bool:
                return all(texts(log, r)[-1:] == [t] for log in logs.values())

            wait_for(seen, timeout=30, what=f"both to see {text!r}")
        assert all(log.of(ev.SendFailed) == [] for log in logs.values())
