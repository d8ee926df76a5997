"""Outbound and Flusher: bounded, non-blocking output to one client.

Real socketpairs throughout. Where a test needs the kernel to take exactly
part of a line, ``MeteredSocket`` lets through a set number of bytes and
otherwise says "would block"; its ``fileno`` is a gate socket whose buffer
the test fills and drains, so the Flusher sees "writable" exactly when the
test opens the gate (no busy loop, no timing).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any, cast

import pytest

from gateway.outbound import Flusher, Outbound
from tests.support.waiting import wait_for


@pytest.fixture
def flusher() -> Iterator[Flusher]:
    f = Flusher()
    f.start()
    try:
        yield f
    finally:
        f.stop()


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def line(i: int, size: int = 1000) -> bytes:
    head = f"{i:06d}:".encode()
    return head + b"x" * (size - len(head) - 1) + b"\n"


def read_lines(sock: socket.socket, until: bytes, timeout: float = 10.0) -> list[bytes]:
    """Read whole lines until one equals ``until`` (newline excluded)."""
    sock.settimeout(timeout)
    buf = b""
    lines: list[bytes] = []
    while until not in lines:
        data = sock.recv(1 << 16)
        assert data, f"closed before {until!r}; got {len(lines)} lines"
        buf += data
        *done, buf = buf.split(b"\n")
        lines.extend(done)
    assert buf == b""
    return lines


# ------------------------------------------------------------ real kernel buffers


def test_a_peer_that_does_not_read_builds_a_backlog_then_overflows(
        pair: tuple[socket.socket, socket.socket], flusher: Flusher) -> None:
    writer, _reader = pair
    out = Outbound(writer, 64 * 1024, flusher)
    i = 0
    saw_backlog = False
    while out.enqueue(line(i)):
        out.flush()  # the caller's duty after enqueue: never blocks
        saw_backlog = saw_backlog or out.backlog > 0
        assert not out.overflowed
        i += 1
        assert i < 100_000, "the kernel never filled up"
    assert saw_backlog  # the kernel filled up first, then our queue grew to the limit
    assert out.overflowed
    assert out.backlog > 64 * 1024
    assert not out.enqueue(line(i + 1))  # refused once overflowed
    out.close()


def test_backlog_below_the_limit_drains_when_the_peer_reads(
        pair: tuple[socket.socket, socket.socket], flusher: Flusher) -> None:
    writer, reader = pair
    out = Outbound(writer, 8 << 20, flusher)
    n = 0
    while out.backlog == 0:  # until the kernel buffer is full and we hold the rest
        assert out.enqueue(line(n))
        out.flush()
        n += 1
    for _ in range(20):
        assert out.enqueue(line(n))
        out.flush()
        n += 1
    assert out.backlog > 0
    lines = read_lines(reader, line(n - 1)[:-1])
    assert lines == [line(i)[:-1] for i in range(n)]
    assert out.wait_drained(5)
    assert out.backlog == 0
    assert not out.overflowed
    out.close()


def test_lines_flushed_from_two_threads_arrive_whole_and_each_in_its_order(
        pair: tuple[socket.socket, socket.socket], flusher: Flusher) -> None:
    writer, reader = pair
    out = Outbound(writer, 64 << 20, flusher)
    count = 3000
    received: list[bytes] = []
    reading = threading.Thread(
        target=lambda: received.extend(read_lines(reader, b"done", timeout=30)))
    reading.start()
    start = threading.Barrier(2)

    def produce(tag: bytes) -> None:
        start.wait()
        for i in range(count):
            out.enqueue(tag + b"%05d" % i + b"." * (i % 300) + b"\n")
            out.flush()

    producers = [threading.Thread(target=produce, args=(t,)) for t in (b"A", b"B")]
    for t in producers:
        t.start()
    for t in producers:
        t.join(30)
    out.enqueue(b"done\n")
    out.flush()
    reading.join(30)
    assert received[-1] == b"done"
    for tag in (b"A", b"B"):
        mine = [m for m in received if m.startswith(tag)]
        assert [int(m[1:6]) for m in mine] == list(range(count))
        assert all(m == tag + b"%05d" % i + b"." * (i % 300) for i, m in enumerate(mine))
    assert len(received) == 2 * count + 1
    assert out.wait_drained(5)
    out.close()


def test_a_closed_peer_fails_the_outbound_without_raising(
        pair: tuple[socket.socket, socket.socket], flusher: Flusher) -> None:
    writer, reader = pair
    out = Outbound(writer, 1 << 20, flusher)
    reader.close()
    for i in range(10):
        out.enqueue(line(i))
        out.flush()
    assert out.wait_drained(5)  # CLOSED counts as drained: nobody waits forever
    assert out.backlog == 0
    assert not out.enqueue(b"late\n")


# ------------------------------------------------------------ metered socket


class MeteredSocket:
    """Takes only ``allowance`` bytes, then would block until the test opens the gate."""

    def __init__(self, real: socket.socket) -> None:
        self.real = real
        self.allowance = 0
        self.in_send = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.gate_w, self.gate_r = socket.socketpair()
        self.gate_w.setblocking(False)
        self._close_gate()

    def _close_gate(self) -> None:
        """Fill the gate's buffer so polling its fd says 'not writable'."""
        try:
            while True:
                self.gate_w.send(b"\0" * 65536)
        except BlockingIOError:
            pass

    def open_gate(self) -> None:
        self.gate_r.setblocking(False)
        try:
            while self.gate_r.recv(1 << 20):
                pass
        except BlockingIOError:
            pass

    def fileno(self) -> int:
        return self.gate_w.fileno()

    def send(self, data: bytes) -> int:
        self.in_send.set()
        self.release.wait(10)
        n = min(len(data), self.allowance)
        if n == 0:
            raise BlockingIOError
        self.allowance -= n
        return self.real.send(data[:n])

    def close(self) -> None:
        self.gate_w.close()
        self.gate_r.close()


