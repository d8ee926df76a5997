"""Pure parts of the app (no display needed): conversation state, wording, colours."""

from __future__ import annotations

from client.gui import wording
from client.gui.login_view import split_addresses
from client.gui.model import TYPING_HINT_SECONDS, Conversation, ConvKey, TypingThrottle
from client.gui.theme import SENDER_COLOURS, sender_colour
from protocol.errors import ErrorCode, ProtocolError


def room(name: str = "lobby") -> Conversation:
    return Conversation(ConvKey.room(name), f"#{name}")


def test_a_message_id_is_shown_once_and_bounds_are_tracked() -> None:
    conv = room()
    assert conv.accept(5) and conv.accept(3) and conv.accept(9)
    assert not conv.accept(5)
    assert (conv.oldest_id, conv.newest_id) == (3, 9)


def test_scroll_back_is_offered_until_id_one_or_an_incomplete_answer() -> None:
    conv = room()
    for i in range(51, 101):
        conv.accept(i)
    conv.history_loaded(complete=True, older=False, count=50)
    assert conv.has_older
    assert conv.want_older() == 51
    assert conv.want_older() is None, "one request at a time"
    for i in range(1, 51):
        conv.accept(i)
    conv.history_loaded(complete=True, older=True, count=50)
    assert conv.want_older() is None
    assert conv.oldest_id == 1


def test_an_empty_or_incomplete_older_answer_ends_scroll_back() -> None:
    conv = room()
    conv.accept(500)
    conv.history_loaded(complete=True, older=False, count=1)
    assert conv.want_older() == 500
    conv.history_loaded(complete=False, older=True, count=0)
    assert not conv.has_older
    other = room("dev")
    other.accept(700)
    other.history_loaded(complete=False, older=False, count=1)
    assert not other.has_older, "the server no longer keeps older ones"


def test_an_epoch_reset_forgets_ids() -> None:
    conv = room()
    conv.accept(7)
    conv.reset()
    assert conv.accept(7) and conv.oldest_id == 7


def test_direct_threads_ask_for_older_only_after_a_stored_history_answer() -> None:
    assert ConvKey.direct("Bob") == ConvKey.direct("bob")
    assert ConvKey.direct("Bob").ident == "@bob" and ConvKey.room("dev").ident == "#dev"
    dm = Conversation(ConvKey.direct("Bob"), "Bob")
    dm.accept(3)
    assert dm.want_older() is None  # a guest's thread: nothing stored to ask for
    dm.history_loaded(complete=True, older=True, count=1)  # an account's stored history
    assert dm.want_older() == 3


def test_pending_sends_are_resolved_by_their_echo_in_order() -> None:
    conv = room()
    conv.add_pending("r1", "hi")
    conv.add_pending("r2", "hi")
    conv.add_pending("r3", "bye")
    pending = conv.take_echo("hi")
    assert pending is not None and pending.ref == "r1"
    assert conv.take_echo("nope") is None
    dropped = conv.drop_pending("r3")
    assert dropped is not None and dropped.text == "bye"
    assert [p.ref for p in conv.pending] == ["r2"]


def test_members_are_case_insensitive_and_sorted() -> None:
    conv = room()
    conv.set_members(["carol", "Bob"])
    assert conv.add_member("alice")
    assert not conv.add_member("BOB")
    assert conv.members() == ["alice", "BOB", "carol"]
    assert conv.remove_member("bob") and not conv.remove_member("bob")
    assert conv.members() == ["alice", "carol"]


def test_typing_hints_expire_and_stop_on_a_message() -> None:
    conv = room()
    conv.typing_seen("bob", now=100.0)
    conv.typing_seen("carol", now=101.0)
    assert conv.typing_names(101.0) == ["bob", "carol"]
    assert conv.typing_names(100.0 + TYPING_HINT_SECONDS) == ["carol"]
    conv.typing_stopped("Carol")
    assert conv.typing_names(102.0) == []


def test_typing_throttle_allows_one_notice_per_interval_per_room() -> None:
    throttle = TypingThrottle(2.0)
    assert throttle.due("lobby", 10.0)
    assert not throttle.due("lobby", 11.9)
    assert throttle.due("dev", 11.9)
    assert throttle.due("lobby", 12.0)


def test_wording() -> None:
    assert wording.typing_line([]) == ""
    assert wording.typing_line(["alice"]) == "alice is typing…"
    assert wording.typing_line(["a", "b"]) == "a and b are typing…"
    assert wording.typing_line(["a", "b", "c"]) == "a, b and c are typing…"
    assert wording.typing_line(["a", "b", "c", "d"]) == "Several people are typing…"
    assert wording.reconnecting("gw:1", 2.6, 1) == "Reconnecting to gw:1 in 3 s…"
    assert wording.reconnecting("gw:1", 0.2, 4) == "Reconnecting to gw:1 now… (attempt 4)"
    assert wording.offline("replaced") == "Offline: you logged in from somewhere else."
    unknown = ProtocolError(ErrorCode.BAD_FRAME, "the frame was odd")
    assert wording.refusal(unknown) == "the frame was odd"
    taken = ProtocolError(ErrorCode.NAME_TAKEN, "taken")
    assert wording.login_refusal(taken, "zoe").startswith("The name “zoe” is already taken")


def test_sender_colours_are_stable_and_ignore_case() -> None:
    assert sender_colour("alice") == sender_colour("ALICE") == sender_colour("Alice")
    assert sender_colour("alice") in SENDER_COLOURS
    assert len({sender_colour(f"user{i}") for i in range(200)}) == len(SENDER_COLOURS)


def test_gateway_field_is_split_on_commas() -> None:
    assert split_addresses(" a:1, b:2 ,, tls://c:3 ") == ["a:1", "b:2", "tls://c:3"]
    assert split_addresses(" , ") == []
