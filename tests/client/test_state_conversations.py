"""ClientState and stored conversations (protocol v1.1): resume, dedup, answers."""

from __future__ import annotations

from client import events as ev
from client.state import ClientState
from protocol import frames as fr

PW = "correct horse battery"


def dm(msg_id: int, sender: str = "bob", to: str = "alice", epoch: str = "e1"
       ) -> fr.DirectMessage:
    return fr.DirectMessage(sender, to, f"m{msg_id}", 1.0, msg_id, epoch)


def logged_in(password: str | None = PW) -> ClientState:
    state = ClientState("alice", password=password)
    welcome = fr.Welcome("alice", "gw1", ("lobby",), "tok-1", {}, account=True,
                         dms=(fr.DmSummary("bob", "e1", 2, 0),), read={"lobby": 4})
    outcome = state.on_welcome(welcome, state.hello())
    assert outcome.events[1] == ev.AccountState(True, welcome.dms, {"lobby": 4})
    return state


def delivered(outcome: object) -> list[int | None]:
    events = getattr(outcome, "events", ())
    return [e.dm.id for e in events if isinstance(e, ev.DirectReceived)]


def test_hello_carries_the_password_and_resumes_conversations_with_at_names() -> None:
    state = logged_in()
    assert state.hello().password == PW
    state.handle(fr.DmHistory("bob", "e1", (dm(1), dm(2)), True))
    state.handle(dm(3, sender="alice", to="bob"))  # our own copy counts too
    assert state.hello().since == {"@bob": fr.Position("e1", 3)}


def test_a_stored_dm_is_delivered_once_across_a_resume() -> None:
    state = logged_in()
    assert delivered(state.handle(fr.DmHistory("bob", "e1", (dm(1), dm(2)), True))) == [1, 2]
    assert delivered(state.handle(dm(2))) == []  # sent again after a reconnect
    assert delivered(state.handle(dm(3))) == [3]
    assert delivered(state.handle(dm(1, epoch="e2"))) == [1]  # a new epoch starts again


def test_live_only_dms_pass_through() -> None:
    state = ClientState("alice")
    frame = fr.DirectMessage("bob", "alice", "hi", 1.0)
    assert state.handle(frame).events == (ev.DirectReceived(frame),)
    assert state.handle(frame).events == (ev.DirectReceived(frame),)


def test_a_requested_dm_history_is_an_answer_not_a_delivery() -> None:
    state = logged_in()
    state.handle(fr.DmHistory("bob", "e1", (dm(5),), True))
    state.expect_dm_history("BOB")
    answer = fr.DmHistory("bob", "e1", (dm(3), dm(4)), True)
    assert state.handle(answer).events == (ev.DmHistoryLoaded("bob", answer.messages, True),)


def test_registered_switches_to_the_new_password() -> None:
    state = ClientState("alice")
    state.expect_password("a new passphrase")
    assert state.handle(fr.Registered("alice")).events == (ev.Registered("alice"),)
    assert state.account and state.hello().password == "a new passphrase"
