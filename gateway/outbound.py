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
the kernel's buffer. Bytes leave from an offset into the queued line (a
partial send copies nothing) and small lines are joined at most
``_COALESCE`` bytes at a time, never the whole queue. ``stalled`` tells the
owner when not one byte has reached the client for a while.

Lock order: callers may hold their session lock when calling ``enqueue``;
``Outbound._lock`` is innermost and is never held across a socket call.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import logging
import select
import socket
import ssl
import sys
import termios
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)

_COALESCE = 64 * 1024
"""Small queued lines are joined into one ``send`` up to this many bytes."""


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
        self._chunks: deque[tuple[bytes, bool]] = deque()
        """(bytes, is part of an answer); the head may be partly sent."""
        self._offset = 0
        """Bytes of the head chunk already sent."""
        self._size = 0
        """Unsent bytes, in flight included."""
        self._answers: deque[int] = deque()
        """Unsent bytes of each queued answer, oldest first."""
        self._state = _State.IDLE
        self._overflowed = False
        self._final = False
        self._in_flight = False
        """A thread is inside ``send`` with a view of the head chunk."""
        self._cut_in_flight = False
        """``enqueue_final`` cut the queue while the head was in flight: once the send
        returns, keep only the rest of its half-sent line."""
        self._progress_at = clock()
        self._kernel_bytes = -1

    @property
    def backlog(self) -> int:
        """Unsent bytes (a metric; read without the lock)."""
        return self._size

    @property
    def overflowed(self) -> bool:
        """The limit was passed: the owner must end the session (not under its lock)."""
        return self._overflowed

    @property
    def answer_pending(self) -> bool:
        """Part of a history answer has not reached the kernel yet."""
        with self._lock:
            return bool(self._answers)

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
        size = 0
        for data in parts:
            if data:
                self._chunks.append((data, answer))
                size += len(data)
        self._size += size
        if answer and size:
            self._answers.append(size)
        if self._size - (self._answers[0] if self._answers else 0) <= self._limit:
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
                self._answers.clear()
                if self._in_flight:
                    # the head is in flight: drop what follows, trim it once the send returns
                    while len(self._chunks) > 1:
                        self._chunks.pop()
                    self._size = len(self._chunks[0][0]) - self._offset
                    self._cut_in_flight = True
                else:
                    self._keep_rest_of_line()
            self._final = True
            self._chunks.append((data, False))
            self._size += len(data)
            self._wake_waiters()

    def _keep_rest_of_line(self) -> None:
        """Under ``_lock``, the head not in flight: drop every unsent whole line and keep
        only the end of a line already begun."""
        keep = b""
        if self._chunks and self._offset:
            head = self._chunks[0][0]
            if head[self._offset - 1] != 0x0A:
                end = head.find(b"\n", self._offset)
                keep = head[self._offset: end + 1 if end >= 0 else len(head)]
        self._chunks.clear()
        self._offset = 0
        if keep:
            self._chunks.append((keep, False))
        self._size = len(keep)

    def flush(self) -> None:
        """Send what is queued, unless another thread is already doing so."""
        with self._lock:
            if self._state is not _State.IDLE or not self._chunks:
                return
            self._state = _State.SENDING
            self._progress_at = self._clock()
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
        if not data:
            return True
        with self._lock:
            if self._state is not _State.IDLE or self._chunks or self._overflowed or self._final:
                return self._append((data,), answer)
            # nothing waits: the line goes to the kernel now, whatever its size
            self._chunks.append((data, answer))
            self._size += len(data)
            if answer:
                self._answers.append(len(data))
            self._state = _State.SENDING
            self._progress_at = self._clock()
        self._send_loop()
        return True

    def _head(self) -> bytes | memoryview:
        """Under ``_lock``: what to send next. A view from the offset into the head
        (no copy); a head never sent is first joined with the small lines behind
        it, up to ``_COALESCE`` bytes, so each byte is copied once at most."""
        head, answer = self._chunks[0]
        if self._offset:
            return memoryview(head)[self._offset:]
        if len(head) >= _COALESCE or len(self._chunks) < 2 or self._chunks[1][1] != answer:
            return head
        parts: list[bytes] = []
        total = 0
        while (self._chunks and self._chunks[0][1] == answer
               and (not parts or total + len(self._chunks[0][0]) <= _COALESCE)):
            part = self._chunks.popleft()[0]
            parts.append(part)
            total += len(part)
        joined = b"".join(parts)
        self._chunks.appendleft((joined, answer))
        return joined

    def _send_loop(self) -> None:
        # Only the thread that moved the state to SENDING runs this.
        while True:
            with self._lock:
                if self._closed() or not self._chunks:
                    if not self._closed():
                        self._state = _State.IDLE
                    self._wake_waiters()
                    return
                data = self._head()
                self._in_flight = True
            if not self._send_once(data):
                return

    def _send_once(self, data: bytes | memoryview) -> bool:
        """One ``send`` of the head by the thread holding the SENDING state.

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
            if self._closed():  # close() ran during the send and dropped everything
                self._wake_waiters()
                return False
            head_done = self._consumed(sent)
            if self._cut_in_flight:
                self._cut_in_flight = False
                if not head_done:
                    self._trim_head()
            if sent == len(data):
                return True
            self._state = _State.BLOCKED
        self._flusher.watch(self._sock.fileno(), self)
        return False

    def _consumed(self, sent: int) -> bool:
        """Under ``_lock``: ``sent`` bytes of the head left. True when the head is done."""
        if not sent:
            return False
        self._progress_at = self._clock()
        self._size -= sent
        head, answer = self._chunks[0]
        if answer:
            left = sent
            while left and self._answers:
                taken = min(left, self._answers[0])
                self._answers[0] -= taken
                left -= taken
                if not self._answers[0]:
                    self._answers.popleft()
        self._offset += sent
        self._wake_waiters()
        if self._offset < len(head):
            return False
        self._chunks.popleft()
        self._offset = 0
        return True

    def _trim_head(self) -> None:
        """Under ``_lock``, after a send during which the queue was cut: of the head,
        keep only the end of a line already begun (``bye`` is queued behind it)."""
        head = self._chunks[0][0]
        keep = b""
        if self._offset and head[self._offset - 1] != 0x0A:
            end = head.find(b"\n", self._offset)
            keep = head[self._offset: end + 1 if end >= 0 else len(head)]
        self._size -= len(head) - self._offset - len(keep)
        self._chunks.popleft()
        self._offset = 0
        if keep:
            self._chunks.appendleft((keep, False))

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
                        lambda: not self._answers or self._final or self._closed(),
                        min(1.0, stall_s))
                finally:
                    self._waiters -= 1
                if not self._answers:
                    return True
                if self._final or self._closed():
                    return False
            if self.stalled(stall_s):
                return False

    def _fail(self) -> None:
        with self._lock:
            self._in_flight = False
            self._state = _State.CLOSED
            self._drop_all()
            self._wake_waiters()

    def _drop_all(self) -> None:
        self._chunks.clear()
        self._offset = 0
        self._size = 0
        self._answers.clear()

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
            self._drop_all()


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
