"""A session's rooms: ``join``, ``leave``, ``history`` and ``typing``, and entering a
room (at ``join`` and at login): register and subscribe, announce, go live.

Entering is three steps, undone (``abandon``) if one fails: ``enter`` registers
the session in the room and subscribes, so live messages wait in its cursor
from then on; ``announce`` records our presence and reads the history to send;
``go_live`` queues that history and releases what waited
(``gateway.core.cursor.go_live``). All of it runs on the session's reader
thread.

Lock order: the session's ``_lock`` only, never across socket or Redis calls,
never together with the registry's.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from gateway.core import cursor as core
from gateway.core.cursor import RoomCursor
from gateway.redis.broker import BrokerUnavailable, HistoryBatch
from protocol import codec
from protocol.frames import HistoryQuery, Join, Leave, Left, Position, TypingRequest

if TYPE_CHECKING:
    from gateway.front.session import Session


def typing(s: Session, frame: TypingRequest) -> None:
    s._require_room(frame.room)
    assert s.name is not None
    if s._typing.due(frame.room, time.monotonic()):
        s._svc.broker.publish_typing(frame.room, s.name)


def history(s: Session, frame: HistoryQuery) -> None:
    s._require_room(frame.room)
    s._may_answer()
    batch = s._svc.broker.read_history(frame.room, before=frame.before, limit=frame.limit)
    s._send_history(
        codec.history_lines(frame.room, batch.epoch, batch.messages, batch.complete))


def join(s: Session, frame: Join) -> None:
    if frame.room in s._rooms:
        # Already a member: answer with the newest history again, change nothing.
        history(s, HistoryQuery(frame.room))
        return
    s._check_room_count(len(s._rooms) + 1)
    s._may_answer()
    enter_and_go_live(s, frame.room)


def leave(s: Session, frame: Leave) -> None:
    s._require_room(frame.room)
    assert s.name is not None
    left_line = codec.encode(Left(frame.room, s.name))
    with s._lock:
        s._rooms[frame.room].leaving_line = left_line
    try:
        s._svc.broker.leave(frame.room, s.name)
    except BaseException:
        with s._lock:
            if frame.room in s._rooms:
                s._rooms[frame.room].leaving_line = None
        raise
    with s._lock:
        s._rooms.pop(frame.room, None)
    s._typing.forget(frame.room)
    if s._svc.registry.remove_member(s, frame.room):
        s._svc.subscriber.rooms_changed()
    s._send(left_line, "left")


def enter_and_go_live(s: Session, room: str) -> None:
    """``join``: enter, announce, then history; undone if a step fails."""
    try:
        enter(s, room)
        batch = announce(s, room, None)
    except BaseException:
        abandon(s, room)
        raise
    go_live(s, room, batch)


def enter(s: Session, room: str) -> None:
    """Register and subscribe; from here live messages wait in the room's cursor."""
    with s._lock:
        s._rooms[room] = RoomCursor()
    s._svc.registry.add_member(s, room)
    if not s._svc.subscriber.subscribe(room).wait(5.0):
        raise BrokerUnavailable(f"could not subscribe to room {room}")


def announce(s: Session, room: str, since: Position | None) -> HistoryBatch:
    """Record our presence (the room sees ``joined``), then read the history to send."""
    svc = s._svc
    assert s.name is not None
    svc.broker.join(room, s.name)
    if since is not None:
        batch = svc.broker.read_history(room, after=since.id)
        if batch.epoch == since.epoch:
            return batch
        return svc.broker.read_history(room, after=0)
    return svc.broker.read_history(room)


def abandon(s: Session, room: str) -> None:
    with s._lock:
        s._rooms.pop(room, None)
    s._typing.forget(room)
    if s._svc.registry.remove_member(s, room):
        s._svc.subscriber.rooms_changed()


def go_live(s: Session, room: str, batch: HistoryBatch) -> None:
    """Send the history, then the live messages that waited, skipping what it held."""
    svc = s._svc
    lines = codec.history_lines(room, batch.epoch, batch.messages, batch.complete)
    s._history_budget.spend(sum(map(len, lines)))
    with s._sending("history"):
        step = core.go_live(s._rooms[room], lines, batch)
        s._queue(step)
    if step.fill:
        svc.subscriber.request_fill(room)


__all__ = ["abandon", "announce", "enter", "enter_and_go_live", "go_live", "history", "join",
           "leave", "typing"]
