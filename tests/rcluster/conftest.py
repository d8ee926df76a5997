"""Fixtures of the rcluster tier: gateway processes on a Redis Cluster (tests/support/rcluster).

``chat`` is one backend and three gateway processes for a whole module
(starting a cluster costs a few seconds); tests sharing it use names and
rooms of their own. Tests that kill a master or move a slot start their own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from tests.support.gateways import GatewayProcess
from tests.support.rcluster import ChatRedis, chat_redis, gateway_processes
from tests.support.wire import WireClient


@dataclass(slots=True)
class Chat:
    """A backend and the gateways on it."""

    redis: ChatRedis
    gateways: list[GatewayProcess]


@pytest.fixture(scope="module")
def chat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chat]:
    with chat_redis(tmp_path_factory.mktemp("rcluster")) as backend, \
            gateway_processes(backend.url, 3) as procs:
        yield Chat(backend, procs)


@pytest.fixture
def connect() -> Iterator[Callable[[GatewayProcess], WireClient]]:
    """Raw protocol clients to a gateway; all closed after the test."""
    clients: list[WireClient] = []

    def open_client(gateway: GatewayProcess) -> WireClient:
        client = WireClient(gateway.address)
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        client.close()
