"""A protocol client for fuzzing: raw bytes out, frames in, never blocks unless asked.

Unlike ``tests.support.wire.WireClient`` it can send anything (broken
UTF-8, NULs, endless lines), tells a reset from a clean close, and can take
whatever has arrived without waiting (``poll``), so a fuzzer can watch
several sessions from one thread.
"""

from __future__ import annotations

import json
import select
import socket
import time
from typing import Any

from protocol.codec import LineReader
from protocol.limits import MAX_SERVER_LINE

Frame = dict[str, Any]


class RawClient:
    def __init__(self, address: tuple[str, int], timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(address, timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self._lines = LineReader(MAX_SERVER_LINE)
        self._frames: list[Frame] = []
        self.eof = False
        self.reset = False
        self.send_failed = False

    @property
    def closed(self) -> bool:
        """The gateway ended the connection (cleanly or with a reset)."""
        return self.eof or self.reset

    def send_bytes(self, data: bytes) -> None:
        """Send ``data``; a gateway that already hung up is noted, not raised."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            self.send_failed = True

    def send(self, **frame: Any) -> None:
        self.send_bytes(json.dumps(frame).encode() + b"\n")

    def _read(self, timeout: float) -> bool:
        """One read, waiting up to ``timeout``; False when nothing came (or closed)."""
        if self.closed:
            return False
        if not select.select([self.sock], [], [], max(0.0, timeout))[0]:
            return False
        try:
            data = self.sock.recv(1 << 16)
        except ConnectionResetError:
            self.reset = True
            return False
        if not data:
            self.eof = True
            return False
        for line in self._lines.feed(data):
            frame = json.loads(line)  # a gateway line that is not JSON fails the test here
            assert isinstance(frame, dict) and isinstance(frame.get("type"), str), line[:200]
            self._frames.append(frame)
        return True

    def poll(self) -> list[Frame]:
        """Every frame that has already arrived, without waiting."""
        while self._read(0):
            pass
        frames, self._frames = self._frames, []
        return frames

    def until(self, ref: str, timeout: float | None = None) -> tuple[list[Frame], Frame | None]:
        """Frames up to the first one carrying ``ref``; that frame (None if the line closed)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            for i, frame in enumerate(self._frames):
                if frame.get("ref") == ref:
                    before, self._frames = self._frames[:i], self._frames[i + 1:]
                    return before, frame
            remaining = deadline - time.monotonic()
            if self.closed:
                frames, self._frames = self._frames, []
                return frames, None
            if remaining <= 0:
                raise AssertionError(f"no answer with ref {ref!r}; have {self._frames[-5:]}")
            self._read(remaining)

    def until_closed(self, timeout: float | None = None) -> list[Frame]:
        """Every frame until the gateway closes the connection."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"the gateway did not close; have {self._frames[-5:]}")
            self._read(remaining)
        frames, self._frames = self._frames, []
        return frames

    def close(self) -> None:
        self.sock.close()
