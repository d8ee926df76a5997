"""Output to clients without ever blocking the thread that produced it.

Every session owns one ``Outbound``: a bounded queue of encoded lines in front
of a non-blocking socket. Whoever produces output (the session's reader, the
subscriber's fan-out) calls ``enqueue`` under its own locks and ``flush``
after releasing them; ``flush`` writes at once what the kernel takes and
hands the rest to the gateway's single ``Flusher`` thread, which resumes when
the socket is writable. So a slow client costs memory up to its limit, never
another client's latency, and only one thread writes a socket at a time
(the ``SENDING`` state is the write token, taken under the lock, held outside
it). Past the limit the queue is dropped, ``bye``/``slow_consumer`` is queued
behind the frame already half sent, and the owner, seeing ``overflowed``
after its locks are released, closes the session.

Lock order: callers may hold their session lock when calling ``enqueue``;
``Outbound._lock`` is innermost and is never held across a socket call.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import select
import socket
import ssl
import threading
from collections import deque

log = logging.getLogger(__name__)


class _State(enum.Enum):
    IDLE = "idle"          # nothing in flight; the next flush() may send
    SENDING = "sending"    # one thread is in send(); others only enqueue
    BLOCKED = "blocked"    # the kernel buffer is full; the Flusher will resume
    CLOSED = "closed"


class Outbound:
    """Bytes waiting for one client's socket, at most ``limit`` of them."""

    def __init__(self, sock: socket.socket, limit: int, flusher: Flusher) -> None:
        self._sock = sock
        self._limit = limit
        self._flusher = flusher
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._waiters = 0
        self._answers = 0
        """Unsent bytes of history answers, which the limit does not count (an
        estimate: they are taken to leave first)."""
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._state = _State.IDLE
        self._partial_head = False
        self._overflowed = False
        self._final = False
        self._cut_in_flight = False
        """``enqueue_final`` cut the queue while a send was in flight: the sender
        keeps only the rest of its half-sent line."""

    @property
    def backlog(self) -> int:
        """Unsent bytes (a metric; read without the lock)."""
        return self._size

    @property
    def overflowed(self) -> bool:
        """The limit was passed: the owner must end the session (not under its lock)."""
        return self._overflowed

    def enqueue(self, data: bytes, *, answer: bool = False) -> bool:
        """Queue one or more whole lines; False when closed or over the limit.

        ``answer``: a history answer the client asked for. It may pass the limit
        on its own (1000 long messages outweigh 1 MiB); only what is queued
        besides unsent answers counts, so a reader that keeps up is never taken
        for a slow consumer, and memory stays bounded by the history kept.
        """
        with self._lock:
            return self._append(data, answer)

    def _append(self, data: bytes, answer: bool = False) -> bool:
        """Under ``_lock``: queue behind what is there, within the limit."""
        if self._state is _State.CLOSED or self._overflowed or self._final:
            return False
        self._chunks.append(data)
        self._size += len(data)
        if answer:
            self._answers += len(data)
        if self._size - self._answers <= self._limit:
            return True
        self._overflowed = True
        return False

    def enqueue_final(self, data: bytes) -> None:
        """Queue a last line (``bye``) even past the limit, dropping unsent whole lines.

        The line half-written to the socket, if any, is finished first so the
        client still reads a well-formed stream.
        """
        with self._lock:
            if self._state is _State.CLOSED:
                return
            if self._overflowed or self._size > self._limit:
                head = self._chunks[0] if self._chunks and self._partial_head else b""
                if head:
                    cut = head.find(b"\n")
                    head = head[: cut + 1] if cut >= 0 else head
                # _size also counts bytes in flight: only take off what is dropped here
                self._size -= sum(len(c) for c in self._chunks) - len(head)
                self._answers = 0
                self._chunks.clear()
                if head:
                    self._chunks.append(head)
                self._cut_in_flight = self._state is _State.SENDING
            self._final = True
            self._chunks.append(data)
            self._size += len(data)

    def flush(self) -> None:
        """Send what is queued, unless another thread is already doing so."""
        with self._lock:
            if self._state is not _State.IDLE or not self._chunks:
                return
            self._state = _State.SENDING
        self._send_loop()

    def on_writable(self) -> None:
        """Called by the Flusher when the kernel has room again."""
        with self._lock:
            if self._state is not _State.BLOCKED:
                return
            self._state = _State.SENDING
        self._send_loop()

    def _wake_waiters(self) -> None:
        """Under ``_lock``. Waiting (close, drain) is rare; notifying costs a few
        microseconds per send, so only do it when someone waits."""
        if self._waiters:
            self._idle.notify_all()

    def _closed(self) -> bool:
        """Under ``_lock``. A call, not a test of ``_state`` in place: ``close()`` runs on
        other threads, so a state tested before a ``send`` says nothing after it."""
        return self._state is _State.CLOSED

    def write(self, data: bytes, *, answer: bool = False) -> bool:
        """``enqueue`` and ``flush`` in one step: the common case, nothing queued and
        nobody sending, costs one ``send`` and two lock round trips.

        False when closed or over the limit (then ``overflowed`` says which).
        """
        with self._lock:
            if self._state is not _State.IDLE or self._chunks or self._overflowed or self._final:
                return self._append(data, answer)
            self._state = _State.SENDING
            self._size += len(data)
            if answer:
                self._answers += len(data)
        if self._send_once(data, head_partial=False):
            self._send_loop()
        return True

    def _send_loop(self) -> None:
        # Only the thread that moved the state to SENDING runs this.
        while True:
            with self._lock:
                if self._closed() or not self._chunks:
                    if not self._closed():
                        self._state = _State.IDLE
                    self._partial_head = False
                    self._wake_waiters()
                    return
                data = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
                self._chunks.clear()
                head_partial, self._partial_head = self._partial_head, False
            if not self._send_once(data, head_partial):
                return

    def _send_once(self, data: bytes, head_partial: bool) -> bool:
        """One ``send`` by the thread holding the SENDING state.

        True to go on sending what others queued meanwhile; False when done:
        idle with nothing queued, blocked (handed to the Flusher), or failed.
        """
        try:
            sent = self._sock.send(data)
        except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            sent = 0
        except OSError as exc:
            log.debug("event=send_failed error=%s", exc)
            self._fail()
            return False
        with self._lock:
            self._size -= sent
            if self._answers:
                self._answers = max(0, self._answers - sent)
            rest = data[sent:]
            if self._cut_in_flight:
                self._cut_in_flight = False
                rest = self._rest_of_line(rest, data[sent - 1:sent] if sent else b"",
                                          head_partial)
            if not rest:
                if self._chunks and not self._closed():
                    return True
                if not self._closed():
                    self._state = _State.IDLE
                self._partial_head = False
                self._wake_waiters()
                return False
            self._chunks.appendleft(rest)
            self._partial_head = True
            if self._closed():  # close() ran during the send
                self._wake_waiters()
                return False
            self._state = _State.BLOCKED
        self._flusher.watch(self._sock.fileno(), self)
        return False

    def _rest_of_line(self, rest: bytes, last_sent: bytes, head_partial: bool) -> bytes:
        """What of an unsent ``rest`` must still go: the end of a line begun, nothing more."""
        begun = last_sent not in (b"", b"\n") or (not last_sent and head_partial)
        end = rest.find(b"\n")
        keep = (rest if end < 0 else rest[: end + 1]) if begun else b""
        self._size -= len(rest) - len(keep)
        return keep

    def _fail(self) -> None:
        with self._lock:
            self._state = _State.CLOSED
            self._chunks.clear()
            self._size = 0
            self._answers = 0
            self._wake_waiters()

    def wait_drained(self, timeout: float) -> bool:
        """Block until everything queued was handed to the kernel, or ``timeout``."""
        with self._lock:
            self._waiters += 1
            try:
                return self._idle.wait_for(
                    lambda: self._state is _State.CLOSED
                    or (self._state is _State.IDLE and not self._chunks),
                    timeout,
                )
            finally:
                self._waiters -= 1

    def close(self) -> None:
        """Refuse further output; returns once no thread is inside ``send``."""
        with self._lock:
            sending = self._state is _State.SENDING
            self._state = _State.CLOSED
            if sending:
                # the sender notices CLOSED after its send() and notifies
                self._waiters += 1
                try:
                    self._idle.wait(1.0)
                finally:
                    self._waiters -= 1
            self._chunks.clear()
            self._size = 0
            self._answers = 0


