"""A wake-up socketpair: one thread blocked in ``select``/``poll`` woken by another.

The waiting thread registers ``fileno()`` (or the ``Waker`` itself, which
selectors accept) with its other sockets; any thread calls ``wake()`` to make
that wait return; the waiting thread calls ``drain()`` to take the wake-ups
it saw. Both ends are non-blocking: a wake-up while one is already pending is
dropped (one is enough), and a wake-up after ``close()`` does nothing.
"""

from __future__ import annotations

import contextlib
import socket


class Waker:
    """One socketpair: ``wake()`` from any thread, ``fileno()`` in the waiter's poll."""

    __slots__ = ("_r", "_w")

    def __init__(self) -> None:
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)

    def fileno(self) -> int:
        return self._r.fileno()

    def wake(self) -> None:
        """Make the waiter's poll return; never blocks, never raises."""
        # BlockingIOError: a wake-up byte is already pending; OSError: closed
        with contextlib.suppress(OSError):
            self._w.send(b"\0")

    def drain(self) -> None:
        """Take every pending wake-up (the waiter, after its poll saw ``fileno()``)."""
        with contextlib.suppress(OSError):
            while self._r.recv(4096):
                pass

    def close(self) -> None:
        """Close both ends; safe to call twice."""
        self._r.close()
        self._w.close()


__all__ = ["Waker"]
