"""The chat window driven through its real widgets, with a stub client behind it."""

from __future__ import annotations

import time
import tkinter as tk
from collections.abc import Iterator

import pytest

from client.events import (
    Closed,
    Connected,
    DirectReceived,
    Disconnected,
    EpochReset,
    HistoryLoaded,
    MemberJoined,
    MemberLeft,
    Reconnecting,
    RoomMessage,
    SendFailed,
    ServerError,
    Typing,
)
from client.gui.app import ChatApp
from client.gui.chat_controller import ChatController
from client.gui.model import ConvKey
from client.gui.theme import sender_colour
from client.gui.widgets import StatusLevel
from protocol.errors import ErrorCode, ProtocolError
from protocol.frames import DirectMessage
from tests.gui.conftest import FakeClock, screenshot, settle
from tests.gui.helpers import LOBBY, give_focus, log_in, send, shown, type_and_enter
from tests.gui.stub_client import Script, StubClient, StubFactory, message


@pytest.fixture
def factory() -> StubFactory:
    script = Script(members={"lobby": ["bob", "carol"]},
                    history={"lobby": [message("lobby", i, "bob" if i % 2 else "carol",
                                               f"old message {i}", time.time() - 3600 + i)
                                       for i in range(1, 121)]})
    return StubFactory(script)


@pytest.fixture
def app(tk_root: tk.Tk, factory: StubFactory, clock: FakeClock) -> Iterator[ChatApp]:
    app = ChatApp(tk_root, factory, gateways="localhost:5050", clock=clock)
    give_focus(tk_root)
    yield app
    if not app.closed:
        app.shutdown()


@pytest.fixture
def chat(app: ChatApp) -> ChatController:
    return log_in(app, "alice")


@pytest.fixture
def client(chat: ChatController, factory: StubFactory) -> StubClient:
    return factory.last


def run(chat: ChatController, condition: object, what: str = "the view") -> None:
    root = chat.view.frame.winfo_toplevel()
    settle(root, condition if callable(condition) else (lambda: condition), what=what)


def test_login_shows_lobby_with_history_members_and_status(chat: ChatController,
                                                           client: StubClient) -> None:
    run(chat, lambda: "old message 120" in shown(chat, LOBBY), "history")
    assert chat.view.active == LOBBY
    assert chat.view.conversations.keys() == [LOBBY]
    assert ("who", "lobby") in client.calls
    run(chat, lambda: chat.view.members.names() == ["alice", "bob", "carol"], "members")
    assert chat.view.status.text() == "Connected to gw-1 as alice"
    assert chat.view.status.level is StatusLevel.OK
    assert str(chat.view.title.cget("text")) == "# lobby"


def test_message_from_another_client_appears_with_time_and_sender(
        chat: ChatController, client: StubClient) -> None:
    ts = time.time()
    client.emit(RoomMessage(message("lobby", 121, "bob", "hello alice", ts)))
    run(chat, lambda: "hello alice" in shown(chat, LOBBY), "bob's message")
    text = chat.view.view(LOBBY).text
    start = text.search("hello alice", "1.0")
    header = text.get(f"{start} -1 lines linestart", f"{start} -1 lines lineend")
    assert header == f"bob  {time.strftime('%H:%M', time.localtime(ts))}"
    name_tags = text.tag_names(f"{start} -1 lines linestart")
    assert "sender:bob" in name_tags
    assert text.tag_cget("sender:bob", "foreground") == sender_colour("bob")


def test_own_message_is_sent_marked_and_the_entry_cleared(chat: ChatController,
                                                          client: StubClient) -> None:
    client.script.echo = False  # the echo comes when the test says, not during the keypress
    send(chat, "  hi everyone  ")
    assert ("send", "lobby", "hi everyone") in client.calls
    assert chat.view.composer.text() == ""
    assert "hi everyone  sending…" in shown(chat, LOBBY), "shown at once, as pending"
    client.emit(RoomMessage(message("lobby", client.next_id("lobby"), "alice", "hi everyone")))
    run(chat, lambda: "sending…" not in shown(chat, LOBBY), "the echo to replace it")
    view = chat.view.view(LOBBY)
    start = view.text.search("hi everyone", "1.0")
    assert "own" in view.text.tag_names(start)
    assert "alice  you" in shown(chat, LOBBY)
    assert shown(chat, LOBBY).count("hi everyone") == 1


