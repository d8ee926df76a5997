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

What one client can make its gateway hold is ``limit`` plus one history
answer (the oldest one queued, which may pass the limit on its own) plus
the kernel's buffer. The queued bytes are a pure ``LineQueue``
(``gateway.front.linequeue``: offsets, coalescing, cutting to a line's end).
``stalled`` tells the owner when not one byte has reached the client for a while.

Lock order: callers may hold their session lock when calling ``enqueue``;
``Outbound._lock`` is innermost and is never held across a socket call.
"""

from __future__ import annotations

import enum
import fcntl
import logging
import socket
import ssl
import sys
import termios
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from gateway.front.linequeue import LineQueue

if TYPE_CHECKING:
    from gateway.front.flusher import Flusher

log = logging.getLogger(__name__)

def _kernel_queued(sock: socket.socket) -> int:
    """Bytes the kernel still holds for the peer (unsent or unacknowledged); -1 if unknown."""
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except (OSError, ValueError):
        return -1
    return int.from_bytes(raw, sys.byteorder, signed=True)


class _State(enum.Enum):
    IDLE = "idle"          # nothing in flight; the next flush() may send
    SENDING = "sending"    # one thread is in send(); others only enqueue
    BLOCKED = "blocked"    # the kernel buffer is full; the Flusher will resume
    CLOSED = "closed"


class Outbound:
    """Bytes waiting for one client's socket, at most ``limit`` of them besides one answer."""

    def __init__(self, sock: socket.socket, limit: int, flusher: Flusher,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._sock = sock
        self._limit = limit
        self._flusher = flusher
        self._clock = clock
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._waiters = 0
        self._queue = LineQueue()
        self._state = _State.IDLE
        self._overflowed = False
        self._final = False
        self._in_flight = False
        """A thread is inside ``send`` with a view of the head chunk."""
        self._cut_in_flight = False
        """``enqueue_final`` cut the queue while the head was in flight: once the send
        returns, keep only the rest of its half-sent line."""
        self._progress_at = clock()
        """When the client last took a byte, or this round of sending began if later;
        read by ``stalled`` (only while BLOCKED), so stamped when blocking (``_blocked``)."""
        self._resumed = False
        """This round of sending is the Flusher's resume and has not moved a byte yet."""
        self._kernel_bytes = -1

    @property
    def backlog(self) -> int:
        """Unsent bytes (a metric; read without the lock)."""
        return self._queue.size

    @property
    def overflowed(self) -> bool:
        """The limit was passed: the owner must end the session (not under its lock)."""
        return self._overflowed

    @property
    def answer_pending(self) -> bool:
        """Part of a history answer has not reached the kernel yet."""
        with self._lock:
            return self._queue.answer_pending

    def enqueue(self, data: bytes, *, answer: bool = False) -> bool:
        """Queue one or more whole lines; False when closed or over the limit.

        ``answer``: a history answer the client asked for (see ``enqueue_answer``).
        """
        with self._lock:
            return self._append((data,), answer)

    def enqueue_answer(self, lines: Sequence[bytes]) -> bool:
        """Queue one history answer, its lines together; False when closed or over the limit.

        The oldest answer in the queue may pass the limit on its own (1000 long
        messages outweigh 1 MiB), so a reader that keeps up is never taken for
        a slow consumer; every other byte counts, later answers included.
        """
        with self._lock:
            return self._append(lines, True)

    def _append(self, parts: Sequence[bytes], answer: bool) -> bool:
        """Under ``_lock``: queue behind what is there, within the limit."""
        if self._state is _State.CLOSED or self._overflowed or self._final:
            return False
        self._queue.push(parts, answer)
        if self._queue.counted <= self._limit:
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
            if self._overflowed or self._queue.size > self._limit:
                # the head in flight is trimmed once its send returns
                self._queue.cut(head_in_flight=self._in_flight)
                if self._in_flight:
                    self._cut_in_flight = True
            self._final = True
            self._queue.push((data,), False)
            self._wake_waiters()

    def flush(self) -> None:
        """Send what is queued, unless another thread is already doing so."""
        with self._lock:
            if self._state is not _State.IDLE or not self._queue:
                return
            self._state = _State.SENDING
            self._resumed = False
        self._send_loop()

    def on_writable(self) -> None:
        """Called by the Flusher when the kernel has room again."""
        with self._lock:
            if self._state is not _State.BLOCKED:
                return
            self._state = _State.SENDING
            self._resumed = True
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
        """``enqueue`` and ``flush`` in one step: the fan-out's path, once per delivery.

        The common case, nothing queued and nobody sending, costs one ``send``
        and two lock round trips: the line is queued and the write token taken
        under one, and the send goes straight out with ``data`` (the head just
        queued, so ``close``/``enqueue_final`` see it as in flight). No clock is
        read unless the socket blocks (``_blocked``). At 100,000 deliveries/s
        every microsecond here is a tenth of a core across the gateways.

        False when closed or over the limit (then ``overflowed`` says which).
        """
        if not data:
            return True
        with self._lock:
            if self._state is not _State.IDLE or self._queue or self._overflowed or self._final:
                return self._append((data,), answer)
            # nothing waits: the line goes to the kernel now, whatever its size
            self._queue.push_one(data, answer)
            self._state = _State.SENDING
            self._resumed = False
            self._in_flight = True
        if self._send_once(data):
            self._send_loop()
        return True

    def _send_loop(self) -> None:
        # Only the thread that moved the state to SENDING runs this.
        while True:
            with self._lock:
                if self._state is _State.CLOSED or not self._queue:
                    if self._state is not _State.CLOSED:
                        self._state = _State.IDLE
                    self._wake_waiters()
                    return
                data = self._queue.head()
                self._in_flight = True
            if not self._send_once(data):
                return

    def _send_once(self, data: bytes | memoryview) -> bool:
        """One ``send`` of the head (``data``, marked in flight) by the thread holding
        the SENDING state.

        True to go on sending; False when done: idle with nothing queued,
        blocked (handed to the Flusher), or failed.
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
            self._in_flight = False
            if self._state is _State.CLOSED:  # close() ran during the send, dropped everything
                self._wake_waiters()
                return False
            head_done = self._queue.consumed(sent)
            if self._cut_in_flight:
                self._cut_in_flight = False
                if not head_done:
                    self._queue.trim_head()
            if sent == len(data):
                if self._queue:
                    self._resumed = False  # bytes moved: a stall counts from now
                    self._wake_waiters()
                    return True
                self._state = _State.IDLE  # the common case: done without another lock trip
                self._wake_waiters()
                return False
            self._blocked(sent)
        self._flusher.watch(self._sock.fileno(), self)
        return False

    def _blocked(self, sent: int) -> None:
        """Under ``_lock``: the kernel took less than offered; wait for the Flusher.

        A stall is timed from the last byte the kernel took, or from when this
        round of sending began if later: both are now, within microseconds,
        unless the Flusher's resume sent nothing at all (then the old mark stays).
        """
        if sent or not self._resumed:
            self._progress_at = self._clock()
        if sent:
            self._wake_waiters()
        self._state = _State.BLOCKED

    def stalled(self, timeout: float) -> bool:
        """Output waits, the kernel's buffer is full, and not one byte has reached the
        client for ``timeout`` seconds (the kernel's queue for it has not moved)."""
        queued = _kernel_queued(self._sock)
        now = self._clock()
        with self._lock:
            if self._state is not _State.BLOCKED:
                return False
            if queued >= 0 and queued != self._kernel_bytes:
                self._kernel_bytes = queued
                self._progress_at = now
                return False
            return now - self._progress_at > timeout

    def wait_answers_sent(self, stall_s: float) -> bool:
        """Block until every queued answer has reached the kernel: True. False when the
        outbound is closed or ending, or when the client stalls for ``stall_s``."""
        while True:
            with self._lock:
                self._waiters += 1
                try:
                    self._idle.wait_for(
                        lambda: not self._queue.answer_pending or self._final or self._closed(),
                        min(1.0, stall_s))
                finally:
                    self._waiters -= 1
                if not self._queue.answer_pending:
                    return True
                if self._final or self._closed():
                    return False
            if self.stalled(stall_s):
                return False

    def _fail(self) -> None:
        with self._lock:
            self._in_flight = False
            self._state = _State.CLOSED
            self._queue.clear()
            self._wake_waiters()

    def wait_drained(self, timeout: float) -> bool:
        """Block until everything queued was handed to the kernel, or ``timeout``."""
        with self._lock:
            self._waiters += 1
            try:
                return self._idle.wait_for(
                    lambda: self._state is _State.CLOSED
                    or (self._state is _State.IDLE and not self._queue),
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
            self._queue.clear()


__all__ = ["Outbound"]
