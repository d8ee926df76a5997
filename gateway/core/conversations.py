"""A session's stored conversations: their cursors (pure, like ``gateway.core.cursor``).

Owned by one ``Session`` and guarded by its ``_lock``; nothing here locks or does
I/O. Each conversation has a ``RoomCursor`` moved by the rooms' own ``advance``:
a stored dm reaches an account exactly once and in id order, live or from the
conversation's log; a gap asks the session for a fill.

Until the login's catch-up is queued (``open``) every dm line waits here, so
nothing of a conversation passes ``welcome`` or its history. A dm without an
id (between two guests) and every dm of a guest session go out as they come.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import orjson

from gateway.conversations import Conversation
from gateway.core.cursor import Batch, RoomCursor, advance, fresh_part
from protocol import codec
from protocol.frames import DmSummary
from protocol.names import name_key

if TYPE_CHECKING:
    from gateway.conversations import Conversation


@dataclass(frozen=True, slots=True)
class CatchUp:
    """What an account's login sends of its conversations, read before ``welcome``."""

    summaries: tuple[DmSummary, ...] = ()
    room_reads: dict[str, int] = field(default_factory=dict)
    loaded: tuple[tuple[Conversation, Batch], ...] = ()


def _place(line: bytes, me: str) -> tuple[str, str, str, int] | None:
    """(peer key, peer display, epoch, id) of a stored dm line; None for a live-only one."""
    obj = orjson.loads(line)
    msg_id, epoch = obj.get("id"), obj.get("epoch")
    if not isinstance(msg_id, int) or not isinstance(epoch, str):
        return None
    sender, to = str(obj.get("from", "")), str(obj.get("to", ""))
    peer = to if name_key(sender) == me else sender
    return name_key(peer), peer, epoch, msg_id


class ConversationCursors:
    """One session's conversations; every method is called under the session's lock."""

    __slots__ = ("_cursors", "_early", "_names", "_open")

    def __init__(self) -> None:
        self._cursors: dict[str, RoomCursor] = {}
        self._names: dict[str, str] = {}
        self._open = False
        self._early: list[bytes] = []

    def route(self, line: bytes, name: str | None, account: bool) -> tuple[bytes, str | None]:
        """A dm line: (what to send now, the peer key of a conversation to fill or None)."""
        if not self._open or name is None:
            self._early.append(line)
            return b"", None
        place = _place(line, name_key(name)) if account else None
        if place is None:
            return line, None
        peer_key, shown, epoch, msg_id = place
        cursor = self._cursors.get(peer_key)
        if cursor is None:
            # A conversation new since login (or since ``register``): it starts at the dm
            # that opened it. Dms of one conversation are published in id order, so any
            # before it reached this session while it was a guest, or not at all.
            cursor = self._cursors[peer_key] = RoomCursor(epoch=epoch, last_id=msg_id - 1,
                                                          live=True)
            self._names[peer_key] = shown
        payload, needs_fill = advance(cursor, epoch, [msg_id], [line])
        return payload, peer_key if needs_fill else None

    def open(self, caught_up: CatchUp, name: str | None,
             account: bool) -> tuple[bytes, list[str]]:
        """Login done (the catch-up's histories, ``dm_history``, are queued): the dms that
        waited, to send, and the conversations that need a fill."""
        for conv, batch in caught_up.loaded:
            self._cursors[conv.peer_key] = RoomCursor(epoch=batch.epoch, last_id=batch.last_id,
                                                      live=True)
            self._names[conv.peer_key] = conv.peer
        self._open = True
        early, self._early = self._early, []
        out: list[bytes] = []
        fills: list[str] = []
        for line in early:
            payload, fill = self.route(line, name, account)
            if payload:
                out.append(payload)
            if fill is not None and fill not in fills:
                fills.append(fill)
        return b"".join(out), fills

    def reset(self) -> None:
        """A refused login: nothing of it stays."""
        self._cursors.clear()
        self._names.clear()
        self._early.clear()
        self._open = False

    def position(self, peer_key: str) -> tuple[str, int] | None:
        cursor = self._cursors.get(peer_key)
        return None if cursor is None else (cursor.epoch, cursor.last_id)

    def display(self, peer_key: str, default: str) -> str:
        return self._names.get(peer_key, default)

    def catch_up(self, peer_key: str, batch: Batch) -> list[bytes]:
        """Lines to send of ``batch`` past the cursor (a new epoch: its whole history)."""
        cursor = self._cursors.get(peer_key)
        if cursor is None:
            return []
        shown = self._names.get(peer_key, peer_key)
        if batch.epoch != cursor.epoch:
            cursor.epoch, cursor.last_id = batch.epoch, batch.last_id
            return codec.dm_history_lines(shown, batch.epoch, batch.messages, batch.complete)
        fresh, gap = fresh_part(cursor, batch)
        if not fresh:
            return []
        if gap:  # trimmed away before we could fetch it: say so in a history frame
            return codec.dm_history_lines(shown, batch.epoch, fresh, False)
        return [b"\n".join(fresh) + b"\n"]


__all__ = ["CatchUp", "ConversationCursors"]
