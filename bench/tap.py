"""Cheap reading of a gateway's byte stream: count lines, look at few of them.

Decoding a million frames a second in Python would make the bench the
bottleneck. ``LineTap`` instead counts newlines in each read (one C call)
and returns only the lines that contain one of a few marker byte strings
(acks carry a ``ref`` of ours, so ``"~A`` finds them). Markers are chosen
so that JSON escaping can never produce them inside another frame. Partial
lines are carried to the next read, capped like every buffer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from protocol.errors import FrameTooLarge
from protocol.limits import MAX_SERVER_LINE

NEWLINE = b"\n"


class Scan(NamedTuple):
    """What one read held: ``lines`` complete lines, the marked ones in ``picked``.

    ``buffer[:end]`` is the complete lines of the read (the carried tail
    included), for callers that search it further (latency stamps). A named
    tuple, not a dataclass: one is built per read, and this is the hot path.
    """

    lines: int
    picked: tuple[bytes, ...]
    buffer: bytes
    end: int


_EMPTY = Scan(0, (), b"", 0)


class LineTap:
    """Counts newline-terminated lines; picks out those carrying a marker."""

    __slots__ = ("_markers", "_max_line", "_tail")

    def __init__(self, markers: Sequence[bytes] = (), max_line: int = MAX_SERVER_LINE) -> None:
        if any(NEWLINE in m or not m for m in markers):
            raise ValueError("markers must be non-empty and hold no newline")
        self._markers = tuple(markers)
        self._max_line = max_line
        self._tail = b""

    @property
    def pending(self) -> int:
        """Bytes of a line begun but not finished."""
        return len(self._tail)

    def _join(self, data: bytes) -> bytes:
        return self._tail + data if self._tail else data

    def _keep(self, tail: bytes) -> None:
        if len(tail) >= self._max_line:
            raise FrameTooLarge(message=f"server line longer than {self._max_line} bytes")
        self._tail = tail

    def scan(self, data: bytes) -> Scan:
        """Count the complete lines ``data`` finishes; pick the marked ones."""
        buffer = self._tail + data if self._tail else data
        last = buffer.rfind(NEWLINE)
        if last < 0:
            self._keep(buffer)
            return _EMPTY
        if last + 1 < len(buffer):
            self._keep(buffer[last + 1 :])
        else:
            self._tail = b""
        lines = buffer.count(NEWLINE)
        for marker in self._markers:
            if marker in buffer:  # cheap test first: most reads hold no marker
                return Scan(lines, self._pick(buffer, last), buffer, last + 1)
        return Scan(lines, (), buffer, last + 1)

    def _pick(self, buffer: bytes, last: int) -> tuple[bytes, ...]:
        found: dict[int, bytes] | None = None
        for marker in self._markers:
            pos = buffer.find(marker, 0, last)
            while pos >= 0:
                start = buffer.rfind(NEWLINE, 0, pos) + 1
                end = buffer.find(NEWLINE, pos)
                if found is None:
                    found = {}
                found.setdefault(start, buffer[start:end])
                pos = buffer.find(marker, end + 1, last)
        if found is None:
            return ()
        return tuple(found[k] for k in sorted(found))

    def split(self, data: bytes) -> list[bytes]:
        """Every complete line ``data`` finishes, without newlines (for decoding)."""
        buffer = self._join(data)
        parts = buffer.split(NEWLINE)
        self._keep(parts.pop())
        return parts

    def unread(self, lines: Sequence[bytes]) -> None:
        """Put complete lines back in front of the stream, to be scanned next."""
        if lines:
            self._tail = NEWLINE.join(lines) + NEWLINE + self._tail
