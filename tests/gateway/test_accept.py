"""Accept helpers: the spare descriptor, the throttled failure log, the backoff."""

from __future__ import annotations

import errno
import logging
import socket

import pytest

from gateway.accept import Backoff, FailureLog, SpareDescriptor


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_storm_of_failures_is_one_line_per_interval_with_a_count(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    failures = FailureLog(logging.getLogger("gateway.test"), "accept_failed", 5.0, clock)
    emfile = OSError(errno.EMFILE, "Too many open files")
    with caplog.at_level(logging.WARNING, logger="gateway.test"):
        for _ in range(1000):
            failures.failed(emfile, refused=1)
            clock.now += 0.001
        clock.now += 5.0
        failures.failed(emfile)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["event=accept_failed error=EMFILE count=1 refused=1",
                     "event=accept_failed error=EMFILE count=1000 refused=999"]


def test_backoff_doubles_up_to_its_ceiling_and_resets() -> None:
    backoff = Backoff(0.01, 0.05)
    assert [backoff.failed() for _ in range(4)] == [0.01, 0.02, 0.04, 0.05]
    backoff.succeeded()
    assert backoff.delay == 0.0


def test_the_spare_refuses_every_waiting_connection_with_its_last_word() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    spare = SpareDescriptor()
    clients = [socket.create_connection(listener.getsockname(), timeout=5) for _ in range(3)]
    try:
        assert spare.refuse_waiting(listener, b"full\n") == 3
        for client in clients:
            assert client.recv(100) == b"full\n"
            assert client.recv(100) == b""
        assert spare.refuse_waiting(listener, b"full\n") == 0  # nothing waits
    finally:
        spare.close()
        listener.close()
        for client in clients:
            client.close()
