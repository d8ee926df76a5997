"""gateway.core.cursor: a session's place in a room, moved without sockets or Redis."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.core import cursor as core
from gateway.core.cursor import RoomCursor, Step
from protocol import codec


@dataclass(frozen=True)
class Batch:
    epoch: str
    last_id: int
    messages: tuple[bytes, ...]
    first_id: int
    complete: bool = True


def msg(i: int) -> bytes:
    return f'{{"type":"message","id":{i}}}'.encode()


def live(last_id: int = 3, epoch: str = "e1") -> RoomCursor:
    return RoomCursor(epoch=epoch, last_id=last_id, live=True)


def test_a_live_cursor_sends_the_next_id_drops_a_repeat_and_asks_a_fill_for_a_gap() -> None:
    cursor = live()
    assert core.deliver(cursor, "e1", [4], [b"4\n"]) == Step(write=b"4\n")
    assert core.deliver(cursor, "e1", [4], [b"4\n"]) == Step()
    assert core.deliver(cursor, "e1", [5, 7], [b"5\n", b"7\n"]) == Step(write=b"5\n", fill=True)
    assert cursor.last_id == 5


def test_another_epoch_asks_for_a_fill_and_sends_nothing() -> None:
    cursor = live()
    assert core.deliver(cursor, "e2", [1], [b"1\n"]) == Step(fill=True)
    assert (cursor.epoch, cursor.last_id) == ("e1", 3)


def test_joined_lines_go_out_as_they_are_when_they_follow_on() -> None:
    cursor = live()
    assert core.deliver(cursor, "e1", [4, 5], [b"a", b"b"], b"JOINED") == Step(write=b"JOINED")
    assert cursor.last_id == 5


def test_a_pending_cursor_holds_messages_and_events_until_its_history_is_out() -> None:
    cursor = RoomCursor()
    assert core.deliver(cursor, "e1", [3, 4], [b"3\n", b"4\n"]) == Step()
    assert core.deliver_event(cursor, b"joined\n") == b""
    history = [b"history\n"]
    step = core.go_live(cursor, history, Batch("e1", 3, (msg(3),), 3))
    assert step == Step((b"history\n",), b"4\njoined\n", False)
    assert (cursor.live, cursor.last_id, cursor.pending) == (True, 4, [])


def test_go_live_asks_for_a_fill_when_what_waited_does_not_follow_the_history() -> None:
    cursor = RoomCursor()
    core.deliver(cursor, "e1", [6], [b"6\n"])
    assert core.go_live(cursor, [b"h\n"], Batch("e1", 4, (), 5)) == Step((b"h\n",), b"", True)
    cursor = RoomCursor()
    core.deliver(cursor, "e0", [5], [b"5\n"])
    assert core.go_live(cursor, [b"h\n"], Batch("e1", 4, (), 5)).fill


def test_our_own_left_line_during_a_leave_is_not_sent_twice() -> None:
    cursor = live()
    cursor.leaving_line = b"left\n"
    assert core.deliver_event(cursor, b"left\n") == b""
    assert core.deliver_event(cursor, b"joined\n") == b"joined\n"


def test_a_fill_sends_what_the_log_holds_past_the_cursor_as_one_answer() -> None:
    cursor = live(last_id=3)
    step = core.catch_up(cursor, "r", Batch("e1", 5, (msg(3), msg(4), msg(5)), 3))
    assert step == Step((msg(4) + b"\n" + msg(5) + b"\n",))
    assert cursor.last_id == 5
    assert core.catch_up(cursor, "r", Batch("e1", 5, (msg(5),), 5)) == Step()


def test_a_fill_past_trimmed_messages_says_so_in_an_incomplete_history() -> None:
    cursor = live(last_id=3)
    step = core.catch_up(cursor, "r", Batch("e1", 9, (msg(8), msg(9)), 8))
    assert step == Step(tuple(codec.history_lines("r", "e1", (msg(8), msg(9)), False)))
    assert cursor.last_id == 9


def test_a_fill_of_another_epoch_is_refused_and_reset_sends_the_new_history() -> None:
    cursor = live()
    batch = Batch("e2", 2, (msg(1), msg(2)), 1)
    assert core.catch_up(cursor, "r", batch) is None
    step = core.reset(cursor, "r", batch)
    assert step == Step(tuple(codec.history_lines("r", "e2", batch.messages, True)))
    assert (cursor.epoch, cursor.last_id) == ("e2", 2)


def test_a_pending_cursor_takes_no_fill_and_no_reset() -> None:
    cursor = RoomCursor()
    batch = Batch("e2", 2, (msg(1), msg(2)), 1)
    assert core.catch_up(cursor, "r", batch) == Step()
    assert core.reset(cursor, "r", batch) == Step()
    assert (cursor.epoch, cursor.last_id) == ("", 0)
