"""A pub/sub link that goes silent without any error is found by the probe and rebuilt.

Between the gateway and Redis sits a TCP proxy that can stop passing Redis's
bytes to pub/sub connections while keeping them open: the failure no socket
reports (a half-dead NAT, Redis dropping a subscriber's output). Only the
gateway's self-probe can notice it.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Iterator

import pytest

from gateway.server import Gateway
from tests.gateway.conftest import Connect, StartGateway
from tests.gateway.live import ids, login, read_messages, send_ok
from tests.support.redis_server import RedisEndpoint
from tests.support.waiting import wait_for


class FreezingProxy:
    """Forwards TCP to Redis; ``freeze()`` swallows Redis's bytes to pub/sub links."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._lock = threading.Lock()
        self._frozen: set[int] = set()
        self._pubsub: set[int] = set()
        self._sockets: list[socket.socket] = []
        self._stop = False
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self._listener.getsockname()[1]}/0"

    def freeze(self) -> int:
        """Silence every pub/sub connection open now; returns how many."""
        with self._lock:
            self._frozen |= self._pubsub
            return len(self._pubsub)

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._target)
            with self._lock:
                self._sockets += [client, upstream]
            link = id(client)
            for args in ((client, upstream, link, True), (upstream, client, link, False)):
                t = threading.Thread(target=self._pump, args=args, daemon=True)
                t.start()

    def _pump(self, src: socket.socket, dst: socket.socket, link: int, upward: bool) -> None:
        with contextlib.suppress(OSError):
            while True:
                if not select.select([src], [], [], 0.2)[0]:
                    if self._stop:
                        return
                    continue
                data = src.recv(65536)
                if not data:
                    return
                with self._lock:
                    if upward and b"SUBSCRIBE" in data.upper():
                        self._pubsub.add(link)
                    frozen = not upward and link in self._frozen
                if not frozen:
                    dst.sendall(data)

    def close(self) -> None:
        self._stop = True
        self._listener.close()
        with self._lock:
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.close()


@pytest.fixture
def proxy(shared_redis: RedisEndpoint) -> Iterator[FreezingProxy]:
    p = FreezingProxy((shared_redis.host, shared_redis.port))
    yield p
    p.close()


@pytest.mark.slow
def test_a_silent_subscription_is_rebuilt_and_its_gap_filled(
        proxy: FreezingProxy, start_gateway: StartGateway, connect: Connect) -> None:
    """No error, no message: probes stop returning, the gateway turns unhealthy,
    rebuilds its subscription, fills the gap in order, and is healthy again."""
    quiet: Gateway = start_gateway("quiet", redis_url=proxy.url, probe_timeout_s=1.5)
    loud: Gateway = start_gateway("loud")
    alice = connect(quiet.address)
    login(alice, "alice")
    bob = connect(loud.address)
    login(bob, "bob")
    wait_for(lambda: quiet.healthy, what="the quiet gateway to be healthy")
    reconnects_before = quiet.metrics.redis_reconnects._value.get()

    assert proxy.freeze() == 1  # the quiet gateway's one pub/sub connection
    for i in range(1, 6):
        assert send_ok(bob, "lobby", f"during the silence {i}", f"s{i}") == i

    wait_for(lambda: not quiet.healthy, timeout=10, what="the probe to notice the silence")
    frames = read_messages(alice, "lobby", 5, timeout=15)
    assert ids(frames, "lobby") == [1, 2, 3, 4, 5]
    wait_for(lambda: quiet.healthy, timeout=15, what="health to come back after the rebuild")
    assert quiet.metrics.redis_reconnects._value.get() > reconnects_before

    # Live delivery works again through the rebuilt subscription.
    assert send_ok(bob, "lobby", "after", "s6") == 6
    assert ids(read_messages(alice, "lobby", 6), "lobby") == [6]
