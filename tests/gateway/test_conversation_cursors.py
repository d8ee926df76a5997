"""A session's conversation cursors (gateway.core.conversations): pure, no Redis."""

from __future__ import annotations

import json

from gateway.conversations import Conversation
from gateway.core.conversations import CatchUp, ConversationCursors
from gateway.front.login import dm_history
from gateway.redis.broker import HistoryBatch


def line(msg_id: int, sender: str = "bob", to: str = "alice", epoch: str = "e1") -> bytes:
    return json.dumps({"type": "dm", "from": sender, "to": to, "text": f"m{msg_id}", "ts": 1.0,
                       "id": msg_id, "epoch": epoch}, separators=(",", ":")).encode() + b"\n"


def opened(last_id: int = 2) -> ConversationCursors:
    cursors = ConversationCursors()
    batch = HistoryBatch("bob", "e1", last_id, (), last_id + 1, True)
    assert cursors.open(CatchUp(loaded=((Conversation("bob", "bob"), batch),)), "alice",
                        True) == (b"", [])
    return cursors


def test_dms_wait_until_the_login_catch_up_is_out_then_go_in_order_once() -> None:
    cursors = ConversationCursors()
    assert cursors.route(line(3), "alice", True) == (b"", None)
    assert cursors.route(line(3), "alice", True) == (b"", None)
    batch = HistoryBatch("bob", "e1", 2, (), 3, True)
    payload, fills = cursors.open(CatchUp(loaded=((Conversation("bob", "bob"), batch),)),
                                  "alice", True)
    assert (payload, fills) == (line(3), [])


def test_a_repeat_is_dropped_and_a_gap_asks_for_a_fill() -> None:
    cursors = opened()
    assert cursors.route(line(2), "alice", True) == (b"", None)
    assert cursors.route(line(5), "alice", True) == (b"", "bob")
    fill = HistoryBatch("bob", "e1", 5, (line(3)[:-1], line(4)[:-1], line(5)[:-1]), 3, True)
    assert cursors.catch_up("bob", fill) == [line(3) + line(4)[:-1] + b"\n" + line(5)[:-1]
                                             + b"\n"]
    assert cursors.position("bob") == ("e1", 5)


def test_our_own_copy_moves_the_cursor_of_the_peer() -> None:
    cursors = opened()
    assert cursors.route(line(3, sender="alice", to="bob"), "alice", True)[0] == line(
        3, sender="alice", to="bob")
    assert cursors.position("bob") == ("e1", 3)


def test_a_guest_gets_dms_as_they_come() -> None:
    cursors = ConversationCursors()
    cursors.open(CatchUp(), "alice", False)
    assert cursors.route(line(7), "alice", False) == (line(7), None)
    assert cursors.route(line(7), "alice", False) == (line(7), None)


def test_catch_up_history_is_sent_only_when_it_holds_something() -> None:
    assert dm_history("bob", HistoryBatch("bob", "e1", 4, (), 5, True)) == []
    [frame] = dm_history("bob", HistoryBatch("bob", "e1", 4, (line(4)[:-1],), 4, True))
    assert json.loads(frame)["with"] == "bob"
