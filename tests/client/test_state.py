"""ClientState, the pure resume/de-duplication/ordering core of the client."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client import events as ev
from client.errors import SendAborted
from client.state import MAX_HELD, ClientState, Outcome
from protocol import frames as fr
from protocol.errors import ErrorCode, ProtocolError

E1 = "epoch-1"
E2 = "epoch-2"


def msg(id_: int, room: str = "lobby", sender: str = "bob") -> fr.Message:
    return fr.Message(room, id_, sender, f"text {id_}", 1000.0 + id_)


def history(ids: range | list[int], room: str = "lobby", epoch: str = E1,
            complete: bool = True) -> fr.History:
    return fr.History(room, epoch, tuple(msg(i, room) for i in ids), complete)


def welcome(rooms: tuple[str, ...] = ("lobby",), token: str = "tok-1",
            gateway: str = "gw1") -> fr.Welcome:
    return fr.Welcome("alice", gateway, rooms, token, {"max_text": 4000})


def delivered_ids(outcome: Outcome) -> list[int]:
    """Ids in the order the caller sees them, from fresh history and live messages."""
    ids: list[int] = []
    for event in outcome.events:
        if isinstance(event, ev.RoomMessage):
            ids.append(event.message.id)
        elif isinstance(event, ev.HistoryLoaded) and not event.older:
            ids.extend(m.id for m in event.messages)
    return ids


def logged_in(rooms: tuple[str, ...] = ("lobby",), ids: range | list[int] = range(1, 4)
              ) -> ClientState:
    """A state logged in to ``rooms``, each synced with ``ids`` in epoch E1."""
    state = ClientState("alice", rooms)
    state.on_welcome(welcome(rooms), state.hello())
    for room in rooms:
        state.handle(history(ids, room))
    return state


def feed(state: ClientState, *frames: fr.ServerFrame) -> Outcome:
    total = Outcome()
    for frame in frames:
        total = total + state.handle(frame)
    return total


# ----------------------------------------------------------------- login/hello


def test_first_hello_has_rooms_and_no_token_or_since() -> None:
    state = ClientState("alice", ("lobby", "dev", "lobby"))
    hello = state.hello()
    assert hello == fr.Hello("alice", ("lobby", "dev"), {}, None)


def test_first_welcome_reports_connected_not_resumed_and_keeps_token() -> None:
    state = ClientState("alice")
    outcome = state.on_welcome(welcome(), state.hello())
    assert outcome.events == (ev.Connected("gw1", "alice", False),)
    assert outcome.requests == ()
    assert state.token == "tok-1"


def test_hello_after_history_resumes_with_token_and_since() -> None:
    state = logged_in(("lobby", "dev"), range(1, 6))
    state.handle(msg(6, "dev"))
    state.on_disconnect()
    hello = state.hello()
    assert hello.token == "tok-1"
    assert hello.since == {"lobby": fr.Position(E1, 5), "dev": fr.Position(E1, 6)}
    assert hello.rooms == ("lobby", "dev")


def test_empty_room_resumes_from_id_zero() -> None:
    state = logged_in(ids=[])
    assert state.hello().since == {"lobby": fr.Position(E1, 0)}


def test_second_welcome_is_a_resume() -> None:
    state = logged_in()
    state.on_disconnect()
    outcome = state.on_welcome(welcome(gateway="gw2", token="tok-2"), state.hello())
    assert outcome.events == (ev.Connected("gw2", "alice", True),)
    assert state.token == "tok-2"


def test_hello_with_a_bad_name_raises_bad_name() -> None:
    with pytest.raises(ProtocolError) as info:
        ClientState("no spaces allowed").hello()
    assert info.value.code is ErrorCode.BAD_NAME


# --------------------------------------------------------- history and live


def test_first_history_is_loaded_once_in_id_order_without_duplicates() -> None:
    state = ClientState("alice")
    state.on_welcome(welcome(), state.hello())
    frame = fr.History("lobby", E1, (msg(2), msg(1), msg(2), msg(3)), False)
    outcome = state.handle(frame)
    assert outcome.events == (ev.HistoryLoaded("lobby", (msg(1), msg(2), msg(3)), False, False),)
    assert state.position("lobby") == fr.Position(E1, 3)


def test_live_messages_are_delivered_in_order_and_duplicates_dropped() -> None:
    state = logged_in()
    outcome = feed(state, msg(4), msg(4), msg(2), msg(5), msg(3), msg(5))
    assert outcome.events == (ev.RoomMessage(msg(4)), ev.RoomMessage(msg(5)))
    assert outcome.requests == ()
    assert state.position("lobby") == fr.Position(E1, 5)


def test_out_of_order_message_is_held_until_the_missing_one_arrives() -> None:
    state = logged_in()
    ahead = state.handle(msg(5))
    assert ahead.events == ()
    assert ahead.requests == (fr.HistoryQuery("lobby", 5, 1),)
    caught = state.handle(msg(4))
    assert delivered_ids(caught) == [4, 5]
    # The fill answer that crosses the live message adds nothing.
    assert feed(state, history([4])).events == ()
    assert delivered_ids(state.handle(msg(6))) == [6]


def test_a_gap_is_filled_from_the_history_answer() -> None:
    state = logged_in()
    first = feed(state, msg(7), msg(8))
    assert first.requests == (fr.HistoryQuery("lobby", 7, 3),)  # only one request per gap
    filled = state.handle(history([4, 5, 6]))
    assert delivered_ids(filled) == [4, 5, 6, 7, 8]
    assert filled.requests == ()


def test_ids_the_gateway_no_longer_keeps_are_skipped_not_waited_for() -> None:
    state = logged_in()
    state.handle(msg(7))
    outcome = state.handle(history([5]))  # 4 and 6 are gone
    assert delivered_ids(outcome) == [5, 7]
    assert outcome.requests == ()
    assert delivered_ids(state.handle(msg(4))) == []  # never out of order


def test_a_gap_wider_than_one_history_page_is_filled_page_by_page() -> None:
    state = logged_in(ids=[])
    first = state.handle(msg(450))
    assert first.requests == (fr.HistoryQuery("lobby", 201, 200),)
    second = state.handle(history(range(1, 201)))
    assert delivered_ids(second) == list(range(1, 201))
    assert second.requests == (fr.HistoryQuery("lobby", 401, 200),)
    third = state.handle(history(range(201, 401)))
    assert third.requests == (fr.HistoryQuery("lobby", 450, 49),)
    last = state.handle(history(range(401, 450)))
    assert delivered_ids(last) == list(range(401, 451))


def test_a_gap_that_never_fills_is_given_up_when_too_much_is_held() -> None:
    state = logged_in(ids=[])
    state.handle(msg(3))  # asks for 1-2, never answered
    outcome = feed(state, *(msg(i) for i in range(4, 4 + MAX_HELD)))
    assert delivered_ids(outcome) == list(range(3, 4 + MAX_HELD))


def test_messages_before_the_rooms_history_wait_for_it() -> None:
    state = ClientState("alice")
    state.on_welcome(welcome(), state.hello())
    assert state.handle(msg(3)).events == ()
    outcome = state.handle(history([1, 2]))
    assert delivered_ids(outcome) == [1, 2, 3]
    assert [type(e) for e in outcome.events] == [ev.HistoryLoaded, ev.RoomMessage]


def test_messages_for_rooms_we_are_not_in_are_ignored() -> None:
    state = logged_in()
    assert feed(state, msg(1, "elsewhere"), history([1], "elsewhere")).events == ()


# ----------------------------------------------------------------- resume


def test_resume_delivers_only_newer_messages_as_room_messages() -> None:
    state = logged_in(ids=range(1, 6))
    state.on_disconnect()
    state.on_welcome(welcome(), state.hello())
    outcome = state.handle(history(range(3, 9)))
    assert outcome.events == tuple(ev.RoomMessage(msg(i)) for i in (6, 7, 8))


def test_resume_with_nothing_new_reports_nothing() -> None:
    state = logged_in(ids=range(1, 6))
    state.on_disconnect()
    state.on_welcome(welcome(), state.hello())
    assert state.handle(history([])).events == ()
    assert delivered_ids(state.handle(msg(6))) == [6]


def test_resume_past_the_retained_history_skips_what_is_gone() -> None:
    state = logged_in(ids=range(1, 6))
    state.on_disconnect()
    state.on_welcome(welcome(), state.hello())
    outcome = state.handle(history(range(20, 23), complete=False))
    assert delivered_ids(outcome) == [20, 21, 22]
    assert outcome.requests == ()


def test_messages_held_behind_a_gap_are_dropped_on_disconnect_and_come_back() -> None:
    state = logged_in()
    state.handle(msg(6))
    state.on_disconnect()
    assert state.hello().since == {"lobby": fr.Position(E1, 3)}
    state.on_welcome(welcome(), state.hello())
    assert delivered_ids(state.handle(history(range(4, 7)))) == [4, 5, 6]


def test_a_new_epoch_resets_the_room() -> None:
    state = logged_in(ids=range(1, 10))
    state.on_disconnect()
    state.on_welcome(welcome(), state.hello())
    outcome = state.handle(history([1, 2], epoch=E2))
    assert outcome.events == (
        ev.EpochReset("lobby", E2),
        ev.HistoryLoaded("lobby", (msg(1), msg(2)), True, False),
    )
    assert state.position("lobby") == fr.Position(E2, 2)
    assert delivered_ids(state.handle(msg(3))) == [3]


def test_a_new_epoch_announced_mid_session_resets_the_room() -> None:
    state = logged_in(ids=range(1, 10))
    state.handle(msg(12))  # held behind a gap of the old epoch
    outcome = state.handle(history([], epoch=E2))
    assert outcome.events == (
        ev.EpochReset("lobby", E2), ev.HistoryLoaded("lobby", (), True, False),
    )
    assert delivered_ids(state.handle(msg(1))) == [1]


def test_a_same_epoch_refill_from_the_gateway_adds_only_new_messages() -> None:
    state = logged_in()
    outcome = state.handle(history(range(2, 6)))
    assert outcome.events == (ev.RoomMessage(msg(4)), ev.RoomMessage(msg(5)))


# ------------------------------------------------------------- scroll-back


def test_scroll_back_answer_is_loaded_as_older() -> None:
    state = logged_in(ids=range(51, 101))
    assert state.expect_history("lobby")
    outcome = state.handle(history(range(1, 51), complete=True))
    assert outcome.events == (
        ev.HistoryLoaded("lobby", tuple(msg(i) for i in range(1, 51)), True, True),
    )
    assert state.position("lobby") == fr.Position(E1, 100)


def test_scroll_back_answer_never_repeats_or_skips_newer_messages() -> None:
    state = logged_in()
    state.expect_history("lobby")
    outcome = state.handle(history(range(1, 6)))  # "newest 50" includes 4 and 5, not yet seen
    assert outcome.events == (
        ev.HistoryLoaded("lobby", (msg(1), msg(2), msg(3)), True, True),
        ev.RoomMessage(msg(4)),
        ev.RoomMessage(msg(5)),
    )
    assert state.handle(msg(5)).events == ()


def test_history_answers_are_matched_in_request_order() -> None:
    state = logged_in(ids=range(10, 13))
    state.expect_history("lobby")  # scroll-back first
    fill = state.handle(msg(15))  # then a gap fill
    assert fill.requests == (fr.HistoryQuery("lobby", 15, 2),)
    older = state.handle(history(range(5, 10)))
    assert [type(e) for e in older.events] == [ev.HistoryLoaded]
    assert delivered_ids(state.handle(history([13, 14]))) == [13, 14, 15]


def test_scroll_back_for_an_unknown_room_is_not_tracked() -> None:
    assert not logged_in().expect_history("elsewhere")


def test_pending_queries_die_with_the_connection() -> None:
    state = logged_in()
    state.expect_history("lobby")
    state.on_disconnect()
    state.on_welcome(welcome(), state.hello())
    state.handle(history(range(1, 4)))  # the resume history, not an answer
    assert delivered_ids(state.handle(history(range(1, 6)))) == [4, 5]


# ------------------------------------------------------------ pending sends


def test_ack_ends_a_pending_send_once() -> None:
    state = logged_in()
    state.add_pending(fr.Send("lobby", "hi", "r1"))
    assert state.handle(fr.Ack("r1", 4)).events == (ev.Acked("r1", 4),)
    assert state.handle(fr.Ack("r1", 4)).events == ()
    assert state.pending == ()


def test_error_with_a_pending_ref_fails_that_send() -> None:
    state = logged_in()
    state.add_pending(fr.DmRequest("bob", "psst", "r2"))
    outcome = state.handle(fr.Error(ErrorCode.NO_SUCH_USER, "no bob", "r2"))
    assert len(outcome.events) == 1
    failed = outcome.events[0]
    assert isinstance(failed, ev.SendFailed) and failed.ref == "r2"
    assert failed.error.code is ErrorCode.NO_SUCH_USER
    assert state.pending == ()


def test_error_without_a_pending_ref_is_a_server_error() -> None:
    state = logged_in()
    for frame in (fr.Error(ErrorCode.BAD_ROOM, "no"), fr.Error(ErrorCode.BAD_TEXT, "x", "zz")):
        (event,) = state.handle(frame).events
        assert isinstance(event, ev.ServerError) and event.error.code is frame.code


def test_welcome_resends_pending_in_order_with_the_same_ref() -> None:
    state = logged_in()
    sends: list[fr.Send | fr.DmRequest] = [
        fr.Send("lobby", "one", "r1"), fr.DmRequest("bob", "two", "r2"),
        fr.Send("lobby", "3", "r3"),
    ]
    for frame in sends:
        state.add_pending(frame)
    state.handle(fr.Ack("r2", None))
    state.on_disconnect()
    outcome = state.on_welcome(welcome(), state.hello())
    assert outcome.requests == (sends[0], sends[2])


def test_abort_fails_every_pending_send() -> None:
    state = logged_in()
    state.add_pending(fr.Send("lobby", "one", "r1"))
    (failed,) = state.abort_pending()
    assert failed.ref == "r1" and isinstance(failed.error, SendAborted)
    assert state.abort_pending() == ()


def test_a_send_needs_a_fresh_ref() -> None:
    state = logged_in()
    with pytest.raises(ValueError):
        state.add_pending(fr.Send("lobby", "no ref"))
    state.add_pending(fr.Send("lobby", "a", "r1"))
    with pytest.raises(ValueError):
        state.add_pending(fr.Send("lobby", "b", "r1"))


# ------------------------------------------------------------------ rooms


def test_join_and_leave_change_the_rooms_and_leave_forgets_the_room() -> None:
    state = logged_in()
    assert state.join("dev") and not state.join("dev")
    assert state.rooms == ("lobby", "dev")
    assert state.leave("lobby") and not state.leave("lobby")
    assert state.position("lobby") is None
    state.join("lobby")
    (loaded,) = state.handle(history(range(1, 4))).events
    assert loaded == ev.HistoryLoaded("lobby", (msg(1), msg(2), msg(3)), True, False)


def test_join_refuses_bad_names_and_the_51st_room() -> None:
    state = ClientState("alice", [f"r{i}" for i in range(50)])
    with pytest.raises(ProtocolError) as info:
        state.join("r50")
    assert info.value.code is ErrorCode.BAD_ROOM
    with pytest.raises(ProtocolError):
        ClientState("alice").join("Not A Room")


def test_welcome_reconciles_rooms_changed_during_login() -> None:
    state = ClientState("alice", ("lobby", "dev", "ops"))
    hello = state.hello()
    state.join("new")
    state.leave("dev")
    state.add_pending(fr.Send("lobby", "hi", "r1"))
    outcome = state.on_welcome(welcome(("lobby", "dev")), hello)  # "ops" not granted
    assert outcome.requests == (fr.Join("new"), fr.Leave("dev"), fr.Send("lobby", "hi", "r1"))
    assert state.rooms == ("lobby", "new")


def test_membership_typing_who_and_dm_become_events() -> None:
    state = logged_in()
    dm = fr.DirectMessage("bob", "alice", "psst", 1.0)
    outcome = feed(
        state,
        fr.Joined("lobby", "bob"), fr.Left("lobby", "bob"), fr.TypingNotice("lobby", "bob"),
        fr.WhoList("lobby", ("alice", "bob")), dm, fr.Pong(), fr.Joined("elsewhere", "bob"),
    )
    assert outcome.events == (
        ev.MemberJoined("lobby", "bob"), ev.MemberLeft("lobby", "bob"), ev.Typing("lobby", "bob"),
        ev.Members("lobby", ("alice", "bob")), ev.DirectReceived(dm),
    )


# ------------------------------------------------------------ property


@settings(max_examples=150, deadline=None)
@given(
    count=st.integers(1, 60),
    seed=st.integers(0, 2**32 - 1),
    dup_rate=st.floats(0, 0.5),
    lost=st.sets(st.integers(1, 60), max_size=5),
)
def test_any_arrival_order_is_delivered_once_in_order(count: int, seed: int, dup_rate: float,
                                                      lost: set[int]) -> None:
    """Live ids shuffled and repeated, gaps answered by a gateway that lost some ids."""
    rng = random.Random(seed)
    stored = {i: msg(i) for i in range(1, count + 1) if i not in lost}
    arrivals = [i for i in range(1, count + 1) for _ in range(1 + (rng.random() < dup_rate))]
    rng.shuffle(arrivals)
    state = logged_in(ids=[])
    seen: list[int] = []
    questions: list[fr.HistoryQuery] = []
    def answer(q: fr.HistoryQuery) -> Outcome:
        assert q.before is not None
        page = [stored[j] for j in range(q.before - q.limit, q.before) if j in stored]
        return state.handle(fr.History("lobby", E1, tuple(page), True))

    def take(outcome: Outcome) -> None:
        seen.extend(delivered_ids(outcome))
        questions.extend(q for q in outcome.requests if isinstance(q, fr.HistoryQuery))

    for i in arrivals:
        take(state.handle(msg(i)))
        if questions and rng.random() < 0.3:  # the gateway answers, sometimes late
            take(answer(questions.pop(0)))
    while questions:
        take(answer(questions.pop(0)))
    assert seen == sorted(set(seen))
    assert set(seen) >= set(stored)
    assert seen[-1] == count