class Flusher:
    """The gateway's one writer thread: resumes sockets whose buffers were full.

    Registrations are one-shot (POLLOUT, removed once fired) and are made only
    by this thread, from requests handed over under a lock and a wake-up
    byte on a socketpair; so ``poll`` never races with a registration.
    """

    def __init__(self, name: str = "flusher") -> None:
        self._lock = threading.Lock()
        self._requests: list[tuple[int, Outbound]] = []
        self._waiting: dict[int, Outbound] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name)

    def start(self) -> None:
        self._thread.start()

    def watch(self, fd: int, outbound: Outbound) -> None:
        if fd < 0:
            return
        with self._lock:
            self._requests.append((fd, outbound))
        self._wake()

    def _wake(self) -> None:
        # BlockingIOError: a wake-up byte is already pending; OSError: we are closing
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def stop(self) -> None:
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
        self._wake()
        if self._thread.is_alive():
            self._thread.join(5)
        self._wake_r.close()
        self._wake_w.close()

    def _run(self) -> None:
        poller = select.poll()
        wake_fd = self._wake_r.fileno()
        poller.register(wake_fd, select.POLLIN)
        try:
            while True:
                for fd, event in poller.poll():
                    if fd == wake_fd:
                        self._drain_wake()
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

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass


__all__ = ["Flusher", "Outbound"]
