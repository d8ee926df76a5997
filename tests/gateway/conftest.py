"""Fixtures for single-gateway tests: a real redis-server, in-process gateways, raw clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from redis.backoff import ConstantBackoff

from gateway.server import Gateway, run_gateway
from tests.support.gateways import config
from tests.support.redis_server import RedisServer
from tests.support.wire import WireClient

StartGateway = Callable[..., Gateway]
Connect = Callable[..., WireClient]


@pytest.fixture
def start_gateway(redis_server: RedisServer) -> Iterator[StartGateway]:
    """Start in-process gateways on ``redis_server`` (fast timings); all stop after the test."""
    with ExitStack() as stack:
        count = 0

        def start(gateway_id: str | None = None, **overrides: Any) -> Gateway:
            nonlocal count
            count += 1
            url = overrides.pop("redis_url", redis_server.url)
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
