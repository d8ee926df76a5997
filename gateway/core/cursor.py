"""A cursor: where one session stands in one room or conversation, and its moves.

Delivery is exactly-once and in id order. A room's cursor is *pending* from
the moment the session is registered in it until its history is queued:
live messages and events that arrive meanwhile wait in it (``deliver``,
``deliver_event``) and are released after the history (``go_live``),
skipping ids the history already held. A live cursor accepts id
``last + 1`` only (``advance``): a repeat is dropped, a gap or a new epoch
asks for a fill; the fill (``catch_up``) sends what a history batch holds
past the cursor, and a batch of another epoch resets it (``reset``).

Every move returns a ``Step``: what to queue as a history answer, what to
write after it, and whether the room needs a fill. The caller holds the
session's lock around a move and queues the step's bytes under it, so the
order of the bytes is the order of the moves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from protocol import codec


class Batch(Protocol):
    """A slice of a room's or conversation's log (``HistoryBatch`` of the broker)."""

    @property
    def epoch(self) -> str: ...
    @property
    def last_id(self) -> int: ...
    @property
    def first_id(self) -> int: ...
    @property
    def messages(self) -> Sequence[bytes]: ...
    @property
    def complete(self) -> bool: ...


@dataclass(slots=True)
class RoomCursor:
    """Where one session stands in one room (or one stored conversation)."""

    epoch: str = ""
    last_id: int = 0
    live: bool = False
    pending: list[tuple[str, int, bytes]] = field(default_factory=list)
    """(epoch, id, line) held until the history is out; id 0 marks an event."""
    leaving_line: bytes | None = None
    """Our own ``left`` line while a leave is under way: sent directly, not twice."""


@dataclass(frozen=True, slots=True)
class Step:
    """What one move asks of the session: queue ``answer`` (history lines, one answer),
    then ``write``; ``fill``: the room has a gap its log must fill."""

    answer: tuple[bytes, ...] = ()
    write: bytes = b""
    fill: bool = False


NOTHING = Step()


def advance(cursor: RoomCursor, epoch: str, ids: Sequence[int], lines: Sequence[bytes],
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


def deliver(cursor: RoomCursor, epoch: str, ids: Sequence[int], lines: Sequence[bytes],
            joined: bytes | None = None) -> Step:
    """Live messages of the room: held while the cursor is pending, else ``advance``."""
    if not cursor.live:
        cursor.pending.extend((epoch, i, line) for i, line in zip(ids, lines, strict=True))
        return NOTHING
    payload, needs_fill = advance(cursor, epoch, ids, lines, joined)
    return Step(write=payload, fill=needs_fill)


def deliver_event(cursor: RoomCursor, line: bytes) -> bytes:
    """A ``joined``/``left``/``typing`` line: what to write now (held while pending;
    our own ``left`` during a leave is dropped, the leave answers it)."""
    if line == cursor.leaving_line:
        return b""
    if not cursor.live:
        cursor.pending.append(("", 0, line))
        return b""
    return line


def go_live(cursor: RoomCursor, lines: Sequence[bytes], batch: Batch) -> Step:
    """The join's history (``lines``, of ``batch``) goes out, then what waited meanwhile,
    skipping what the history held; a gap or another epoch asks for a fill."""
    cursor.epoch, cursor.last_id = batch.epoch, batch.last_id
    out: list[bytes] = []
    needs_fill = False
    for epoch, msg_id, line in cursor.pending:
        if msg_id == 0:
            out.append(line)
        elif epoch != cursor.epoch or msg_id > cursor.last_id + 1:
            needs_fill = True
        elif msg_id == cursor.last_id + 1:
            out.append(line)
            cursor.last_id = msg_id
    cursor.pending.clear()
    cursor.live = True
    return Step(tuple(lines), b"".join(out), needs_fill)


def fresh_part(cursor: RoomCursor, batch: Batch) -> tuple[Sequence[bytes], bool]:
    """Move the cursor to the end of ``batch`` (of the cursor's epoch): (the messages
    past the cursor, whether some were trimmed away between the cursor and them)."""
    skip = max(0, cursor.last_id + 1 - batch.first_id)
    fresh = batch.messages[skip:]
    if not fresh:
        return (), False
    gap = batch.first_id + skip > cursor.last_id + 1
    cursor.last_id = batch.first_id + skip + len(fresh) - 1
    return fresh, gap


def catch_up(cursor: RoomCursor, room: str, batch: Batch) -> Step | None:
    """A fill: what ``batch`` holds past the cursor, as one answer. None when the batch
    is of another epoch (``reset`` then); a cursor still pending takes nothing."""
    if not cursor.live:
        return NOTHING
    if batch.epoch != cursor.epoch:
        return None
    fresh, gap = fresh_part(cursor, batch)
    if not fresh:
        return NOTHING
    if gap:  # trimmed away before we could fetch it: say so in a history frame
        return Step(tuple(codec.history_lines(room, batch.epoch, fresh, False)))
    return Step((b"\n".join(fresh) + b"\n",))


def reset(cursor: RoomCursor, room: str, batch: Batch) -> Step:
    """The room's epoch changed: the new epoch's retained history, the cursor at its end."""
    if not cursor.live:
        return NOTHING
    cursor.epoch, cursor.last_id = batch.epoch, batch.last_id
    return Step(tuple(codec.history_lines(room, batch.epoch, batch.messages, batch.complete)))


__all__ = ["NOTHING", "Batch", "RoomCursor", "Step", "advance", "catch_up", "deliver",
           "deliver_event", "fresh_part", "go_live", "reset"]