def test_pending_message_shows_until_echo_and_failure_is_marked(
        chat: ChatController, client: StubClient) -> None:
    client.script.echo = False
    send(chat, "are you there")
    assert "are you there  sending…" in shown(chat, LOBBY)
    ref = f"r{len(client.called('send'))}"
    client.emit(SendFailed(ref, ProtocolError(ErrorCode.RATE_LIMITED, "slow down", ref)))
    run(chat, lambda: "not sent" in shown(chat, LOBBY), "failure")
    assert "are you there  — not sent: You are sending too fast." in shown(chat, LOBBY)


def test_member_joins_and_leaves_in_the_member_list(chat: ChatController,
                                                    client: StubClient) -> None:
    run(chat, lambda: chat.view.members.names() == ["alice", "bob", "carol"], "members")
    client.emit(MemberJoined("lobby", "dave"))
    run(chat, lambda: "dave" in chat.view.members.names(), "dave joined")
    assert chat.view.members.names() == ["alice", "bob", "carol", "dave"]
    assert "dave joined #lobby" in shown(chat, LOBBY)
    assert str(chat.view.members_title.cget("text")) == "MEMBERS · 4"
    client.emit(MemberLeft("lobby", "bob"))
    run(chat, lambda: "bob" not in chat.view.members.names(), "bob left")
    assert chat.view.members.names() == ["alice", "carol", "dave"]
    assert "bob left #lobby" in shown(chat, LOBBY)


def test_typing_hint_shows_and_disappears_after_four_seconds(
        chat: ChatController, client: StubClient, clock: FakeClock) -> None:
    client.emit(Typing("lobby", "bob"))
    run(chat, lambda: chat.view.typing.text() == "bob is typing…", "typing hint")
    client.emit(Typing("lobby", "carol"))
    run(chat, lambda: chat.view.typing.text() == "bob and carol are typing…", "two typing")
    clock.advance(3.0)
    chat.view.frame.update()
    assert chat.view.typing.text() == "bob and carol are typing…"
    client.emit(RoomMessage(message("lobby", 121, "carol", "done")))
    run(chat, lambda: chat.view.typing.text() == "bob is typing…", "carol sent")
    clock.advance(1.5)
    run(chat, lambda: chat.view.typing.text() == "", "the hint to expire")


def test_typing_is_sent_at_most_every_two_seconds(chat: ChatController, client: StubClient,
                                                  clock: FakeClock) -> None:
    entry = chat.view.composer.entry
    for ch in "hel":
        entry.insert("end", ch)
        clock.advance(0.5)
    assert client.called("typing") == [("typing", "lobby")]
    clock.advance(1.0)
    entry.insert("end", "l")
    assert len(client.called("typing")) == 2
    entry.delete(0, "end")
    entry.insert("end", "/who")
    clock.advance(5)
    entry.insert("end", " ")
    assert len(client.called("typing")) == 2, "commands are not typing"


def test_unread_counts_for_rooms_not_shown(chat: ChatController, client: StubClient) -> None:
    send(chat, "/join dev")
    dev = ConvKey.room("dev")
    run(chat, lambda: chat.view.active == dev, "dev selected")
    assert ("join", "dev") in client.calls and ("who", "dev") in client.calls
    for i in range(3):
        client.emit(RoomMessage(message("lobby", 121 + i, "bob", f"ping {i}")))
    run(chat, lambda: chat.view.conversations.unread(LOBBY) == 3, "3 unread")
    assert chat.view.conversations.unread(dev) == 0
    chat.view.conversations.tree.selection_set(LOBBY.ident)
    run(chat, lambda: chat.view.active == LOBBY, "lobby selected by a click")
    assert chat.view.conversations.unread(LOBBY) == 0
    assert chat.view.frame.winfo_toplevel().focus_get() is chat.view.composer.entry


def test_join_from_the_side_field_and_leave(chat: ChatController, client: StubClient) -> None:
    entry = chat.view.join_entry
    entry.focus_set()
    type_and_enter(entry, "#random")
    random_room = ConvKey.room("random")
    run(chat, lambda: chat.view.active == random_room, "random selected")
    assert chat.view.conversations.keys() == [LOBBY, random_room]
    assert chat.view.join_var.get() == ""
    assert chat.view.frame.winfo_toplevel().focus_get() is chat.view.composer.entry
    send(chat, "/leave")
    assert ("leave", "random") in client.calls
    run(chat, lambda: chat.view.active == LOBBY, "back in the lobby")
    assert chat.view.conversations.keys() == [LOBBY]


