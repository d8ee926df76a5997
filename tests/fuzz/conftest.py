"""One real redis-server and one in-process gateway shared by the fuzz tests of a module.

Each fuzz test ends by checking that the gateway leaked nothing: its
registry is empty and the process has as many threads as before the test.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis
from redis.backoff import ConstantBackoff

from gateway.server import Gateway, run_gateway
from protocol.limits import Limits
from tests.support.gateways import config
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_for

FUZZ_LIMITS = Limits(max_frame=2048, max_text=200, rate_per_s=100_000.0, burst=100_000,
                     max_refused=100_000)
"""Small frames and texts keep oversized input cheap; the rate limit and the budget of
refused frames are out of the way (they have tests of their own) so that a fuzzer's
request is never dropped, nor its connection closed, at random."""


@dataclass(frozen=True, slots=True)
class Live:
    gateway: Gateway
    redis: redis.Redis


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    server = RedisServer(persist=False)
    server.start()
    try:
        cfg = config(server.url, "gw1", limits=FUZZ_LIMITS)
        with run_gateway(cfg, backoff=ConstantBackoff(0.05)) as gateway:
            yield Live(gateway, server.client())
    finally:
        server.close()


@pytest.fixture
def no_leaks(live: Live, caplog: pytest.LogCaptureFixture) -> Iterator[Live]:
    """Fails the test if the gateway logged an error or kept a session or thread after it."""
    caplog.set_level(logging.WARNING, logger="gateway")
    wait_for(lambda: len(live.gateway.registry) == 0, timeout=10, what="an empty registry")
    baseline = threading.active_count()
    yield live
    wait_for(lambda: len(live.gateway.registry) == 0, timeout=10,
             what="every fuzzed session to leave the registry")
    wait_for(lambda: threading.active_count() <= baseline, timeout=10,
             what="the thread count back to where it was")
    crashes = [r for r in caplog.records
               if r.name.startswith("gateway") and r.levelno >= logging.ERROR]
    assert not crashes, [r.getMessage() for r in crashes[:5]]
