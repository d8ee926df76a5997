"""A connection storm (1,000 connects in about a second, each with ``hello``) is survived.

Every connection gets ``welcome``, or with ``--max-connections`` a clean
``unavailable`` refusal followed by the gateway closing it; all the while a
client logged in before the storm keeps getting its ``pong``s.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.load.conftest import StartGateways
from tests.load.swarm import Swarm, Target, outcomes
from tests.support.wire import WireClient

STORM = 1000
PER_SECOND = 1000.0
PONG_BOUND_S = 1.0
"""Generous: the gateway is saturated by the storm; what matters is that it answers."""
PING_SHARE = 0.75
"""The pinger's share of the frame rate the gateway allows a connection (``welcome``'s
``limits.rate_per_s``): it must never be ``rate_limited`` itself. Pinging 20 ms after each
pong (up to 50 a second against 20) emptied its bucket of 40 whenever pongs came fast for
over a second and a half: a storm slowed by a loaded machine was enough."""


class Pinger:
    """A logged-in client that pings on its own thread, within its frame rate (a ping
    every 67 ms with the default 20 a second, each after the last pong), and times the
    pongs. A storm of ``STORM`` logins at ``PER_SECOND`` lasts a second at least: 15
    pings or more, and a stall the size of ``PONG_BOUND_S`` cannot fall between two."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.client = WireClient(address, timeout=10)
        welcome = self.client.hello("pinger", rooms=[])
        self.interval = 1 / (welcome["limits"]["rate_per_s"] * PING_SHARE)
        self.times: list[float] = []
        self.failure: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pinger")

    def _run(self) -> None:
        try:
            n = 0
            due = time.monotonic()
            while not self._stop.wait(max(0.0, due - time.monotonic())):
                n += 1
                due = time.monotonic() + self.interval  # start to start: the rate is bound
                started = time.perf_counter()
                self.client.send(type="ping", ref=str(n))
                assert self.client.recv(timeout=5) == {"type": "pong", "ref": str(n)}
                self.times.append(time.perf_counter() - started)
        except BaseException as exc:  # reported by the test thread
            self.failure = exc

    @contextmanager
    def running(self) -> Iterator[Pinger]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(10)
            self.client.close()

    def check(self) -> str:
        assert self.failure is None, f"the gateway stopped answering: {self.failure!r}"
        assert len(self.times) >= 10, self.times
        worst = max(self.times)
        assert worst < PONG_BOUND_S, worst
        return f"{len(self.times)} pings, worst pong {worst * 1000:.0f} ms"


def storm(address: tuple[str, int]) -> tuple[dict[str, int], float, list[float]]:
    """Run the storm; returns the outcomes, its duration and each answer's wait."""
    targets = [Target(address, f"s{i}") for i in range(STORM)]
    with Swarm() as swarm:
        started = time.monotonic()
        conns = swarm.login(targets, per_second=PER_SECOND, window=STORM, timeout=60)
        took = time.monotonic() - started
        refused_open = [c for c in conns if c.outcome == "unavailable" and not c.closed_by_peer]
        assert not refused_open, "a refused connection was left open"
        return outcomes(conns), took, sorted(c.answered - c.started for c in conns)


@pytest.mark.slow
def test_storm_of_1000_logins_all_welcomed_while_gateway_keeps_answering(
        start_gateways: StartGateways) -> None:
    (gw,) = start_gateways(1)
    with Pinger(gw.address).running() as pinger:
        counts, took, waits = storm(gw.address)
    assert counts == {"welcome": STORM}
    print(f"\nLOAD storm: {STORM} logins in {took:.2f}s, answer wait p50 "
          f"{waits[len(waits) // 2] * 1000:.0f} ms, max {waits[-1] * 1000:.0f} ms; "
          f"{pinger.check()}")
    assert gw.health() == 200


@pytest.mark.slow
def test_storm_past_max_connections_is_refused_cleanly(start_gateways: StartGateways) -> None:
    limit = 400
    (gw,) = start_gateways(1, "--max-connections", str(limit))
    with Pinger(gw.address).running() as pinger:
        counts, took, _ = storm(gw.address)
    # the pinger holds one of the places
    assert counts == {"welcome": limit - 1, "unavailable": STORM - limit + 1}
    print(f"\nLOAD storm past --max-connections {limit}: {counts} in {took:.2f}s; "
          f"{pinger.check()}")
    assert gw.health() == 200
