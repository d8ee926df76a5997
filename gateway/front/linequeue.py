"""The bytes one client has not been sent yet: a pure queue of encoded lines.

``Outbound`` owns one and calls it under its own lock; it does no I/O and
takes no lock. It keeps what the limit counts (unsent bytes, the oldest
history answer apart), where the head was half sent, and how to cut the
queue down to the end of a line already begun, so that a last line
(``bye``) behind it still reaches the client as a well-formed stream.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

COALESCE = 64 * 1024
"""Small queued lines are joined into one ``send`` up to this many bytes."""


def _rest_of_line(head: bytes, offset: int) -> bytes:
    """Of ``head`` sent up to ``offset``, the end of the line that send began (empty when
    it stopped between lines)."""
    if not offset or head[offset - 1] == 0x0A:
        return b""
    end = head.find(b"\n", offset)
    return head[offset: end + 1 if end >= 0 else len(head)]


class LineQueue:
    """Encoded lines in order, each marked as part of a history answer or not."""

    __slots__ = ("_answers", "_chunks", "_offset", "size")

    def __init__(self) -> None:
        self._chunks: deque[tuple[bytes, bool]] = deque()
        """(bytes, is part of an answer); the head may be partly sent."""
        self._offset = 0
        """Bytes of the head chunk already sent."""
        self.size = 0
        """Unsent bytes, in flight included."""
        self._answers: deque[int] = deque()
        """Unsent bytes of each queued answer, oldest first."""

    def __bool__(self) -> bool:
        return bool(self._chunks)

    @property
    def answer_pending(self) -> bool:
        """Part of a history answer is still queued."""
        return bool(self._answers)

    @property
    def counted(self) -> int:
        """Unsent bytes as the limit counts them: all but the oldest queued answer."""
        return self.size - (self._answers[0] if self._answers else 0)

    def push(self, parts: Sequence[bytes], answer: bool) -> None:
        """Queue ``parts`` (whole lines) behind what is there; empty parts are skipped."""
        size = 0
        for data in parts:
            if data:
                self._chunks.append((data, answer))
                size += len(data)
        self.size += size
        if answer and size:
            self._answers.append(size)

    def push_one(self, data: bytes, answer: bool) -> None:
        """``push`` of one non-empty line or run of lines (the fan-out's path: no loop)."""
        self._chunks.append((data, answer))
        self.size += len(data)
        if answer:
            self._answers.append(len(data))

    def cut(self, head_in_flight: bool) -> None:
        """Drop every unsent whole line (answers no longer count apart).

        With the head in flight, only what follows it goes now; ``trim_head``
        finishes the cut once its send returns. Otherwise only the end of a
        line already begun is kept.
        """
        self._answers.clear()
        if head_in_flight:
            while len(self._chunks) > 1:
                self._chunks.pop()
            self.size = len(self._chunks[0][0]) - self._offset
            return
        keep = _rest_of_line(self._chunks[0][0], self._offset) if self._chunks else b""
        self._chunks.clear()
        self._offset = 0
        if keep:
            self._chunks.append((keep, False))
        self.size = len(keep)

    def head(self) -> bytes | memoryview:
        """What to send next. A view from the offset into the head (no copy); a
        head never sent is first joined with the small lines behind it, up to
        ``COALESCE`` bytes, so each byte is copied once at most."""
        head, answer = self._chunks[0]
        if self._offset:
            return memoryview(head)[self._offset:]
        if len(head) >= COALESCE or len(self._chunks) < 2 or self._chunks[1][1] != answer:
            return head
        parts: list[bytes] = []
        total = 0
        while (self._chunks and self._chunks[0][1] == answer
               and (not parts or total + len(self._chunks[0][0]) <= COALESCE)):
            part = self._chunks.popleft()[0]
            parts.append(part)
            total += len(part)
        joined = b"".join(parts)
        self._chunks.appendleft((joined, answer))
        return joined

    def consumed(self, sent: int) -> bool:
        """``sent`` bytes of the head left. True when the head is done."""
        if not sent:
            return False
        self.size -= sent
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
        if self._offset < len(head):
            return False
        self._chunks.popleft()
        self._offset = 0
        return True

    def trim_head(self) -> None:
        """After a send during which the queue was cut (``cut(head_in_flight=True)``):
        of the head, keep only the end of a line already begun."""
        head = self._chunks[0][0]
        keep = _rest_of_line(head, self._offset)
        self.size -= len(head) - self._offset - len(keep)
        self._chunks.popleft()
        self._offset = 0
        if keep:
            self._chunks.appendleft((keep, False))

    def clear(self) -> None:
        self._chunks.clear()
        self._offset = 0
        self.size = 0
        self._answers.clear()


__all__ = ["COALESCE", "LineQueue"]
