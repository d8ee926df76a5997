"""Exact accounting: every acked message to every member of its room, once."""

from __future__ import annotations

from bench.ledger import account
from bench.population import Population

# Users 0-2 in room 0; users 2-3 in room 1.
POP = Population(members=((0, 1, 2), (2, 3)), rooms_of=((0,), (0,), (0, 1), (1,)))
ROOM_OF = [0, 1, 0]  # seq 0 -> room 0, seq 1 -> room 1, seq 2 -> room 0


def test_every_member_got_every_acked_message_once() -> None:
    a = account(POP, ROOM_OF, [0, 1], [[0], [0], [1, 0], [1]])
    assert a.exact and a.acked == 2
    assert a.expected == a.delivered == 5 and a.lost == 0


def test_a_missing_delivery_is_lost() -> None:
    a = account(POP, ROOM_OF, [0, 1], [[0], [], [1, 0], [1]])
    assert not a.exact and a.lost == 1 and a.delivered == 4


def test_a_repeated_delivery_is_a_duplicate() -> None:
    a = account(POP, ROOM_OF, [0, 1], [[0, 0], [0], [1, 0], [1]])
    assert not a.exact and a.duplicates == 1 and a.lost == 0


def test_a_delivery_outside_the_room_is_misdelivered() -> None:
    a = account(POP, ROOM_OF, [0, 1], [[0, 1], [0], [1, 0], [1]])
    assert not a.exact and a.misdelivered == 1


def test_a_refused_send_delivered_anyway_is_reported_but_not_a_failure() -> None:
    a = account(POP, ROOM_OF, [0, 1], [[0, 2], [0], [1, 0], [1]])
    assert a.exact and a.unacked_delivered == 1


def test_users_who_reported_nothing_lost_everything_owed() -> None:
    a = account(POP, ROOM_OF, [0, 1], [[0], [0]])
    assert a.lost == 3 and a.expected == 5
