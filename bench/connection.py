"""One client connection of the load generator, on asyncio.

A connection starts in *decode* mode: every line becomes a typed frame
(login, history, markers), which is cheap because there are few. For the
measured part it switches to *count* mode: each read costs one newline count,
a search for the marker of the frames it must see (acks, pongs, byes), and,
when latency is wanted, a regex over the read for send stamps. Subclasses
react to frames through ``frame_received`` and to whole reads through
``read_done`` (where a sender refills its window with one write).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from array import array
from collections.abc import Callable, Sequence
from typing import TypeVar

from bench.options import Address
from bench.tap import LineTap
from bench.wire import ACK_MARK, STAMP, STAMP_SEQ
from protocol.codec import decode_server
from protocol.errors import ChatError, ConnectionLost, ProtocolError
from protocol.frames import Error, Goodbye, Message, ServerFrame, Welcome

log = logging.getLogger(__name__)

BYE_MARK = b'"bye"'
ERROR_MARK = b'"error"'
DEFAULT_MARKERS: tuple[bytes, ...] = (ACK_MARK, ERROR_MARK, BYE_MARK)
"""What a sender must see while counting: answers to its sends, and goodbyes."""
RECEIVER_MARKERS: tuple[bytes, ...] = (BYE_MARK, b'"left"', b'"joined"')
"""A receiver must see why it was disconnected, and membership changes (not messages)."""


class LoginFailed(ChatError):
    """The gateway refused a ``hello`` or closed before ``welcome``."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.reason = reason


FramePredicate = Callable[[ServerFrame], bool]


