"""The deployed topology without Docker: gateway processes behind a real HAProxy.

HAProxy runs deploy/haproxy.cfg itself, with only what the engine's DNS provides
replaced by loopback addresses (deploy.haproxy.local_config).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from deploy.haproxy import TEMPLATE, LocalServer, ServerState, local_config, server_states
from protocol.address import Address
from tests.conftest import require_program
from tests.support.gateways import GatewayProcess
from tests.support.redis_server import RedisEndpoint, free_port
from tests.support.waiting import wait_for


@dataclass(frozen=True, slots=True)
class HAProxy:
    """A running HAProxy: where clients connect and where its runtime API listens."""

    address: Address
    stats_socket: Path
    proc: subprocess.Popen[bytes]
    servers: dict[str, GatewayProcess]
    """HAProxy server name (gw1, ...) -> the gateway behind it."""

    def states(self) -> dict[str, ServerState]:
        return server_states(self.stats_socket)

    def server_of(self, gateway: GatewayProcess) -> str:
        return next(name for name, g in self.servers.items() if g is gateway)


@pytest.fixture
def gateway_processes(gateway_redis: RedisEndpoint) -> Iterator[list[GatewayProcess]]:
    """Three ``python -m gateway`` processes sharing one redis-server."""
    with contextlib.ExitStack() as stack:
        procs = []
        for i in range(3):
            proc = GatewayProcess(gateway_redis.url, f"gw-{i + 1}")
            stack.callback(proc.close)
            procs.append(proc)
        yield procs
        for proc in procs:
            if proc.proc.poll() is None:
                proc.terminate()


@pytest.fixture
def haproxy(gateway_processes: list[GatewayProcess], tmp_path: Path) -> Iterator[HAProxy]:
    """HAProxy with deploy/haproxy.cfg in front of the three gateways, all seen UP."""
    binary = require_program("haproxy", "haproxy")
    sock = tmp_path / "haproxy.sock"
    address = Address("127.0.0.1", free_port())
    servers = [LocalServer(Address("127.0.0.1", g.port), g.health_port) for g in gateway_processes]
    config = tmp_path / "haproxy.cfg"
    config.write_text(local_config(TEMPLATE.read_text(), servers, address, sock))
    log = (tmp_path / "haproxy.log").open("wb")
    proc = subprocess.Popen([binary, "-db", "-f", str(config)], stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        lb = HAProxy(address, sock, proc,
                     {f"gw{i + 1}": g for i, g in enumerate(gateway_processes)})

        def all_up() -> bool:
            assert proc.poll() is None, (tmp_path / "haproxy.log").read_text()
            with contextlib.suppress(OSError):
                states = lb.states()
                return len(states) == 3 and all(s.up for s in states.values())
            return False

        wait_for(all_up, timeout=15, interval=0.05, what="HAProxy to see every gateway UP")
        yield lb
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
