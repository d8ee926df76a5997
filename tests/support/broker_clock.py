"""Fake time for broker tests: leases pass when a test says so, never by sleeping.

Shared by the broker's unit tests (tests/gateway/test_broker.py) and the scenario that runs
every Lua script (tests/support/slots_scenario.py).
"""

from __future__ import annotations

from gateway.redis.broker import Broker

LEASE_MS = 8000
T0 = 1_700_000_000.0


class FakeClock:
    """Seconds since the epoch that only move when a test says so."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def lease_runs_out(clock: FakeClock, *beating: Broker) -> None:
    """Let a lease pass while ``beating`` keep beating: every other gateway's lease runs out.

    As in a live cluster someone beats meanwhile; a lease without any heartbeat
    would be an outage (see ``outage`` in tests/gateway/test_broker.py).
    """
    for _ in range(2):
        clock.advance(LEASE_MS / 2000)
        for broker in beating:
            broker.heartbeat()
