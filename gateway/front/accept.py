"""Accepting connections when the process has run out of file descriptors.

When ``accept()`` fails with ``EMFILE``/``ENFILE`` the connection stays in
the listen queue and the listening socket stays readable: a loop that just
tries again spins at full CPU and logs every failure. ``SpareDescriptor``
keeps one descriptor (``/dev/null``) in reserve; on such a failure it is
closed, the waiting connection is accepted into the freed slot, given a
last word and closed, and the spare is opened again. ``FailureLog`` turns a
storm of failures into one log line per interval with a count. The caller
backs off (``Backoff``) between rounds, so nothing spins: ``accept_loop``
is that loop, for the chat listener and the health endpoint alike.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import selectors
import socket
import time
from collections.abc import Callable

from gateway.wakeup import Waker

OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
"""Errors of ``accept()`` that mean the process or the system is short of resources."""


class SpareDescriptor:
    """One descriptor held back, to be able to refuse a connection when none is left."""

    def __init__(self) -> None:
        self._fd: int | None = None
        self._reopen()

    def _reopen(self) -> None:
        if self._fd is None:
            with contextlib.suppress(OSError):
                self._fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)

    def refuse_waiting(self, listener: socket.socket, last_word: bytes, limit: int = 64) -> int:
        """Accept up to ``limit`` waiting connections one by one, each into the spare's
        slot, send it ``last_word`` (may be empty) and close it. Returns how many."""
        refused = 0
        while refused < limit and self._fd is not None:
            os.close(self._fd)
            self._fd = None
            try:
                sock, _ = listener.accept()
            except OSError:  # nothing waits any more, or the slot went to another thread
                self._reopen()
                return refused
            with sock:
                if last_word:
                    with contextlib.suppress(OSError):
                        sock.setblocking(False)
                        sock.send(last_word)
            refused += 1
            self._reopen()
        return refused

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class FailureLog:
    """Logs the first failure at once, then at most one line per ``interval_s`` with
    how many failures (and refusals) there were since the last line."""

    def __init__(self, logger: logging.Logger, event: str, interval_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = logger
        self._event = event
        self._interval = interval_s
        self._clock = clock
        self._last = float("-inf")
        self._failures = 0
        self._refused = 0

    def failed(self, exc: OSError, refused: int = 0) -> None:
        self._failures += 1
        self._refused += refused
        now = self._clock()
        if now - self._last >= self._interval:
            self._log.warning("event=%s error=%s count=%d refused=%d", self._event,
                              errno.errorcode.get(exc.errno or 0, repr(exc)), self._failures,
                              self._refused)
            self._last = now
            self._failures = self._refused = 0


class Backoff:
    """Delays between accept rounds that fail: doubling from ``first`` to ``most``,
    back to none after a round that worked."""

    def __init__(self, first: float = 0.01, most: float = 1.0) -> None:
        self._first = first
        self._most = most
        self.delay = 0.0

    def failed(self) -> float:
        self.delay = min(self._most, self.delay * 2 if self.delay else self._first)
        return self.delay

    def succeeded(self) -> None:
        self.delay = 0.0


def accept_loop(listener: socket.socket, waker: Waker, backoff: Backoff,
                on_ready: Callable[[], None], running: Callable[[], bool] = lambda: True
                ) -> None:
    """Call ``on_ready`` each time ``listener`` is readable, while ``running()``, until
    ``waker`` wakes; after failed rounds wait ``backoff.delay`` first (a wake cuts the
    wait short). No polling: the selector sleeps until one of the two is readable."""
    with selectors.DefaultSelector() as selector:
        selector.register(listener, selectors.EVENT_READ)
        selector.register(waker, selectors.EVENT_READ)
        while running():
            delay = backoff.delay
            if delay and select.select([waker], [], [], delay)[0]:
                return  # woken for shutdown while backing off
            for key, _ in selector.select():
                if key.fileobj is waker:
                    return
                on_ready()


__all__ = ["OUT_OF_DESCRIPTORS", "Backoff", "FailureLog", "SpareDescriptor", "accept_loop"]
