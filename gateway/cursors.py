"""Where a session stands in a room or a conversation, and the one rule that moves it.

Room cursors (``gateway.session``) and conversation cursors
(``gateway.dm_cursors``) are the same object moved by the same ``advance``:
delivery is exactly-once and in id order for both. A cursor is guarded by
its session's ``_lock``; nothing here locks or does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class RoomCursor:
    """Where one session stands in one room."""

    epoch: str = ""
    last_id: int = 0
    live: bool = False
    pending: list[tuple[str, int, bytes]] = field(default_factory=list)
    """(epoch, id, line) held until the history is out; id 0 marks an event."""
    typing_at: float = float("-inf")
    leaving_line: bytes | None = None
    """Our own ``left`` line while a leave is under way: sent directly, not twice."""


def advance(cursor: RoomCursor, epoch: str, ids: list[int], lines: list[bytes],
            joined: bytes | None = None) -> tuple[bytes, bool]:
    """Move a live cursor over live messages: (what to send, whether a gap needs a fill).

    The one rule of rooms and conversations: id ``last + 1`` goes out, a repeat is
    dropped, a gap or another epoch asks for a fill. ``joined``: the lines already
    joined, sent as they are when they follow on without a gap.
    """
    if joined is not None and epoch == cursor.epoch and ids[0] == cursor.last_id + 1:
        cursor.last_id = ids[-1]
        return joined, False
    if epoch != cursor.epoch:
        return b"", True
    fresh: list[bytes] = []
    for i, line in zip(ids, lines, strict=True):
        if i <= cursor.last_id:
            continue
        if i != cursor.last_id + 1:
            return b"".join(fresh), True
        fresh.append(line)
        cursor.last_id = i
    return b"".join(fresh), False


__all__ = ["RoomCursor", "advance"]
