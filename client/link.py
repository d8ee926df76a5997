"""One connection to one gateway: frames out under a write lock, frames in on one thread.

``login()`` opens a ``Link`` and runs the ``hello``/``welcome`` exchange;
whatever the gateway sent after ``welcome`` stays buffered in the link for
the reader thread. A ``Link`` never reconnects: ``ChatClient`` drops it and
logs in on a new one.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TypeVar

from client.errors import LoginRefused
from client.transport import Transport, open_transport
from protocol import frames as fr
from protocol.address import Address
from protocol.codec import LineReader, decode_server, encode
from protocol.errors import ConnectionLost, FrameTooLarge, ProtocolError
from protocol.limits import MAX_SERVER_LINE

T = TypeVar("T")

logger = logging.getLogger(__name__)


class Link:
    """A connected gateway. ``receive`` is for one reader thread; sending is thread-safe.

    Lock order: the write lock may be held while taking the client's state
    lock (``send_first``), never the other way round.
    """

    def __init__(self, transport: Transport, address: Address, index: int) -> None:
        self.address = address
        self.index = index  # position in the client's address list, to rotate from
        self._transport = transport
        self._lines: deque[bytes] = deque()  # received, not yet decoded (reader thread)
        self._reader = LineReader(MAX_SERVER_LINE)
        self._last_received = time.monotonic()  # reader thread only
        self._write_lock = threading.Lock()  # one writer at a time; guards _last_sent/_ping
        self._last_sent = time.monotonic()
        self._last_ping = 0.0

    # ------------------------------------------------------------------ output

    def send(self, *frames: fr.ClientFrame) -> bool:
        """Send ``frames`` in one write; False (and the link shut) if the connection failed."""
        return self.send_first(lambda: frames)

    def send_first(self, build: Callable[[], Sequence[fr.ClientFrame]]) -> bool:
        """Send what ``build()`` returns; ``build`` runs under the write lock.

        Whatever ``build`` records (pending requests, a newly adopted link) is
        therefore in the same order as the frames on the wire.
        """
        with self._write_lock:
            frames = build()
            if not frames:
                return True
            return self._write(b"".join(encode(frame) for frame in frames))

    def send_first_with(self, build: Callable[[], tuple[T, Sequence[fr.ClientFrame]]]) -> T:
        """``send_first`` for a ``build`` that also has a result: returns it (the frames
        sent or not; a failed write shows up as the connection's end)."""
        with self._write_lock:
            result, frames = build()
            if frames:
                self._write(b"".join(encode(frame) for frame in frames))
            return result

    def keep_alive(self, interval: float) -> None:
        """Ping when we sent nothing, or heard nothing, for ``interval`` s (reader thread).

        The first keeps the gateway from closing an idle connection; the
        second makes a live gateway answer, so that silence means it is gone,
        even while we send frames it does not answer (``typing``).
        """
        now = time.monotonic()
        with self._write_lock:
            idle = now - self._last_sent >= interval
            quiet = (now - self._last_received >= interval
                     and now - self._last_ping >= interval / 2)
            if (idle or quiet) and self._write(encode(fr.Ping())):
                self._last_ping = now

    def _write(self, data: bytes) -> bool:
        try:
            self._transport.sendall(data)
        except OSError as exc:
            logger.debug("write to %s failed: %s", self.address, exc)
            self.abort()  # the reader thread sees the end and reconnects
            return False
        self._last_sent = time.monotonic()
        return True

    # ------------------------------------------------------------------- input

    def receive(self) -> fr.ServerFrame | None:
        """The next frame, or None when the read timed out (a tick for pings).

        Raises ``ConnectionLost`` at end of stream, on a socket error, or for
        a line over 1 MiB. Lines that do not decode are logged and skipped.
        """
        while True:
            while self._lines:
                line = self._lines.popleft()
                try:
                    return decode_server(line)
                except ProtocolError as exc:
                    logger.warning("skipping a frame from %s: %s", self.address, exc.message)
            try:
                data = self._transport.recv()
            except TimeoutError:
                return None
            except OSError as exc:
                raise ConnectionLost(f"connection to {self.address} failed: {exc}") from exc
            if not data:
                raise ConnectionLost(f"{self.address} closed the connection")
            self._last_received = time.monotonic()
            try:
                self._lines.extend(self._reader.feed(data))
            except FrameTooLarge as exc:
                raise ConnectionLost(f"{self.address} sent a line over 1 MiB") from exc

    def silent_for(self) -> float:
        """Seconds since anything arrived (reader thread only)."""
        return time.monotonic() - self._last_received

    def settimeout(self, seconds: float) -> None:
        self._transport.settimeout(seconds)

    # ---------------------------------------------------------------- lifetime

    def finish_sending(self) -> None:
        """Half-close after the last frame (``bye``): the gateway sees it, then closes its side."""
        with self._write_lock:
            self._transport.shutdown_write()

    def abort(self) -> None:
        """Shut the connection from any thread; the reader's ``receive`` raises at once."""
        self._transport.shutdown()

    def close(self) -> None:
        """Release the socket (reader thread, once it stopped reading)."""
        self._transport.shutdown()
        self._transport.close()


def login(address: Address, index: int, hello: fr.Hello, timeout: float,
          tls_context: ssl.SSLContext | None = None) -> tuple[Link, fr.Welcome]:
    """Connect and log in within ``timeout`` seconds.

    Raises ``LoginRefused`` when the gateway answers ``hello`` with an error,
    ``ConnectionLost`` or ``OSError`` when it cannot be reached or says
    ``bye`` or nothing in time.
    """
    deadline = time.monotonic() + timeout
    link = Link(open_transport(address, timeout, tls_context), address, index)
    try:
        if not link.send(hello):
            raise ConnectionLost(f"{address} closed the connection before hello")
        while (remaining := deadline - time.monotonic()) > 0:
            link.settimeout(remaining)
            frame = link.receive()
            match frame:
                case fr.Welcome():
                    return link, frame
                case fr.Error(code=code, message=message):
                    raise LoginRefused(code, message)
                case fr.Bye(reason=reason):
                    raise ConnectionLost(f"{address} said bye ({reason}) before welcome")
                case None:
                    continue
                case _:
                    logger.debug("ignoring %s before welcome", type(frame).__name__)
        raise ConnectionLost(f"no welcome from {address} within {timeout:g} s")
    except BaseException:
        link.close()
        raise
