"""Screenshots of the app in typical states, for people to look at.

Each test builds a realistic scene through the real widgets (stub client
behind them), checks what the scene must show, and saves a PNG in
artifacts/screenshots/.
"""

from __future__ import annotations

import time
import tkinter as tk
from collections.abc import Iterator

import pytest

from client.events import (
    DirectReceived,
    Disconnected,
    MemberJoined,
    Reconnecting,
    RoomMessage,
    Typing,
)
from client.gui.app import ChatApp
from client.gui.chat_controller import ChatController
from client.gui.model import ConvKey
from protocol.frames import DirectMessage
from tests.gui.conftest import FakeClock, screenshot, settle
from tests.gui.helpers import LOBBY, give_focus, log_in, send, shown
from tests.gui.stub_client import Script, StubClient, StubFactory, message

NOW = time.time()

CONVERSATION = [
    ("bob", "morning all! anyone tried the new build yet?"),
    ("carol", "yes — the reconnect after a gateway restart is seamless now"),
    ("carol", "I killed gw-1 twice and didn't lose a single message"),
    ("dave", "nice. what about the history scroll-back?"),
    ("erin", "works, it fetches 50 at a time when you scroll to the top"),
    ("bob", "I'll try it with the load test this afternoon"),
]


@pytest.fixture
def factory() -> StubFactory:
    history = [message("lobby", i + 1, sender, text, NOW - 900 + i * 45)
               for i, (sender, text) in enumerate(CONVERSATION)]
    return StubFactory(Script(members={"lobby": ["bob", "carol", "dave", "erin"]},
                              history={"lobby": history}))


@pytest.fixture
def app(tk_root: tk.Tk, factory: StubFactory, clock: FakeClock) -> Iterator[ChatApp]:
    app = ChatApp(tk_root, factory, gateways="localhost:5050", clock=clock)
    give_focus(tk_root)
    yield app
    if not app.closed:
        app.shutdown()


@pytest.fixture
def busy(app: ChatApp, factory: StubFactory) -> tuple[ChatController, StubClient]:
    """alice in a lively lobby, two more rooms with unread messages, a DM waiting."""
    chat = log_in(app, "alice")
    client = factory.last
    root = app.root
    settle(root, lambda: "load test" in shown(chat, LOBBY), what="history")
    send(chat, "/join dev")
    send(chat, "/join random")
    chat.select(LOBBY)
    send(chat, "great, I'll watch the dashboards")
    send(chat, "/me grabs a coffee")
    client.emit(MemberJoined("lobby", "frank"))
    client.emit(RoomMessage(message("lobby", client.next_id("lobby"), "frank",
                                    "hi! just joined from gw-2")))
    for i, text in enumerate(["build 142 is green", "@alice merging the resume fix", "deploying"]):
        client.emit(RoomMessage(message("dev", i + 1, "carol", text)))
    client.emit(RoomMessage(message("random", 1, "erin", "lunch at 12:30?")))
    client.emit(DirectReceived(DirectMessage("dave", "alice", "got a minute later?", NOW)))
    client.emit(Typing("lobby", "bob"))
    settle(root, lambda: chat.view.typing.text() == "bob is typing…", what="typing")
    settle(root, lambda: "sending…" not in shown(chat, LOBBY), what="echoes")
    return chat, client


def test_busy_chat_window(busy: tuple[ChatController, StubClient]) -> None:
    chat, _client = busy
    assert chat.view.conversations.unread(ConvKey.room("dev")) == 3
    assert chat.view.conversations.mentions(ConvKey.room("dev")) == 1
    assert chat.view.conversations.unread(ConvKey.direct("dave")) == 1
    assert chat.view.members.names() == ["alice", "bob", "carol", "dave", "erin", "frank"]
    assert "* alice grabs a coffee" in shown(chat, LOBBY)
    assert "hi! just joined from gw-2" in shown(chat, LOBBY)
    screenshot(chat.view.frame, "03-chat-busy")


def test_direct_message_view(busy: tuple[ChatController, StubClient]) -> None:
    chat, client = busy
    chat.open_direct("dave")
    dave = ConvKey.direct("dave")
    send(chat, "sure, after standup?")
    client.emit(DirectReceived(DirectMessage("dave", "alice", "perfect, thanks!", time.time())))
    root = chat.view.frame.winfo_toplevel()
    settle(root, lambda: "perfect, thanks!" in shown(chat, dave), what="dave's answer")
    assert chat.view.conversations.unread(dave) == 0
    assert str(chat.view.title.cget("text")) == "dave"
    screenshot(chat.view.frame, "04-direct-message")


def test_reconnecting_status(busy: tuple[ChatController, StubClient], clock: FakeClock) -> None:
    chat, client = busy
    client.emit(Disconnected("gateway closed the connection"))
    client.emit(Reconnecting("localhost:5051", 3.0, 1))
    root = chat.view.frame.winfo_toplevel()
    settle(root, lambda: chat.view.status.text() == "Reconnecting to localhost:5051 in 3 s…",
           what="the reconnect status")
    assert chat.view.banner.winfo_ismapped()
    screenshot(chat.view.frame, "05-reconnecting")


def test_small_window(app: ChatApp, busy: tuple[ChatController, StubClient]) -> None:
    chat, _client = busy
    app.root.geometry("600x400")
    settle(app.root, lambda: app.root.winfo_width() == 600, what="the resize")
    assert chat.view.composer.entry.winfo_ismapped()
    screenshot(chat.view.frame, "06-chat-600x400")
