"""Notifications, links, Retry, presence and the keyboard, through the real widgets."""

from __future__ import annotations

import threading
import time
import tkinter as tk
from collections.abc import Iterator

import pytest

from client.events import DirectReceived, MemberJoined, MemberLeft, RoomMessage, SendFailed
from client.gui.app import ChatApp
from client.gui.chat_controller import ChatController
from client.gui.model import ConvKey
from protocol.errors import ErrorCode, ProtocolError
from protocol.frames import DirectMessage
from tests.gui.conftest import FakeClock, screenshot, settle
from tests.gui.helpers import LOBBY, give_focus, log_in, send, shown
from tests.gui.stub_client import Script, StubClient, StubFactory, message

DEV = ConvKey.room("dev")
BOB = ConvKey.direct("bob")


@pytest.fixture
def factory() -> StubFactory:
    history = [message("lobby", i, "bob" if i % 2 else "carol", f"earlier note {i}",
                       time.time() - 3000 + i * 20) for i in range(1, 41)]
    return StubFactory(Script(members={"lobby": ["bob", "carol"]}, history={"lobby": history}))


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


def title(chat: ChatController) -> str:
    return str(chat.view.frame.winfo_toplevel().title())


def test_mentions_are_highlighted_counted_apart_and_titled(chat: ChatController,
                                                          client: StubClient) -> None:
    send(chat, "/join dev")
    run(chat, lambda: chat.view.active == DEV, "dev")
    client.emit(RoomMessage(message("lobby", 41, "bob", "anyone around?")))
    client.emit(RoomMessage(message("lobby", 42, "carol", "@alice can you review #142?")))
    run(chat, lambda: chat.view.conversations.unread(LOBBY) == 2, "two unread")
    assert chat.view.conversations.mentions(LOBBY) == 1
    assert title(chat) == "(2, @1) #dev — ChatService"
    lobby = chat.view.view(LOBBY)
    start = lobby.text.search("@alice", "1.0")
    assert "mention" in lobby.text.tag_names(start)
    assert "mention" not in lobby.text.tag_names(lobby.text.search("anyone", "1.0"))
    chat.select(LOBBY)
    assert title(chat) == "#lobby — ChatService"
    assert chat.view.conversations.unread(LOBBY) == 0
    assert chat.view.conversations.mentions(LOBBY) == 0


def test_new_messages_line_and_jump_to_latest(chat: ChatController, client: StubClient) -> None:
    lobby = chat.view.view(LOBBY)
    run(chat, lambda: "earlier note 40" in lobby.contents(), "history")
    send(chat, "/join dev")
    run(chat, lambda: chat.view.active == DEV, "dev")
    client.emit(RoomMessage(message("lobby", 41, "bob", "first unread")))
    client.emit(RoomMessage(message("lobby", 42, "carol", "@alice look at this")))
    run(chat, lambda: chat.view.conversations.unread(LOBBY) == 2, "unread")
    chat.select(LOBBY)
    run(chat, lambda: lobby.laid_out(), "the lobby shown")
    text = lobby.contents()
    assert text.index("earlier note 40") < text.index("New messages") < text.index("first unread")
    assert "New messages" not in shown(chat, DEV)
    screenshot(chat.view.frame, "09-mention-and-new-messages")
    chat.select(DEV)
    assert "New messages" not in lobby.contents(), "read: the line goes when you leave"

    chat.select(LOBBY)
    lobby.scroll_to_top()
    run(chat, lambda: lobby.at_top(), "scrolled up")
    assert not lobby.jump_shown
    client.emit(RoomMessage(message("lobby", 43, "bob", "something new")))
    run(chat, lambda: lobby.jump_shown, "the jump-to-latest button")
    assert lobby.jump.winfo_ismapped()
    lobby.jump.invoke()
    run(chat, lambda: float(lobby.text.yview()[1]) >= 0.999, "at the bottom")
    assert not lobby.jump_shown


