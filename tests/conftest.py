"""Fixtures shared by every tier: a real redis-server per test that needs one."""

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

from gateway.server import Gateway, run_gateway
from tests.support.gateways import config
from tests.support.redis_server import RedisServer
from tests.support.wire import WireClient

StartGateway = Callable[..., Gateway]
Connect = Callable[..., WireClient]

TESTS = Path(__file__).parent
TIERS = ("protocol", "gateway", "cluster", "client", "gui", "deploy", "chaos", "load", "fuzz",
         "security", "bench", "accounts")
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
    """A fresh redis-server on a free loopback port, killed after the test."""
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def start_gateway(redis_server: RedisServer) -> Iterator[StartGateway]:
    """Start in-process gateways (fast timings) on ``redis_server``, or on ``redis_url``
    when given; every one is shut down after the test."""
    with ExitStack() as stack:
        count = 0

        def start(gateway_id: str | None = None, **overrides: Any) -> Gateway:
            nonlocal count
            count += 1
            url = overrides.pop("redis_url", None) or redis_server.url
            cfg = config(url, gateway_id or f"gw{count}", **overrides)
            return stack.enter_context(run_gateway(cfg, backoff=ConstantBackoff(0.05)))

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
