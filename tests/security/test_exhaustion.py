"""Nobody can exhaust a gateway's threads or descriptors through its ports.

The health port used to serve each connection on a thread of its own with no
timeout and no cap: idle connections held threads forever. Out of file
descriptors, the chat port's accept loop spun on ``EMFILE``, logging every
failure, while the waiting client got nothing. Now the health port serves
at most a few connections at once (others get ``503`` at once), each with
a read timeout, and the accept loop refuses waiting clients through a spare
descriptor with ``error``/``unavailable``, logs a line now and then with a
count, and backs off.
"""

from __future__ import annotations

import os
import resource
import select
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from gateway.health import MAX_CONNECTIONS, HealthServer
from gateway.server import Gateway
from tests.conftest import StartGateway
from tests.support.gateways import GatewayProcess
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_for

IDLE = 3 * MAX_CONNECTIONS


def http_get(address: tuple[str, int], path: str) -> bytes:
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        return read_all(sock)


def read_all(sock: socket.socket, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def answered(socks: list[socket.socket], wanted: int, timeout: float = 5.0) -> list[bytes]:
    """What the server said to each connection it answered and closed, until ``wanted``
    were or ``timeout`` passed."""
    told: list[bytes] = []
    waiting = list(socks)
    deadline = time.monotonic() + timeout
    while waiting and len(told) < wanted and time.monotonic() < deadline:
        readable, _, _ = select.select(waiting, [], [], 0.2)
        for sock in readable:
            told.append(read_all(sock))
            waiting.remove(sock)
    return told


def test_idle_health_connections_are_capped_and_the_extra_ones_get_503(
        start_gateway: StartGateway) -> None:
    gw: Gateway = start_gateway(health_port=0)
    address = gw.health_address
    assert address is not None
    baseline = threading.active_count()
    idle = [socket.create_connection(address, timeout=5) for _ in range(IDLE)]
    try:
        # The first MAX_CONNECTIONS hold a thread each until they time out; every
        # further one is answered 503 and closed at once, without a thread.
        busy = answered(idle, IDLE - MAX_CONNECTIONS)
        assert len(busy) == IDLE - MAX_CONNECTIONS, len(busy)
        assert all(answer.startswith(b"HTTP/1.0 503") for answer in busy), busy[:2]
        assert threading.active_count() <= baseline + MAX_CONNECTIONS
    finally:
        for sock in idle:
            sock.close()
    # the idle ones closed: the slots come back
    wait_for(lambda: http_get(address, "/healthz").startswith(b"HTTP/1.0 200"), 10,
             what="/healthz served again")


def test_a_health_connection_that_sends_nothing_is_closed_after_the_timeout() -> None:
    server = HealthServer("127.0.0.1", 0, lambda: True, lambda: b"", max_connections=2,
                          timeout_s=0.3)
    server.start()
    try:
        with socket.create_connection(server.address, timeout=5) as silent:
            started = time.monotonic()
            assert read_all(silent) == b""  # closed by the server, not by our timeout
            assert time.monotonic() - started < 4
        wait_for(lambda: server.open_connections == 0, 5, what="the slot freed")
        assert http_get(server.address, "/healthz").endswith(b"ok\n")
    finally:
        server.stop()


@pytest.fixture
def gateway_process(redis_server: RedisServer) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(redis_server.url, "gw-fd")
    try:
        yield gw
    finally:
        gw.close()


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.slow
def test_out_of_descriptors_waiting_clients_are_told_and_the_accept_loop_does_not_spin(
        gateway_process: GatewayProcess) -> None:
    gw = gateway_process
    pid = gw.proc.pid
    in_use = len(os.listdir(f"/proc/{pid}/fd"))
    _, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (in_use + 4, hard))
    clients = [socket.create_connection(gw.address, timeout=5) for _ in range(24)]
    try:
        told = answered(clients, 16)
        # a few were accepted (they wait for their hello); the rest were told at once
        assert len(told) >= 16, len(told)
        for answer in told:
            assert b'"code":"unavailable"' in answer and b"full" in answer, answer
        before = cpu_seconds(pid)
        more = socket.create_connection(gw.address, timeout=5)  # still out of descriptors
        clients.append(more)
        assert b'"code":"unavailable"' in read_all(more)
        time.sleep(2)  # a window to measure CPU over, not a wait for an event
        assert cpu_seconds(pid) - before < 0.5, "the accept loop spins"
        log = gw.stderr_tail(1 << 20)
        lines = [ln for ln in log.splitlines() if "event=accept_failed" in ln]
        assert 1 <= len(lines) <= 3, lines[:5]
        assert "count=" in lines[0] and "EMFILE" in lines[0], lines[0]
    finally:
        for sock in clients:
            sock.close()
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (hard, hard))
    wait_for(lambda: gw.health() == 200, 10, what="the gateway healthy again")
