"""Fixtures for security tests: an in-process gateway, raw clients, a test CA."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
from redis.backoff import ConstantBackoff

from gateway.server import Gateway, run_gateway
from tests.support.gateways import config
from tests.support.redis_server import RedisServer
from tests.support.wire import WireClient

StartGateway = Callable[..., Gateway]
Connect = Callable[..., WireClient]


@pytest.fixture
def start_gateway(redis_server: RedisServer) -> Iterator[StartGateway]:
    """Start in-process gateways (on ``redis_server`` unless ``redis_url`` is given)."""
    with ExitStack() as stack:
        count = 0

        def start(redis_url: str | None = None, **overrides: Any) -> Gateway:
            nonlocal count
            count += 1
            cfg = config(redis_url or redis_server.url, f"gw{count}", **overrides)
            return stack.enter_context(run_gateway(cfg, backoff=ConstantBackoff(0.05)))

        yield start


@pytest.fixture
def gateway(start_gateway: StartGateway) -> Gateway:
    return start_gateway()


@pytest.fixture
def connect() -> Iterator[Connect]:
    """Open raw protocol clients; all closed after the test."""
    clients: list[WireClient] = []

    def open_client(address: tuple[str, int], **kw: Any) -> WireClient:
        client = WireClient(address, **kw)
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        client.close()


@dataclass(frozen=True, slots=True)
class Pki:
    """A throwaway CA and a certificate for 127.0.0.1 signed by it, as files."""

    ca: trustme.CA
    ca_file: Path
    cert_file: Path
    key_file: Path


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_file, cert_file, key_file = (tmp_path / n for n in ("ca.pem", "cert.pem", "key.pem"))
    ca.cert_pem.write_to_path(str(ca_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    for pem in cert.cert_chain_pems[1:]:
        pem.write_to_path(str(cert_file), append=True)
    cert.private_key_pem.write_to_path(str(key_file))
    return Pki(ca, ca_file, cert_file, key_file)
