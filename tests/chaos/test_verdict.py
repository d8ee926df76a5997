"""The chaos verdict counts what it must: a judge that never fails proves nothing.

Pure tests of ``tests.chaos.harness.judge`` on hand-made event logs and records.
"""

from __future__ import annotations

from client import events as ev
from client.errors import SendAborted
from protocol.errors import ErrorCode, ProtocolError
from protocol.frames import Message
from tests.chaos.harness import EventLog, Sent, Verdict, judge

ROOMS = {"ann": ("r",), "bob": ("r",)}


def msg(i: int, sender: str = "ann") -> Message:
    return Message("r", i, sender, f"{sender} #{i} in r", float(i))


def sent(i: int, sender: str = "ann") -> Sent:
    return Sent(sender, "r", f"{sender} #{i} in r", f"ref{i}", float(i))


def logs(**deliveries: list[ev.ClientEvent]) -> dict[str, EventLog]:
    out = {name: EventLog(name, rooms) for name, rooms in ROOMS.items()}
    for name, events in deliveries.items():
        for event in events:
            out[name](event)
    return out


def history(*ids: int) -> ev.HistoryLoaded:
    return ev.HistoryLoaded("r", tuple(msg(i) for i in ids), True, older=False)


def live(*ids: int) -> list[ev.ClientEvent]:
    return [ev.RoomMessage(msg(i)) for i in ids]


def acks(*ids: int) -> list[ev.ClientEvent]:
    return [ev.Acked(f"ref{i}", i) for i in ids]


def verdict(ann: list[ev.ClientEvent], bob: list[ev.ClientEvent], stored_ids: range,
            sends: list[Sent] | None = None) -> Verdict:
    stored = {"r": [msg(i) for i in stored_ids]}
    return judge(sends if sends is not None else [sent(i) for i in stored_ids],
                 logs(ann=ann, bob=bob), ROOMS, stored)


def test_a_clean_run_has_no_problem() -> None:
    v = verdict([history(), *live(1, 2, 3), *acks(1, 2, 3)], [history(1), *live(2, 3)], range(1, 4))
    assert v.problems == ()
    assert (v.sent, v.acked, v.failed, v.delivered) == (3, 3, 0, 6)
    assert v.summary() == ("chaos: sent=3 acked=3 failed=0 delivered=6 "
                           "lost=0 duplicated=0 reordered=0")


def test_a_message_one_member_never_got_is_lost() -> None:
    v = verdict([history(), *live(1, 2, 3), *acks(1, 2, 3)], [history(), *live(1, 3)], range(1, 4))
    assert v.lost == 1 and any("bob: 1 message(s)" in p for p in v.problems)


def test_a_repeat_is_a_duplicate_and_a_step_back_is_a_reorder() -> None:
    v = verdict([history(), *live(1, 2, 2, 3), *acks(1, 2, 3)], [history(), *live(2, 1, 3)],
                range(1, 4))
    assert (v.duplicated, v.reordered, v.lost) == (1, 1, 0)


def test_a_send_without_outcome_or_with_two_is_a_problem() -> None:
    v = verdict([history(), *live(1, 2), *acks(1, 1)], [history(), *live(1, 2)], range(1, 3))
    assert any("2 outcomes for ref1" in p for p in v.problems)
    assert any("no outcome for ref2" in p for p in v.problems)


def test_failures_need_a_clear_error_and_must_not_be_published() -> None:
    sends = [sent(1), sent(2), sent(3)]
    outcomes: list[ev.ClientEvent] = [
        ev.Acked("ref1", 1),
        ev.SendFailed("ref2", ProtocolError(ErrorCode.UNAVAILABLE, "down", "ref2")),
        ev.SendFailed("ref3", ProtocolError(ErrorCode.INTERNAL, "oops", "ref3")),
    ]
    v = verdict([history(), *live(1, 2), *outcomes], [history(1, 2)], range(1, 3), sends)
    assert (v.acked, v.failed) == (1, 2)
    assert any("failed without a clear error" in p and "ann #3" in p for p in v.problems)
    assert any("published (id 2) although its send failed" in p for p in v.problems)
    aborted = ev.SendFailed("ref2", SendAborted(ref="ref2"))
    clean = verdict([history(), *live(1), ev.Acked("ref1", 1), aborted], [history(1)],
                    range(1, 2), sends[:2])
    assert clean.problems == ()


def test_an_ack_that_does_not_match_the_record_is_a_problem() -> None:
    v = verdict([history(), *live(1), ev.Acked("ref1", 7)], [history(1)], range(1, 2))
    assert any("acked 'ann #1 in r' as id 7, stored as 1" in p for p in v.problems)


def test_an_epoch_reset_is_a_problem_unless_allowed() -> None:
    reset: list[ev.ClientEvent] = [history(1), *acks(1, 2), ev.EpochReset("r", "e2"), history(1)]
    stored = {"r": [msg(1)]}
    strict = judge([sent(1)], logs(ann=reset[:1] + reset[3:], bob=[history(1)]), ROOMS, stored)
    assert any("epoch reset" in p for p in strict.problems)
    lenient = judge([sent(1)], logs(ann=[history(1), ev.Acked("ref1", 1),
                                         ev.EpochReset("r", "e2"), history(1)],
                                    bob=[history(1)]),
                    ROOMS, stored, resets_allowed=True)
    assert lenient.problems == () and lenient.duplicated == 1  # the same text in two epochs


def test_a_client_that_ended_early_is_a_problem() -> None:
    v = verdict([history(1), ev.Acked("ref1", 1)], [history(1), ev.Closed("replaced")],
                range(1, 2))
    assert any("bob: the client ended early" in p for p in v.problems)