class BenchConnection(asyncio.Protocol):
    """A client connection that decodes while setting up and counts while measuring."""

    def __init__(self, name: str, markers: Sequence[bytes] = DEFAULT_MARKERS) -> None:
        self.name = name
        self._tap = LineTap(markers)
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._decoding = True
        self._count_after: str | None = None
        self._counting: asyncio.Future[None] = self._loop.create_future()
        self._waiters: list[tuple[FramePredicate, asyncio.Future[ServerFrame]]] = []
        self.closed: asyncio.Future[str] = self._loop.create_future()
        self.lines = 0
        """Lines received in count mode."""
        self.control_lines = 0
        """Of those, picked lines that were not room messages (acks, joined, left, ...)."""
        self.rx_bytes = 0
        self.last_rx_ns = 0
        self.stamps: array[int] | None = None
        """When set, count mode appends receipt-minus-stamp (ns) of every timed message."""
        self.stamp_floor = 0
        """Stamps older than this (warm-up) are not recorded."""
        self.seqs: array[int] | None = None
        """When set (with ``stamps``), count mode also appends the sequence number of every
        numbered message (``~T<ns>~<seq>~``), for exact accounting."""
        self.welcome: Welcome | None = None
        self.bye: Goodbye | None = None
        self._after_read = type(self).read_done is not BenchConnection.read_done

    # ------------------------------------------------------------------ asyncio

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        # The hot path of the whole bench: a receiver calls this once per read.
        now = time.monotonic_ns()
        self.rx_bytes += len(data)
        self.last_rx_ns = now
        try:
            if self._decoding:
                if not self._decode(self._tap.split(data), now):
                    self.read_done()
                    return
                data = b""  # the rest of this read was put back into the tap
            lines, picked, buffer, end = self._tap.scan(data)
        except ProtocolError as exc:
            log.warning("%s: unreadable stream from the gateway: %s", self.name, exc)
            self.abort()
            return
        if lines:
            self.lines += lines
            for line in picked:
                if not isinstance(self._decode_one(line, now), Message):
                    self.control_lines += 1
            stamps = self.stamps
            if stamps is not None:
                floor = self.stamp_floor
                seqs = self.seqs
                if seqs is None:
                    for digits in STAMP.findall(buffer, 0, end):
                        sent = int(digits)
                        if sent >= floor:
                            stamps.append(now - sent)
                else:
                    for digits, seq in STAMP_SEQ.findall(buffer, 0, end):
                        seqs.append(int(seq))
                        sent = int(digits)
                        if sent >= floor:
                            stamps.append(now - sent)
        if self._after_read:
            self.read_done()

    def eof_received(self) -> bool | None:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        reason = "closed" if exc is None else f"lost: {exc}"
        if self.bye is not None:
            reason = f"bye/{self.bye.reason.value}"
        if not self.closed.done():
            self.closed.set_result(reason)
        for _, waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(ConnectionLost(f"{self.name}: {reason}"))
        self._waiters.clear()
        if not self._counting.done():
            self._counting.set_exception(ConnectionLost(f"{self.name}: {reason}"))
            self._counting.exception()  # retrieved: nobody may be waiting any more

    # ------------------------------------------------------------------ decoding

    def _decode(self, lines: list[bytes], now: int) -> bool:
        """Decode lines; True when a marker switched to count mode (the rest is unread)."""
        for index, line in enumerate(lines):
            frame = self._decode_one(line, now)
            if (
                self._count_after is not None
                and isinstance(frame, Message)
                and frame.text == self._count_after
            ):
                self._decoding = False
                self._count_after = None
                self._tap.unread(lines[index + 1 :])
                self._counting.set_result(None)
                return True
        return False

    def _decode_one(self, line: bytes, now: int) -> ServerFrame | None:
        try:
            frame = decode_server(line)
        except ProtocolError as exc:
            log.warning("%s: undecodable frame %r: %s", self.name, line[:200], exc)
            return None
        if isinstance(frame, Goodbye):
            self.bye = frame
        for index, (predicate, waiter) in enumerate(self._waiters):
            if not waiter.done() and predicate(frame):
                del self._waiters[index]
                waiter.set_result(frame)
                break
        self.frame_received(frame, now)
        return frame

    # ------------------------------------------------------------------ hooks

    def frame_received(self, frame: ServerFrame, now_ns: int) -> None:
        """A decoded frame (every frame while decoding; marked ones while counting)."""

    def read_done(self) -> None:
        """One read has been handled."""

    # ------------------------------------------------------------------ API

    @property
    def messages(self) -> int:
        """Room messages received in count mode: lines that were not control frames."""
        return self.lines - self.control_lines

    @property
    def is_open(self) -> bool:
        return self._transport is not None and not self.closed.done()

    def write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def expect(self, predicate: FramePredicate) -> asyncio.Future[ServerFrame]:
        """A future for the next frame matching ``predicate`` (decoded or picked)."""
        waiter: asyncio.Future[ServerFrame] = self._loop.create_future()
        if self.closed.done():
            waiter.set_exception(ConnectionLost(f"{self.name}: {self.closed.result()}"))
        else:
            self._waiters.append((predicate, waiter))
        return waiter

    async def login(self, hello_line: bytes, timeout: float) -> Welcome:
        """Send ``hello``; return the ``welcome`` or raise ``LoginFailed``."""
        answer = self.expect(lambda f: isinstance(f, Welcome | Error | Goodbye))
        self.write(hello_line)
        try:
            frame = await asyncio.wait_for(answer, timeout)
        except TimeoutError:
            raise LoginFailed(self.name, f"no welcome within {timeout:g} s") from None
        except ConnectionLost as exc:
            raise LoginFailed(self.name, str(exc)) from None
        if isinstance(frame, Error):
            raise LoginFailed(self.name, f"{frame.code.value}: {frame.message}")
        if isinstance(frame, Goodbye):
            raise LoginFailed(self.name, f"bye/{frame.reason.value}")
        assert isinstance(frame, Welcome)
        self.welcome = frame
        return frame

    def count_after(self, text: str) -> asyncio.Future[None]:
        """Switch to count mode right after the message whose text is ``text``."""
        self._count_after = text
        return self._counting

    def count_now(self) -> None:
        """Switch to count mode at once (no marker)."""
        if self._decoding:
            self._decoding = False
            self._count_after = None
            self._counting.set_result(None)

    def pause_reading(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()


C = TypeVar("C", bound=BenchConnection)


async def connect(
    factory: Callable[[], C], address: Address, timeout: float, rcvbuf: int | None = None,
) -> C:
    """Open a TCP connection to a gateway with ``factory``'s protocol.

    ``rcvbuf`` shrinks the kernel receive buffer (a slow consumer must fill
    the gateway's buffer, not ours).
    """
    loop = asyncio.get_running_loop()
    if rcvbuf is None:
        _, proto = await asyncio.wait_for(
            loop.create_connection(factory, address.host, address.port), timeout
        )
        return proto
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.wait_for(loop.sock_connect(sock, (address.host, address.port)), timeout)
        _, proto = await loop.create_connection(factory, sock=sock)
    except BaseException:
        sock.close()
        raise
    return proto
