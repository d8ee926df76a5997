"""Fixtures for load tests: enough file descriptors, gateway processes, a report."""

from __future__ import annotations

import resource
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import pytest

from tests.support.gateways import GatewayProcess
from tests.support.redis_server import RedisEndpoint

StartGateways = Callable[..., list[GatewayProcess]]

INHERITED_NOFILE = 1024
"""The soft limit gateways are started with, as on a stock system: they must raise it."""


@pytest.fixture
def open_files() -> Iterator[int]:
    """Lift this process's soft RLIMIT_NOFILE to the hard limit for the test; yields it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    try:
        yield target
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture
def start_gateways(gateway_redis: RedisEndpoint, open_files: int) -> Iterator[StartGateways]:
    """Start ``python -m gateway`` processes in parallel; all killed after the test.

    They inherit a soft open-files limit of 1024, so a test can check that
    each gateway raised its own.
    """
    with ExitStack() as stack:
        started = 0

        def start(n: int, *extra: str) -> list[GatewayProcess]:
            nonlocal started
            ids = [f"gw{started + i + 1}" for i in range(n)]
            started += n
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            resource.setrlimit(resource.RLIMIT_NOFILE, (INHERITED_NOFILE, hard))
            try:
                with ThreadPoolExecutor(n) as pool:
                    futures = [pool.submit(GatewayProcess, gateway_redis.url, gid, *extra)
                               for gid in ids]
            finally:
                resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, hard))
            for future in futures:
                if future.exception() is None:
                    stack.callback(future.result().close)
            return [future.result() for future in futures]

        yield start
