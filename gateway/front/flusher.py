"""The gateway's one writer thread: resumes sockets whose kernel buffers were full.

A session's ``Outbound`` writes straight to its socket while it can; what does
not fit waits in it and the socket is handed to the ``Flusher`` (``watch``),
which polls every such socket for POLLOUT and calls ``Outbound.on_writable``.

Lock order: ``Flusher._lock`` guards only the hand-over list and is never held
while calling an ``Outbound``; ``on_writable`` takes the outbound's own lock.
"""

from __future__ import annotations

import logging
import select
import threading
from typing import TYPE_CHECKING

from gateway.wakeup import Waker

if TYPE_CHECKING:
    from gateway.front.outbound import Outbound

log = logging.getLogger(__name__)


class Flusher:
    """The gateway's one writer thread: resumes sockets whose buffers were full.

    Registrations are one-shot (POLLOUT, removed once fired) and are made only
    by this thread, from requests handed over under a lock and a wake-up
    byte on its ``Waker``; so ``poll`` never races with a registration.
    """

    def __init__(self, name: str = "flusher") -> None:
        self._lock = threading.Lock()
        self._requests: list[tuple[int, Outbound]] = []
        self._waiting: dict[int, Outbound] = {}
        self._waker = Waker()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name)

    def start(self) -> None:
        self._thread.start()

    def watch(self, fd: int, outbound: Outbound) -> None:
        if fd < 0:
            return
        with self._lock:
            self._requests.append((fd, outbound))
        self._waker.wake()

    def stop(self) -> None:
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
        self._waker.wake()
        if self._thread.is_alive():
            self._thread.join(5)
        self._waker.close()

    def _run(self) -> None:
        poller = select.poll()
        wake_fd = self._waker.fileno()
        poller.register(wake_fd, select.POLLIN)
        try:
            while True:
                for fd, event in poller.poll():
                    if fd == wake_fd:
                        self._waker.drain()
                        continue
                    outbound = self._waiting.pop(fd, None)
                    poller.unregister(fd)
                    if outbound is not None and not event & select.POLLNVAL:
                        outbound.on_writable()
                with self._lock:
                    if self._stopping:
                        return
                    requests, self._requests = self._requests, []
                for fd, outbound in requests:
                    self._waiting[fd] = outbound
                    poller.register(fd, select.POLLOUT)
        except Exception:
            log.exception("event=flusher_crashed")
            raise


__all__ = ["Flusher"]
