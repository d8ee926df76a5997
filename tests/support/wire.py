"""A raw protocol client for tests: real TCP, frames as dicts, no client library.

Gateway tests drive the protocol exactly as an outside tool would, so they
prove the wire format, not our own client's view of it.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from typing import Any

from protocol.address import Address
from protocol.codec import LineReader
from protocol.limits import MAX_SERVER_LINE


class WireClient:
    def __init__(self, address: tuple[str, int] | Address, timeout: float = 10.0) -> None:
        if isinstance(address, Address):
            address = (address.host, address.port)
        self.sock = socket.create_connection(address, timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self._reader = LineReader(MAX_SERVER_LINE)
        self._frames: list[dict[str, Any]] = []
        self.closed = False

    # sending ------------------------------------------------------------

    def send(self, **frame: Any) -> None:
        self.send_raw(json.dumps(frame).encode() + b"\n")

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def hello(self, name: str, **extra: Any) -> dict[str, Any]:
        """Log in; returns the welcome frame (fails on an error frame)."""
        self.send(type="hello", name=name, **extra)
        frame = self.recv()
        assert frame["type"] == "welcome", frame
        return frame

    # receiving ----------------------------------------------------------

    def _fill(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(1 << 16)
        except TimeoutError:
            return False
        if not data:
            self.closed = True
            return False
        self._frames.extend(json.loads(line) for line in self._reader.feed(data))
        return True

    def recv(self, timeout: float | None = None) -> dict[str, Any]:
        """The next frame; AssertionError if none comes in time."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self._frames:
            if not self._fill(deadline) and (self.closed or time.monotonic() >= deadline):
                raise AssertionError(
                    "no frame arrived" + (" (connection closed)" if self.closed else ""))
        return self._frames.pop(0)

    def recv_type(self, kind: str, timeout: float | None = None, **match: Any) -> dict[str, Any]:
        """The next frame of ``kind`` (matching ``match``), skipping others."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            for i, frame in enumerate(self._frames):
                if frame["type"] == kind and all(frame.get(k) == v for k, v in match.items()):
                    del self._frames[i]
                    return frame
            if not self._fill(deadline) and (self.closed or time.monotonic() >= deadline):
                raise AssertionError(f"no {kind} frame {match} arrived; have {self._frames}")

    def drain(self, quiet: float = 0.2) -> list[dict[str, Any]]:
        """Everything that arrives until the line is quiet for ``quiet`` seconds."""
        while self._fill(time.monotonic() + quiet):
            pass
        frames, self._frames = self._frames, []
        return frames

    def wait_closed(self, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Read until the server closes; returns the frames that came before."""
        deadline = time.monotonic() + timeout
        while not self.closed:
            if not self._fill(deadline) and not self.closed and time.monotonic() >= deadline:
                raise AssertionError("the server did not close the connection")
        frames, self._frames = self._frames, []
        return frames

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