def test_bad_room_name_is_refused_in_plain_words(chat: ChatController,
                                                 client: StubClient) -> None:
    send(chat, "/join Not_Valid!")
    assert not client.called("join")
    assert "Room names are 1 to 32 lower-case letters" in shown(chat, LOBBY)


def test_direct_message_by_command_opens_its_own_view(chat: ChatController,
                                                       client: StubClient) -> None:
    send(chat, "/msg bob see you at lunch?")
    bob = ConvKey.direct("bob")
    run(chat, lambda: chat.view.active == bob, "the DM view")
    assert ("dm", "bob", "see you at lunch?") in client.calls
    run(chat, lambda: "see you at lunch?" in shown(chat, bob), "the DM")
    assert "see you at lunch?" not in shown(chat, LOBBY)
    assert str(chat.view.title.cget("text")) == "bob"
    assert chat.view.members.names() == ["alice", "bob"]
    client.emit(DirectReceived(DirectMessage("bob", "alice", "sure, 12:30", time.time())))
    run(chat, lambda: "sure, 12:30" in shown(chat, bob), "bob's answer")
    send(chat, "great")
    assert ("dm", "bob", "great") in client.calls


def test_double_click_on_a_member_opens_a_dm(chat: ChatController, client: StubClient) -> None:
    run(chat, lambda: "carol" in chat.view.members.names(), "members")
    tree = chat.view.members.tree
    tree.see("carol")
    chat.view.frame.update()
    box = tree.bbox("carol")
    assert isinstance(box, tuple)
    x, y, _w, h = box
    for _ in range(2):  # two quick clicks make Tk's double click
        tree.event_generate("<ButtonPress-1>", x=x + 5, y=y + h // 2)
        tree.event_generate("<ButtonRelease-1>", x=x + 5, y=y + h // 2)
    carol = ConvKey.direct("carol")
    run(chat, lambda: chat.view.active == carol, "the DM with carol")
    send(chat, "hi carol")
    assert ("dm", "carol", "hi carol") in client.calls


def test_incoming_dm_counts_as_unread_and_dm_to_nobody_fails(
        chat: ChatController, client: StubClient) -> None:
    client.emit(DirectReceived(DirectMessage("Dave", "alice", "psst", time.time())))
    dave = ConvKey.direct("dave")
    run(chat, lambda: chat.view.has(dave) and chat.view.conversations.unread(dave) == 1,
        "dave's unread DM")
    assert chat.view.active == LOBBY
    client.script.offline_users.add("ghost")
    send(chat, "/msg ghost boo")
    ghost = ConvKey.direct("ghost")
    run(chat, lambda: "not sent" in shown(chat, ghost), "the failure")
    assert "Nobody with that name is online." in shown(chat, ghost)


def test_scrolling_to_the_top_fetches_older_history(chat: ChatController,
                                                    client: StubClient) -> None:
    view = chat.view.view(LOBBY)
    run(chat, lambda: "old message 120" in view.contents(), "history")
    assert "old message 70\n" not in view.contents()
    view.scroll_to_top()
    run(chat, lambda: ("history", "lobby", 71, 50) in client.calls, "the scroll-back request")
    run(chat, lambda: "old message 21\n" in view.contents(), "older messages")
    assert view.contents().index("old message 21\n") < view.contents().index("old message 71")
    assert not view.at_top(), "the reader keeps looking at the same messages"
    view.scroll_to_top()
    run(chat, lambda: "This is the start of #lobby." in view.contents(), "the very start")
    assert ("history", "lobby", 21, 50) in client.calls
    assert "old message 1\n" in view.contents()


def test_who_and_help_and_unknown_commands(chat: ChatController, client: StubClient) -> None:
    send(chat, "/who")
    run(chat, lambda: "In #lobby: alice, bob, carol" in shown(chat, LOBBY), "the who answer")
    send(chat, "/help")
    assert "/msg NAME TEXT    private message to NAME" in shown(chat, LOBBY)
    assert "double-click a member to message them" in shown(chat, LOBBY)
    send(chat, "/frobnicate")
    assert "Unknown command /frobnicate; /help lists them" in shown(chat, LOBBY)
    assert chat.view.composer.text() == "/frobnicate", "a mistyped command stays to be fixed"


def test_me_is_shown_as_an_action(chat: ChatController, client: StubClient) -> None:
    send(chat, "/me waves")
    assert ("send", "lobby", "/me waves") in client.calls
    run(chat, lambda: "* alice waves" in shown(chat, LOBBY), "the action")


def test_server_error_and_epoch_reset_are_explained(chat: ChatController,
                                                    client: StubClient) -> None:
    client.emit(ServerError(ProtocolError(ErrorCode.UNAVAILABLE, "broker down")))
    run(chat, lambda: "The chat server is having trouble" in shown(chat, LOBBY), "the error")
    client.emit(EpochReset("lobby", "e2"))
    client.emit(HistoryLoaded("lobby", (message("lobby", 1, "bob", "fresh start"),), True,
                              False))
    run(chat, lambda: "fresh start" in shown(chat, LOBBY), "the new history")
    assert "old message" not in shown(chat, LOBBY)
    assert "The server lost this room's history" in shown(chat, LOBBY)


def test_status_line_follows_the_connection(chat: ChatController, client: StubClient,
                                           clock: FakeClock) -> None:
    client.emit(Disconnected("connection lost"))
    run(chat, lambda: chat.view.status.level is StatusLevel.WARN, "disconnected")
    client.emit(Reconnecting("127.0.0.1:5051", 3.0, 2))
    run(chat, lambda: chat.view.status.text()
        == "Reconnecting to 127.0.0.1:5051 in 3 s… (attempt 2)", "reconnecting")
    clock.advance(2.0)
    run(chat, lambda: chat.view.status.text()
        == "Reconnecting to 127.0.0.1:5051 in 1 s… (attempt 2)", "the countdown")
    screenshot(chat.view.frame, "05-reconnecting-stub")
    before = len(client.called("who"))
    client.emit(Connected("gw-2", "alice", True))
    run(chat, lambda: chat.view.status.text() == "Connected to gw-2 as alice (resumed)",
        "connected again")
    assert len(client.called("who")) == before + 1, "members asked again after reconnect"
    client.emit(Closed("replaced"))
    run(chat, lambda: chat.view.status.level is StatusLevel.ERROR, "offline")
    assert chat.view.status.text() == "Offline: you logged in from somewhere else."


def test_quit_and_closing_the_window_say_bye(app: ChatApp, chat: ChatController,
                                             client: StubClient) -> None:
    send(chat, "/quit")
    assert client.closed
    assert app.closed


def test_window_close_button_closes_the_client(app: ChatApp, chat: ChatController,
                                               client: StubClient) -> None:
    app.root.protocol("WM_DELETE_WINDOW")  # the handler is registered
    app.root.tk.call(app.root.protocol("WM_DELETE_WINDOW"))
    assert client.called("close")
    assert app.closed


@pytest.mark.parametrize("size", ["600x400", "1600x1000"])
def test_layout_is_usable_from_small_to_large(app: ChatApp, chat: ChatController,
                                              size: str) -> None:
    app.root.geometry(size)
    run(chat, lambda: app.root.winfo_width() == int(size.split("x")[0]), "the resize")
    view = chat.view
    width = app.root.winfo_width()
    sized: list[tuple[tk.Misc, int]] = [
        (view.composer.entry, 120), (view.view(LOBBY).text, 200),
        (view.conversations.tree, 100), (view.members.tree, 80)]
    for widget, minimum in sized:
        assert widget.winfo_ismapped()
        assert widget.winfo_width() >= minimum, (widget, widget.winfo_width())
        assert widget.winfo_rootx() + widget.winfo_width() <= app.root.winfo_rootx() + width
    bottom_row: list[tk.Misc] = [view.composer.entry, view.composer.button, view.status.label]
    for item in bottom_row:
        bottom = item.winfo_rooty() + item.winfo_height()
        assert bottom <= app.root.winfo_rooty() + app.root.winfo_height()


def test_an_empty_room_invites_the_first_message(chat: ChatController,
                                                 client: StubClient) -> None:
    send(chat, "/join quiet")
    quiet = ConvKey.room("quiet")
    run(chat, lambda: "No messages in #quiet yet. Say hello!" in shown(chat, quiet), "the note")
    client.emit(RoomMessage(message("quiet", 1, "bob", "first!")))
    run(chat, lambda: "first!" in shown(chat, quiet), "the first message")
    assert shown(chat, quiet).startswith("This is the start of #quiet.\n")
    assert "No messages" not in shown(chat, quiet)
