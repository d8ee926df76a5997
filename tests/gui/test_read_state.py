"""Read marks through the real widgets (stub client): sent only for accounts, only while
the person looks at the conversation, once per burst."""

from __future__ import annotations

import time
import tkinter as tk
from collections.abc import Callable, Iterator

import pytest

from client.events import DirectReceived, RoomMessage
from client.gui.app import ChatApp
from client.gui.chat_controller import ChatController
from client.gui.model import ConvKey
from protocol.frames import DirectMessage, DmSummary
from tests.gui.conftest import FakeClock, settle
from tests.gui.helpers import LOBBY, give_focus, log_in
from tests.gui.stub_client import Script, StubFactory, message

BOB = ConvKey.direct("bob")


@pytest.fixture
def factory() -> StubFactory:
    now = time.time()
    history = [message("lobby", i, "bob", f"note {i}", now - 100 + i) for i in range(1, 6)]
    stored = [DirectMessage("bob", "alice", f"dm {i}", now - 50 + i, i, "e1")
              for i in range(1, 5)]
    return StubFactory(Script(history={"lobby": history}, dms=(DmSummary("bob", "e1", 4, 2),),
                              read={"lobby": 3}, dm_history={"bob": stored},
                              catch_up=stored[2:]))


@pytest.fixture
def app(tk_root: tk.Tk, factory: StubFactory, clock: FakeClock) -> Iterator[ChatApp]:
    app = ChatApp(tk_root, factory, gateways="localhost:5050", clock=clock)
    give_focus(tk_root)
    yield app
    if not app.closed:
        app.shutdown()


def account_chat(app: ChatApp) -> ChatController:
    assert app.login_view is not None
    app.login_view.password_var.set("a long enough password")
    return log_in(app, "alice")


def ticking(root: tk.Misc, clock: FakeClock, condition: Callable[[], object],
            what: str) -> None:
    """Let the app run with its clock moving 50 ms a step (the read marks' delay passes)."""
    def step() -> object:
        clock.advance(0.05)
        return condition()

    settle(root, step, what=what)


def marks(factory: StubFactory) -> list[tuple[object, ...]]:
    return factory.last.called("mark_read")


def test_account_login_counts_from_the_marks_and_reads_what_is_shown(
        app: ChatApp, factory: StubFactory, clock: FakeClock) -> None:
    chat = account_chat(app)
    root = app.root
    settle(root, lambda: chat.view.has(BOB) and chat.view.conversations.unread(BOB) == 2,
           what="bob's two unread dms")
    lobby = chat.view.view(LOBBY).contents()
    assert lobby.index("note 3") < lobby.index("New messages") < lobby.index("note 4")
    settle(root, lambda: chat.view.view(LOBBY).at_bottom(), what="the lobby laid out")
    ticking(root, clock, lambda: marks(factory), what="the lobby marked read")
    assert marks(factory) == [("mark_read", "lobby", None, 5)]
    chat.select(BOB)
    settle(root, lambda: "dm 1" in chat.view.view(BOB).contents(), what="bob's history")
    assert factory.last.called("dm_history") == [("dm_history", "bob", 3, 50)]
    ticking(root, clock, lambda: ("mark_read", None, "bob", 4) in marks(factory),
            what="bob read")
    factory.last.emit(RoomMessage(message("lobby", 6, "bob", "note 6")))
    factory.last.emit(DirectReceived(DirectMessage("bob", "alice", "dm 5", time.time(), 5,
                                                   "e1")))
    settle(root, lambda: "dm 5" in chat.view.view(BOB).contents(), what="dm 5")
    ticking(root, clock, lambda: ("mark_read", None, "bob", 5) in marks(factory),
            what="bob read again")
    assert ("mark_read", "lobby", None, 6) not in marks(factory), "the lobby is not shown"
    assert chat.view.conversations.unread(LOBBY) == 1


def test_a_guest_sends_no_read_marks(app: ChatApp, factory: StubFactory,
                                     clock: FakeClock) -> None:
    chat = log_in(app, "alice")
    factory.last.emit(RoomMessage(message("lobby", 6, "bob", "note 6")))
    settle(app.root, lambda: "note 6" in chat.view.view(LOBBY).contents(), what="note 6")
    ticking(app.root, clock, lambda: clock.now > 1010, what="ten seconds of the app clock")
    assert marks(factory) == []
    assert not chat.view.has(BOB)
