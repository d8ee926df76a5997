"""A gateway's life: health endpoints, metrics, orderly shutdown (in-process and SIGTERM)."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request

import pytest
from redis.backoff import ConstantBackoff

from gateway.server import Gateway, run_gateway
from tests.gateway.conftest import Connect, StartGateway
from tests.gateway.live import error, login, wait_closed_with_bye, wait_threads
from tests.support.gateways import GatewayProcess, config
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_for


def http_get(address: tuple[str, int], path: str) -> tuple[int, bytes]:
    url = f"http://{address[0]}:{address[1]}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return int(reply.status), reply.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


@pytest.fixture
def gw(start_gateway: StartGateway) -> Gateway:
    return start_gateway(health_port=0)


def health_address(gw: Gateway) -> tuple[str, int]:
    address = gw.health_address
    assert address is not None
    return address


def test_healthz_is_200_then_503_while_redis_is_down_then_200_again(
        gw: Gateway, redis_server: RedisServer) -> None:
    where = health_address(gw)
    wait_for(lambda: http_get(where, "/healthz")[0] == 200, 10, what="healthy")
    assert http_get(where, "/healthz") == (200, b"ok\n")
    redis_server.kill()
    wait_for(lambda: http_get(where, "/healthz")[0] == 503, 10, what="unhealthy")
    assert http_get(where, "/healthz")[1] == b"unavailable\n"
    redis_server.start()
    wait_for(lambda: http_get(where, "/healthz")[0] == 200, 10, what="healthy again")


def test_healthz_is_503_while_redis_is_paused(gw: Gateway, redis_server: RedisServer) -> None:
    """A hung Redis (SIGSTOP) answers nothing: the probe notices what no socket error says."""
    where = health_address(gw)
    wait_for(lambda: http_get(where, "/healthz")[0] == 200, 10, what="healthy")
    redis_server.pause()
    try:
        wait_for(lambda: http_get(where, "/healthz")[0] == 503, 10, what="unhealthy")
    finally:
        redis_server.resume()
    wait_for(lambda: http_get(where, "/healthz")[0] == 200, 15, what="healthy again")


def test_metrics_names_and_values(gw: Gateway, connect: Connect) -> None:
    client = connect(gw.address)
    login(client, "alice")
    client.send_raw(b"junk\n")
    error(client, "bad_frame")
    client.send(type="send", room="lobby", text="hi", ref="m")
    client.recv_type("ack", ref="m")
    status, body = http_get(health_address(gw), "/metrics")
    assert status == 200
    text = body.decode()
    for name in ("chat_connections", "chat_sessions", "chat_frames_in_total",
                 "chat_frames_out_total", "chat_errors_total", "chat_fanout_backlog_bytes",
                 "chat_redis_reconnects_total", "chat_probe_rtt_seconds",
                 "chat_publish_seconds_bucket", "chat_slow_consumers_total", "chat_healthy",
                 "chat_gateway_info"):
        assert f"\n{name}" in text, name
    assert "chat_connections 1.0" in text
    assert "chat_sessions 1.0" in text
    assert 'chat_errors_total{code="bad_frame"} 1.0' in text
    assert 'chat_frames_in_total{type="send"} 1.0' in text
    assert 'chat_publish_seconds_count 1.0' in text
    assert 'chat_gateway_info{gateway="gw1"} 1.0' in text


def test_unknown_http_path_is_404(gw: Gateway) -> None:
    assert http_get(health_address(gw), "/nope")[0] == 404


def test_shutdown_says_bye_to_everyone_frees_names_and_leaves_no_thread(
        redis_server: RedisServer, start_gateway: StartGateway, connect: Connect) -> None:
    other = start_gateway()
    observer = connect(other.address)
    login(observer, "observer")
    baseline = threading.active_count()
    gw = Gateway(config(redis_server.url, "doomed"), backoff=ConstantBackoff(0.05)).start()
    try:
        clients = [connect(gw.address) for _ in range(3)]
        for i, c in enumerate(clients):
            login(c, f"user{i}", ["lobby", f"room{i}"])
        never_logged_in = connect(gw.address)
        started = time.monotonic()
        gw.shutdown()
        assert time.monotonic() - started < 5
        gw.shutdown()  # twice is harmless
    finally:
        gw.shutdown()
    for c in clients:
        wait_closed_with_bye(c, "shutdown")
    wait_closed_with_bye(never_logged_in, "shutdown")
    for i in range(3):
        assert observer.recv_type("left", name=f"user{i}")
    wait_threads(baseline)  # every thread of the stopped gateway is gone
    for i in range(3):
        login(connect(other.address), f"USER{i}")  # free at once, no token needed


def test_sigterm_says_bye_shutdown_exits_0_and_frees_names_once_the_lease_passes(
        redis_server: RedisServer, start_gateway: StartGateway, connect: Connect) -> None:
    """Names stay reserved for their tokens for a lease (test_operations.py), then go:
    the rooms see ``left`` and anyone may take them, without a token."""
    other = start_gateway()
    observer = connect(other.address)
    login(observer, "observer", ["lobby", "dev"])
    proc = GatewayProcess(redis_server.url, "sigterm")
    try:
        clients = [connect(proc.address) for _ in range(4)]
        for i, c in enumerate(clients):
            login(c, f"user{i}", ["lobby", "dev"] if i % 2 else ["lobby"])
            c.send(type="send", room="lobby", text=f"hello from {i}", ref="r")
            c.recv_type("ack", ref="r")
        started = time.monotonic()
        assert proc.terminate(timeout=10) == 0
        assert time.monotonic() - started < 5
        for c in clients:
            wait_closed_with_bye(c, "shutdown", timeout=1)  # already sent before the exit
        for i in (1, 3):
            assert observer.recv_type("left", room="dev", name=f"user{i}")  # lease: 2 s
        for i in range(4):
            login(connect(other.address), f"User{i}")  # no 15 s wait, no token
        observer.send(type="who", room="dev")
        assert observer.recv_type("who")["names"] == ["observer"]
    finally:
        proc.close()


def test_a_gateway_started_while_redis_is_down_serves_once_it_is_up(
        redis_server: RedisServer, connect: Connect) -> None:
    redis_server.kill()
    with run_gateway(config(redis_server.url, "early"), backoff=ConstantBackoff(0.05)) as gw:
        client = connect(gw.address)
        client.send(type="hello", name="alice", ref="h")
        assert error(client, "unavailable")["ref"] == "h"
        redis_server.start()
        wait_for(lambda: gw.subscriber.connected, 10, what="pub/sub connected")
        login(client, "alice")
