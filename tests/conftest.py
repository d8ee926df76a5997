"""Fixtures shared by every tier: real redis-servers, in-process gateways, wire clients.

Two kinds of Redis, and a test says which one it needs:

* ``shared_redis``: one redis-server per session (per xdist worker), flushed
  before every test that uses it. For tests that only read and write Redis.
* ``redis_server``: a private redis-server for this test alone, to kill,
  pause, restart, wipe or reconfigure (``CONFIG SET``).

And two kinds of Redis Cluster (3 masters, 1 replica each,
``deploy.redis_cluster.LocalRedisCluster``; its ``url`` is ``redis+cluster://``):

* ``shared_redis_cluster``: one per session (per xdist worker), flushed
  before every test. Never kill a node or move a slot in it.
* ``redis_cluster``: a private one for this test alone, to SIGKILL a master
  (``kill_master``) or move a slot (``move_slot``, ``begin_slot_move``).

Gateways started by ``start_gateway`` (and tier fixtures built on
``gateway_redis``) run on the private one when the test asks for
``redis_server``, else on the shared one.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, NoReturn

import pytest
from redis.backoff import ConstantBackoff

from deploy.redis_cluster import LocalRedisCluster, cluster_server_binary, redis_cli_binary
from deploy.spawn import ClusterError
from gateway.server import Gateway, run_gateway
from tests.support.gateways import config, wait_ready
from tests.support.redis_server import RedisEndpoint, RedisServer
from tests.support.wire import WireClient

StartGateway = Callable[..., Gateway]
Connect = Callable[..., WireClient]

TESTS = Path(__file__).parent
TIERS = ("protocol", "gateway", "cluster", "client", "gui", "deploy", "chaos", "load", "fuzz",
         "security", "bench", "accounts", "rcluster")
"""Test tiers, one folder each; every test gets its folder's marker (``-m gateway``)."""

REQUIRE_SYSTEM = os.environ.get("CHAT_REQUIRE_SYSTEM") == "1" or os.environ.get(
    "CHAT_REQUIRE_GUI"
) == "1"


def installed_program(program: str) -> str | None:
    """``program`` as installed with the project (beside this Python), else from PATH.

    Console scripts of the project's dependencies (the Compose CLI, chat-cluster)
    live in the virtual environment's bin/, which need not be on PATH.
    """
    beside = Path(sys.executable).parent / program
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(program)


def require_program(program: str, package: str) -> str:
    """The path of ``program``; skip (or fail in CI) naming the package to install."""
    path = shutil.which(program)
    if path:
        return path
    unavailable(f"{program} not found: install the Debian package '{package}'")


def require_file(path: str, package: str) -> str:
    """``path`` (a program off PATH, such as podman's helpers); skip or fail like
    ``require_program`` when it is missing."""
    if os.access(path, os.X_OK):
        return path
    unavailable(f"{path} not found: install the Debian package '{package}'")


def unavailable(message: str) -> NoReturn:
    """Skip with ``message``, or fail with it in CI: something the machine lacks."""
    if REQUIRE_SYSTEM:
        pytest.fail(message)
    pytest.skip(message)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test with its tier, read from the folder it lives in."""
    for item in items:
        parts = item.path.relative_to(TESTS).parts
        if len(parts) > 1 and parts[0] in TIERS:
            item.add_marker(parts[0])


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server on a free loopback port, killed after the test.

    Ask for it to kill, pause, restart, wipe or reconfigure Redis; a test that
    only uses Redis takes ``shared_redis``.
    """
    server = RedisServer()
    try:
        server.start()  # closed even when it fails half-way
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def _session_redis() -> Iterator[RedisServer]:
    """The redis-server behind ``shared_redis``: one per session (per xdist worker).

    Without AOF: nothing restarts it, so nothing needs to survive a restart.
    """
    server = RedisServer(persist=False)
    try:
        server.start()  # closed even when it fails half-way
        yield server
    finally:
        server.close()


def require_redis_cluster() -> None:
    """Skip (or fail under CHAT_REQUIRE_SYSTEM=1) without redis-server and redis-cli 7 or
    later (the message names the Debian package)."""
    try:
        cluster_server_binary()
        redis_cli_binary()
    except ClusterError as exc:
        unavailable(str(exc))


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[LocalRedisCluster]:
    """A private Redis Cluster (3 masters, 1 replica each) for this test: kill a
    master, move a slot. Started in about 2-3 s; stopped after the test."""
    require_redis_cluster()
    with LocalRedisCluster(tmp_path / "redis-cluster") as cluster:
        yield cluster


@pytest.fixture(scope="session")
def _session_redis_cluster(
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedisCluster]:
    """The cluster behind ``shared_redis_cluster``: one per session (per xdist worker),
    started by the first test that asks."""
    require_redis_cluster()
    with LocalRedisCluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster


@pytest.fixture
def shared_redis_cluster(_session_redis_cluster: LocalRedisCluster) -> LocalRedisCluster:
    """The session's Redis Cluster, as good as new: no keys, no cached scripts, no
    client of an earlier test connected, every node up and in sync. Use it; never
    kill a node or move a slot in it: a test that does takes ``redis_cluster``."""
    _session_redis_cluster.wait_ready(timeout=10)
    _session_redis_cluster.reset()
    return _session_redis_cluster


@pytest.fixture
def shared_redis(_session_redis: RedisServer) -> RedisEndpoint:
    """The session's redis-server, as good as new: no keys, no cached scripts, no
    client of an earlier test still connected (their gateways were shut down by
    their own fixtures). Use it; never stop, pause or reconfigure it: a test that
    does takes ``redis_server``."""
    if not _session_redis.running:  # pragma: no cover - only if it died
        _session_redis.start()
    _session_redis.reset()
    return _session_redis.endpoint


@pytest.fixture
def gateway_redis(request: pytest.FixtureRequest) -> RedisEndpoint:
    """The Redis this test's gateways use: the test's private ``redis_server`` when
    it asks for one (to kill, pause or restart it under them), else ``shared_redis``."""
    if "redis_server" in request.fixturenames:
        server: RedisServer = request.getfixturevalue("redis_server")
        return server.endpoint
    shared: RedisEndpoint = request.getfixturevalue("shared_redis")
    return shared


@pytest.fixture
def start_gateway(gateway_redis: RedisEndpoint) -> Iterator[StartGateway]:
    """Start in-process gateways (fast timings) on ``gateway_redis``, or on ``redis_url``
    when given, and return each once it is ready; every one is shut down after the test."""
    with ExitStack() as stack:
        count = 0

        def start(gateway_id: str | None = None, **overrides: Any) -> Gateway:
            nonlocal count
            count += 1
            url = overrides.pop("redis_url", None) or gateway_redis.url
            cfg = config(url, gateway_id or f"gw{count}", **overrides)
            return wait_ready(stack.enter_context(run_gateway(cfg, backoff=ConstantBackoff(0.05))))

        yield start


@pytest.fixture
def gateway(start_gateway: StartGateway) -> Gateway:
    return start_gateway()


@pytest.fixture
def connect() -> Iterator[Connect]:
    """Open raw protocol clients to a gateway's address; all closed after the test."""
    clients: list[WireClient] = []

    def open_client(address: tuple[str, int], **kw: Any) -> WireClient:
        client = WireClient(address, **kw)
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        client.close()
