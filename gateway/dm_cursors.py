"""A session's stored conversations: their cursors, and the catch-up at login.

Owned by one ``Session`` and guarded by its ``_lock`` (nothing here locks or
does I/O but ``load_catch_up``, which runs before the session has any
cursor). Each conversation has a ``RoomCursor`` moved by the rooms' own
``advance``: a stored dm reaches an account exactly once and in id order,
live or from the conversation's log; a gap asks the session for a fill.

Until the login's catch-up is queued (``open``) every dm line waits here, so
nothing of a conversation passes ``welcome`` or its history. A dm without an
id (between two guests) and every dm of a guest session go out as they come.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from gateway.conversations import Conversation, Conversations
from gateway.cursors import RoomCursor, advance
from gateway.redis.broker import HistoryBatch
from protocol import codec
from protocol.frames import DmSummary, Position
from protocol.names import CONVERSATION_PREFIX, name_key


@dataclass(frozen=True, slots=True)
class CatchUp:
    """What an account's login sends of its conversations, read before ``welcome``."""

    summaries: tuple[DmSummary, ...] = ()
    room_reads: dict[str, int] = field(default_factory=dict)
    loaded: tuple[tuple[Conversation, HistoryBatch], ...] = ()


def load_catch_up(store: Conversations, name: str, since: dict[str, Position]) -> CatchUp:
    """Per conversation of ``name``: the dms after the client's ``since`` (all retained ones
    when its epoch changed), or without one, after the read mark **(ours)**."""
    reads = store.reads(name)
    wanted = {name_key(key[len(CONVERSATION_PREFIX):]): pos for key, pos in since.items()
              if key.startswith(CONVERSATION_PREFIX)}
    loaded = []
    summaries = []
    for conv in store.conversations(name):
        read = reads.get(CONVERSATION_PREFIX + conv.peer_key, 0)
        pos = wanted.get(conv.peer_key)
        batch = store.read_history(name, conv.peer_key, after=read if pos is None else pos.id)
        if pos is not None and batch.epoch != pos.epoch:
            batch = store.read_history(name, conv.peer_key, after=0)
        loaded.append((conv, batch))
        summaries.append(DmSummary(conv.peer, batch.epoch, batch.last_id, read))
    room_reads = {k: v for k, v in reads.items() if not k.startswith(CONVERSATION_PREFIX)}
    return CatchUp(tuple(summaries), room_reads, tuple(loaded))


def dm_history(peer: str, batch: HistoryBatch) -> list[bytes]:
    """The ``history`` lines of a conversation's catch-up; none when it holds nothing new."""
    if not batch.messages:
        return []
    return codec.dm_history_lines(peer, batch.epoch, batch.messages, batch.complete)


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

    def catch_up(self, peer_key: str, batch: HistoryBatch) -> list[bytes]:
        """Lines to send of ``batch`` past the cursor (a new epoch: its whole history)."""
        cursor = self._cursors.get(peer_key)
        if cursor is None:
            return []
        shown = self._names.get(peer_key, peer_key)
        if batch.epoch != cursor.epoch:
            cursor.epoch, cursor.last_id = batch.epoch, batch.last_id
            return codec.dm_history_lines(shown, batch.epoch, batch.messages, batch.complete)
        skip = max(0, cursor.last_id + 1 - batch.first_id)
        fresh = batch.messages[skip:]
        if not fresh:
            return []
        gap = batch.first_id + skip > cursor.last_id + 1
        cursor.last_id = batch.first_id + skip + len(fresh) - 1
        if gap:  # trimmed away before we could fetch it: say so in a history frame
            return codec.dm_history_lines(shown, batch.epoch, fresh, False)
        return [b"\n".join(fresh) + b"\n"]


__all__ = ["CatchUp", "ConversationCursors", "dm_history", "load_catch_up"]
