"""Fixtures shared by every tier: a real redis-server per test that needs one."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.support.redis_server import RedisServer

REQUIRE_SYSTEM = os.environ.get("CHAT_REQUIRE_SYSTEM") == "1" or os.environ.get(
    "CHAT_REQUIRE_GUI"
) == "1"


def require_program(program: str, package: str) -> str:
    """The path of ``program``; skip (or fail in CI) naming the package to install."""
    path = shutil.which(program)
    if path:
        return path
    message = f"{program} not found: install the Debian package '{package}'"
    if REQUIRE_SYSTEM:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh redis-server on a free loopback port, killed after the test."""
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.close()
