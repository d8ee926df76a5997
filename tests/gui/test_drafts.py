"""Drafts: one per conversation, never lost to a switch or a refused send."""

from __future__ import annotations

import time
import tkinter as tk
from collections.abc import Iterator

import pytest

from client.events import DirectReceived
from client.gui.app import ChatApp
from client.gui.chat_controller import ChatController
from client.gui.model import ConvKey
from protocol.frames import DirectMessage
from tests.gui.conftest import FakeClock, screenshot, settle
from tests.gui.helpers import LOBBY, give_focus, log_in, shown
from tests.gui.stub_client import Script, StubClient, StubFactory

BOB = ConvKey.direct("bob")


@pytest.fixture
def factory() -> StubFactory:
    return StubFactory(Script(members={"lobby": ["bob"]}))


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


def typed(chat: ChatController, text: str) -> None:
    entry = chat.view.composer.entry
    entry.focus_set()
    entry.delete(0, "end")
    entry.insert("end", text)
    entry.update()


def press_enter(chat: ChatController) -> None:
    chat.view.composer.entry.event_generate("<Return>")
    chat.view.composer.entry.update()


def test_a_draft_stays_with_its_conversation(chat: ChatController, client: StubClient,
                                              clock: FakeClock) -> None:
    client.emit(DirectReceived(DirectMessage("bob", "alice", "hi there", time.time())))
    root = chat.view.frame.winfo_toplevel()
    settle(root, lambda: chat.view.has(BOB), what="the DM with bob")
    typed(chat, "meant for the whole lobby")
    chat.view.conversations.tree.selection_set(BOB.ident)
    settle(root, lambda: chat.view.active == BOB, what="the DM selected by a click")
    assert chat.view.composer.text() == "", "the lobby's draft must not follow into the DM"
    press_enter(chat)
    assert client.called("dm") == [], "Enter in an empty box sends nothing to bob"
    typed(chat, "just for bob")
    chat.view.conversations.tree.selection_set(LOBBY.ident)
    settle(root, lambda: chat.view.active == LOBBY, what="back in the lobby")
    assert chat.view.composer.text() == "meant for the whole lobby"
    chat.view.conversations.tree.selection_set(BOB.ident)
    settle(root, lambda: chat.view.active == BOB, what="the DM again")
    assert chat.view.composer.text() == "just for bob"
    press_enter(chat)
    assert client.called("dm") == [("dm", "bob", "just for bob")]
    assert client.called("send") == []
    assert chat.view.composer.text() == ""
    clock.advance(10)
    typing_before = len(client.called("typing"))
    chat.select(LOBBY)
    assert chat.view.composer.text() == "meant for the whole lobby"
    assert len(client.called("typing")) == typing_before, "restoring a draft is not typing"


def test_a_too_long_message_is_refused_and_kept_with_a_counter(chat: ChatController,
                                                               client: StubClient) -> None:
    composer = chat.view.composer
    typed(chat, "x" * 3500)
    assert composer.counter_text() == "", "no counter far below the limit"
    typed(chat, "x" * 3700)
    assert composer.counter_text() == "3,700 / 4,000"
    pasted = "y" * 4050
    typed(chat, pasted)
    assert composer.counter_text() == "4,050 / 4,000 (50 too many)"
    assert str(composer.counter.cget("style")) == "CounterOver.TLabel"
    press_enter(chat)
    assert composer.text() == pasted, "the draft is kept"
    assert client.called("send") == []
    assert ("Too long to send: 4,050 characters, the limit is 4,000. Shorten it by 50"
            in shown(chat, LOBBY))
    assert "empty, too long, or contains control characters" not in shown(chat, LOBBY)
    screenshot(chat.view.frame, "07-too-long-draft")
    composer.entry.delete(4000, "end")
    composer.entry.update()
    assert composer.counter_text() == "4,000 / 4,000"
    press_enter(chat)
    assert client.called("send") == [("send", "lobby", "y" * 4000)]
    assert composer.text() == "" and composer.counter_text() == ""