@pytest.fixture
def metered(pair: tuple[socket.socket, socket.socket]) -> Iterator[MeteredSocket]:
    sock = MeteredSocket(pair[0])
    try:
        yield sock
    finally:
        sock.close()


def test_bye_after_an_overflow_follows_the_half_sent_line(
        pair: tuple[socket.socket, socket.socket], metered: MeteredSocket,
        flusher: Flusher) -> None:
    _, reader = pair
    out = Outbound(cast(Any, metered), 5000, flusher)
    metered.allowance = 1500  # line 0 and half of line 1
    for i in range(4):
        assert out.enqueue(line(i))
    out.flush()
    assert out.backlog == 4000 - 1500
    for i in range(4, 10):
        out.enqueue(line(i))
    out.flush()
    assert out.overflowed
    out.enqueue_final(b"bye\n")
    assert out.backlog == 500 + 4  # the rest of line 1, then bye; whole lines dropped
    metered.allowance = 1 << 30
    metered.open_gate()
    assert read_lines(reader, b"bye") == [line(0)[:-1], line(1)[:-1], b"bye"]
    assert out.wait_drained(5)
    assert out.backlog == 0
    out.close()


def test_bye_without_an_overflow_goes_after_everything_queued(
        pair: tuple[socket.socket, socket.socket], metered: MeteredSocket,
        flusher: Flusher) -> None:
    _, reader = pair
    out = Outbound(cast(Any, metered), 1 << 20, flusher)
    metered.allowance = 1500
    for i in range(4):
        out.enqueue(line(i))
    out.flush()
    out.enqueue_final(b"bye\n")
    metered.allowance = 1 << 30
    metered.open_gate()
    assert read_lines(reader, b"bye") == [line(i)[:-1] for i in range(4)] + [b"bye"]
    assert out.wait_drained(5)
    assert out.backlog == 0
    out.close()


def test_bye_queued_while_another_thread_is_in_send_still_cuts_after_the_half_line(
        pair: tuple[socket.socket, socket.socket], metered: MeteredSocket,
        flusher: Flusher) -> None:
    """The overflow happens while a flush is inside ``send``: what it was sending is
    in flight, not queued; only its half line may go before ``bye``."""
    _, reader = pair
    out = Outbound(cast(Any, metered), 5000, flusher)
    for i in range(4):
        assert out.enqueue(line(i))
    metered.release.clear()
    metered.allowance = 1500
    sender = threading.Thread(target=out.flush)
    sender.start()
    assert metered.in_send.wait(5)
    for i in range(4, 10):
        out.enqueue(line(i))
    out.flush()  # the other thread holds the write token: nothing to do here
    assert out.overflowed
    out.enqueue_final(b"bye\n")
    metered.release.set()
    sender.join(5)
    metered.allowance = 1 << 30
    metered.open_gate()
    assert read_lines(reader, b"bye") == [line(0)[:-1], line(1)[:-1], b"bye"]
    assert out.wait_drained(5)
    assert out.backlog == 0
    out.close()


def test_close_while_blocked_drops_the_rest_and_refuses_more(
        pair: tuple[socket.socket, socket.socket], metered: MeteredSocket,
        flusher: Flusher) -> None:
    out = Outbound(cast(Any, metered), 1 << 20, flusher)
    metered.allowance = 10
    out.enqueue(line(0))
    out.flush()
    assert out.backlog == 990
    out.close()
    assert out.backlog == 0
    assert not out.enqueue(line(1))
    metered.open_gate()  # the Flusher's one-shot watch fires on a closed outbound: a no-op
    wait_for(lambda: out.wait_drained(0), 5, what="closed outbound counts as drained")