def test_bell_rings_for_a_dm_or_mention_only_when_the_window_is_in_the_background(
        chat: ChatController, client: StubClient, monkeypatch: pytest.MonkeyPatch) -> None:
    rings: list[int] = []
    monkeypatch.setattr(chat.view.frame, "bell", lambda *a, **k: rings.append(1))
    client.emit(DirectReceived(DirectMessage("bob", "alice", "psst", time.time())))
    run(chat, lambda: chat.view.has(BOB), "the DM")
    assert rings == [], "the window has the focus: no bell"
    chat.window_focused = lambda: False
    client.emit(RoomMessage(message("lobby", 41, "carol", "no mention here")))
    client.emit(DirectReceived(DirectMessage("bob", "alice", "still there?", time.time())))
    client.emit(RoomMessage(message("lobby", 42, "carol", "@Alice ping")))
    run(chat, lambda: "@Alice ping" in shown(chat, LOBBY), "the mention")
    assert rings == [1, 1]


def test_links_open_in_the_browser(chat: ChatController, client: StubClient,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    monkeypatch.setattr("client.gui.message_view.webbrowser.open",
                        lambda url, new=0: opened.append(url) or True)
    client.emit(RoomMessage(message("lobby", 41, "bob", "docs at https://example.org/x.")))
    view = chat.view.view(LOBBY)
    run(chat, lambda: "https://example.org/x" in view.contents(), "the link")
    view.scroll_to_bottom()
    chat.view.frame.update()
    start = view.text.search("https://example.org/x", "1.0")
    assert "link" in view.text.tag_names(start)
    view.text.see(start)
    chat.view.frame.update()
    bbox = view.text.bbox(f"{start}+3c")
    assert bbox is not None
    x, y, _w, h = bbox
    view.text.event_generate("<Motion>", x=x + 1, y=y + h // 2)  # Tk's "current" follows
    view.text.event_generate("<Button-1>", x=x + 1, y=y + h // 2)
    chat.view.frame.update()
    assert opened == ["https://example.org/x"]


def test_a_failed_send_offers_retry(chat: ChatController, client: StubClient) -> None:
    client.script.echo = False
    send(chat, "are you there")
    client.emit(SendFailed("r1", ProtocolError(ErrorCode.RATE_LIMITED, "slow down", "r1")))
    view = chat.view.view(LOBBY)
    run(chat, lambda: "Retry" in view.contents(), "the Retry link")
    client.script.echo = True
    chat.retry(LOBBY, "r1")
    run(chat, lambda: "not sent" not in view.contents(), "the retried message")
    assert client.called("send") == [("send", "lobby", "are you there")] * 2
    assert view.contents().count("are you there") == 1


def test_dm_dots_show_who_is_online(chat: ChatController, client: StubClient) -> None:
    client.emit(DirectReceived(DirectMessage("bob", "alice", "hi", time.time())))
    client.emit(DirectReceived(DirectMessage("dave", "alice", "hello", time.time())))
    dave = ConvKey.direct("dave")
    run(chat, lambda: chat.view.has(dave), "the DMs")
    conversations = chat.view.conversations
    run(chat, lambda: conversations.online(BOB) is True, "bob online (in the lobby)")
    assert conversations.online(dave) is False
    client.emit(MemberJoined("lobby", "dave"))
    run(chat, lambda: conversations.online(dave) is True, "dave came online")
    client.emit(MemberLeft("lobby", "bob"))
    run(chat, lambda: conversations.online(BOB) is False, "bob went away")


def test_help_lines_are_in_aligned_columns(chat: ChatController) -> None:
    send(chat, "/help")
    view = chat.view.view(LOBBY)
    start = view.text.search("/msg NAME TEXT", "1.0")
    assert "mono" in view.text.tag_names(start)


# -- keyboard -------------------------------------------------------------------


def key(widget: tk.Misc, sequence: str) -> None:
    widget.event_generate(sequence)
    widget.update()


def test_alt_number_switches_and_ctrl_k_finds_by_name(chat: ChatController,
                                                     client: StubClient) -> None:
    send(chat, "/join dev")
    client.emit(DirectReceived(DirectMessage("bob", "alice", "hi", time.time())))
    run(chat, lambda: chat.view.has(BOB), "the DM")
    entry = chat.view.composer.entry
    key(entry, "<Alt-Key-1>")
    assert chat.view.active == DEV, "rooms in order: dev, lobby; then people"
    key(entry, "<Alt-Key-3>")
    assert chat.view.active == BOB
    key(chat.view.composer.entry, "<Alt-Key-2>")
    assert chat.view.active == LOBBY
    key(chat.view.composer.entry, "<Control-Key-k>")
    switcher = chat.view.switcher
    assert switcher is not None
    run(chat, lambda: switcher.entry.winfo_viewable(), "the switcher")
    switcher.entry.insert("end", "bo")
    switcher.entry.update()
    assert switcher.shown() == ["bob"]
    key(switcher.entry, "<Return>")
    assert chat.view.active == BOB and chat.view.switcher is None
    key(chat.view.composer.entry, "<Control-Key-k>")
    switcher = chat.view.switcher
    assert switcher is not None
    key(switcher.entry, "<Escape>")
    assert chat.view.active == BOB and chat.view.switcher is None


def test_ctrl_a_selects_all_in_a_text_field(chat: ChatController) -> None:
    entry = chat.view.composer.entry
    entry.insert("end", "select me please")
    entry.icursor(3)
    key(entry, "<Control-Key-a>")
    assert entry.selection_present()
    assert entry.selection_get() == "select me please"


def test_tab_reaches_every_control(chat: ChatController) -> None:
    view = chat.view
    wanted = {view.join_entry, view.conversations.tree, view.close_button,
              view.composer.entry, view.composer.button, view.members.tree}
    reached = set()
    widget: tk.Misc = view.composer.entry
    for _ in range(12):
        widget = widget.tk_focusNext() or widget
        reached.add(widget)
    assert wanted <= reached, wanted - reached


def test_escape_cancels_connecting(tk_root: tk.Tk, factory: StubFactory) -> None:
    held = threading.Event()
    factory.script.hold_connect = held
    app = ChatApp(tk_root, factory, gateways="localhost:5050")
    give_focus(tk_root)
    view = app.login_view
    assert view is not None
    view.name_entry.insert("end", "alice")
    key(view.name_entry, "<Return>")
    assert view.busy
    settle(tk_root, lambda: factory.clients and factory.last.calls, what="connect called")
    key(tk_root.focus_get() or view.frame, "<Escape>")
    assert not view.busy
    assert view.error_text().startswith("Cancelled.")
    held.set()  # the old attempt now "succeeds": it must not log in
    settle(tk_root, lambda: factory.last.closed, what="the cancelled client closed")
    tk_root.update()
    assert app.chat is None and app.login_view is view
    assert str(view.name_entry.cget("state")) != "disabled"
    app.shutdown()


def test_right_to_left_text_and_emoji_leave_the_layout_alone(chat: ChatController,
                                                             client: StubClient) -> None:
    """Tk 8.6 has no bidi and draws emoji as it can: the lines around must stay intact."""
    client.emit(RoomMessage(message("lobby", 41, "carol", "مرحبا بالعالم 😀🎉 \u202eevil")))
    client.emit(RoomMessage(message("lobby", 42, "bob", "next line")))
    view = chat.view.view(LOBBY)
    run(chat, lambda: "next line" in view.contents(), "both messages")
    lines = view.contents().split("\n")
    at = lines.index("next line")
    assert lines[at - 1].startswith("bob  ")
    assert lines[at - 2].startswith("مرحبا بالعالم 😀🎉")