def test_a_history_answer_larger_than_the_limit_does_not_make_a_slow_consumer(
        pair: tuple[socket.socket, socket.socket], flusher: Flusher) -> None:
    """1000 long messages outweigh the backlog limit; a reader that keeps up is not cut."""
    a, b = pair
    out = Outbound(a, 8000, flusher)
    # Fill the kernel's buffer so everything after it waits in the queue.
    while out.write(line(0, 4000)) and out.backlog == 0:
        pass
    filler = out.backlog
    answer = b"".join(line(i) for i in range(1, 31))  # 30 KB, almost 4x the limit
    assert out.enqueue(answer, answer=True)
    assert out.write(line(99, 500))  # a live line behind it still fits
    assert not out.overflowed
    lines = read_lines(b, b"000099:" + b"x" * 492)
    assert [ln[:6] for ln in lines if not ln.startswith(b"000000")] == [
        f"{i:06d}".encode() for i in (*range(1, 31), 99)]
    wait_for(lambda: out.backlog == 0, what="the queue to drain")
    assert filler > 0


def test_plain_output_past_the_limit_still_overflows(
        pair: tuple[socket.socket, socket.socket], flusher: Flusher) -> None:
    a, _ = pair
    out = Outbound(a, 8000, flusher)
    while out.write(line(0, 4000)) and out.backlog == 0:
        pass
    assert not out.enqueue(b"".join(line(i) for i in range(1, 31)))
    assert out.overflowed


# ------------------------------------------------------------ one budget, no copies


def test_only_the_oldest_answer_may_pass_the_limit_a_second_one_counts(
        pair: tuple[socket.socket, socket.socket], flusher: Flusher) -> None:
    """What a client can make us hold: the limit plus one answer, not one answer per request."""
    a, _ = pair
    out = Outbound(a, 8000, flusher)
    while out.write(line(0, 4000)) and out.backlog == 0:
        pass
    assert out.enqueue_answer([line(i) for i in range(1, 31)])  # 30 KB: the one exempt
    assert out.answer_pending
    assert not out.enqueue_answer([line(i) for i in range(31, 61)])
    assert out.overflowed


class RecordingSocket(MeteredSocket):
    """A metered socket that keeps every buffer ``send`` was given."""

    def __init__(self, real: socket.socket) -> None:
        super().__init__(real)
        self.given: list[Any] = []

    def send(self, data: bytes) -> int:
        self.given.append(data)
        return super().send(data)


def test_a_partial_send_resumes_from_a_view_of_the_queued_line_never_a_copy(
        pair: tuple[socket.socket, socket.socket], flusher: Flusher) -> None:
    writer, reader = pair
    sock = RecordingSocket(writer)
    try:
        out = Outbound(cast(Any, sock), 1 << 20, flusher)
        big = line(1, 100_000)
        sock.allowance = 10_000
        assert out.enqueue(big)
        out.flush()
        for _ in range(3):
            sock.allowance = 10_000
            out.on_writable()  # as the Flusher would once the kernel has room
        assert out.backlog == 60_000
        resumed = sock.given[1:]
        assert resumed and all(isinstance(g, memoryview) and g.obj is big for g in resumed)
        sock.allowance = 1 << 30
        sock.open_gate()
        assert read_lines(reader, big[:-1]) == [big[:-1]]
        out.close()
    finally:
        sock.close()


def test_a_long_queue_is_never_joined_into_one_buffer(
        pair: tuple[socket.socket, socket.socket], flusher: Flusher) -> None:
    writer, reader = pair
    sock = RecordingSocket(writer)
    try:
        out = Outbound(cast(Any, sock), 1 << 20, flusher)
        sock.allowance = 1500
        for i in range(300):
            assert out.enqueue(line(i))
        out.flush()
        sock.allowance = 1 << 30
        sock.open_gate()
        got = read_lines(reader, line(299)[:-1])
        assert got == [line(i)[:-1] for i in range(300)]
        assert max(len(g) for g in sock.given) <= 64 * 1024  # not 300 KB at once
        out.close()
    finally:
        sock.close()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_stalled_once_no_byte_reaches_a_client_that_does_not_read(
        pair: tuple[socket.socket, socket.socket], flusher: Flusher) -> None:
    a, b = pair
    clock = Clock()
    out = Outbound(a, 1 << 20, flusher, clock=clock)
    assert not out.stalled(5.0)  # nothing waits
    while out.write(line(0, 4000)) and out.backlog == 0:
        pass
    assert not out.stalled(5.0)
    clock.now += 6.0
    assert out.stalled(5.0)
    b.settimeout(5)
    got = 0
    while got < 100_000:  # the client reads: progress (ours or the kernel's), not a stall
        got += len(b.recv(1 << 16))
    assert not out.stalled(5.0)
    clock.now += 4.0
    assert not out.stalled(5.0)
