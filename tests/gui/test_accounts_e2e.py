"""Accounts in the Tk app, against real gateways, a real Redis and the real ChatClient.

Each log-in is a new window (a new Tk root), as a person quitting and starting
the app again; other people are plain ``ChatClient``s driven by the test.
"""

from __future__ import annotations

import contextlib
import tkinter as tk
from collections.abc import Callable, Iterator
from types import TracebackType

import pytest

from client import events as ev
from client.connection import ChatClient
from client.gui.app import ChatApp
from client.gui.chat_controller import ChatController
from client.gui.model import ConvKey
from gateway.server import Gateway
from tests.client.recorder import Recorder
from tests.gui.conftest import screenshot, settle
from tests.gui.helpers import LOBBY, give_focus, shown, type_and_enter
from tests.gui.test_end_to_end import address, real_clients
from tests.support.gateways import gateways
from tests.support.redis_server import RedisServer

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

PW = "correct horse battery"
BOB = ConvKey.direct("bob")


@pytest.fixture
def cluster(redis_server: RedisServer) -> Iterator[list[Gateway]]:
    with gateways(redis_server.url, 2) as gws:
        yield gws


@pytest.fixture
def open_app(xvfb: str, cluster: list[Gateway]) -> Iterator[Callable[[], ChatApp]]:
    """A new window with the log-in screen, gateways filled in; each closed at the end."""
    apps: list[ChatApp] = []
    errors: list[BaseException] = []

    def report(exc: type[BaseException], value: BaseException,
               tb: TracebackType | None) -> None:
        errors.append(value)

    def start() -> ChatApp:
        root = tk.Tk(className="ChatService")
        root.report_callback_exception = report
        app = ChatApp(root, real_clients(0.2),
                      gateways=", ".join(address(g) for g in cluster))
        give_focus(root)
        apps.append(app)
        return app

    yield start
    for app in apps:
        if not app.closed:
            app.shutdown()
        with contextlib.suppress(tk.TclError):
            app.root.destroy()
    assert not errors, f"exceptions in Tk callbacks: {errors!r}"


@pytest.fixture
def people(cluster: list[Gateway]) -> Iterator[Callable[..., tuple[ChatClient, Recorder]]]:
    """Plain clients for the other people (and for alice's other device)."""
    with contextlib.ExitStack() as stack:
        def login(name: str, password: str | None = None) -> tuple[ChatClient, Recorder]:
            log = Recorder()
            client = stack.enter_context(ChatClient(
                name, [address(g) for g in cluster], on_event=log, password=password))
            client.connect(timeout=10)
            return client, log
        yield login


def fill_in(app: ChatApp, name: str, password: str = "", create: bool = False) -> None:
    """Type the log-in fields like a person and press Enter in the password field."""
    view = app.login_view
    assert view is not None
    view.name_var.set(name)
    view.create_var.set(create)
    view.password_entry.focus_force()
    type_and_enter(view.password_entry, password)


def error_after(app: ChatApp, name: str, password: str = "", create: bool = False) -> str:
    fill_in(app, name, password, create)
    view = app.login_view
    assert view is not None
    settle(app.root, lambda: view.error_text() and not view.busy, what="the refusal")
    return view.error_text()


def chat_after(app: ChatApp, name: str, password: str = "", create: bool = False
               ) -> ChatController:
    fill_in(app, name, password, create)
    settle(app.root, lambda: app.chat is not None and app.chat.view.active is not None,
           what="the chat view")
    assert app.chat is not None
    return app.chat


def test_create_an_account_then_log_in_with_its_password(
        open_app: Callable[[], ChatApp]) -> None:
    first = open_app()
    assert error_after(first, "alice", "short", create=True).startswith(
        "That password is too short or too long. A password is 8 to 1024 characters")
    chat = chat_after(first, "alice", PW, create=True)
    settle(first.root, lambda: "Your account is ready" in shown(chat, LOBBY),
           what="the account notice")
    first.shutdown()

    second = open_app()
    view = second.login_view
    assert view is not None
    taken = error_after(second, "alice")
    assert "If that name belongs to your account, enter its password." in taken
    wrong = error_after(second, "alice", "not the password")
    assert wrong.startswith("Wrong password for “alice”")
    assert second.root.focus_get() is view.password_entry, "back in the password field"
    assert view.password_entry.cget("show") == "•", "the password is masked"
    screenshot(second.root, "09-login-password")
    chat = chat_after(second, "alice", PW)
    assert chat.view.status.text().startswith("Connected to gw")


def test_offline_dms_unread_counts_history_and_read_state_across_logins(
        open_app: Callable[[], ChatApp],
        people: Callable[..., tuple[ChatClient, Recorder]]) -> None:
    alice, alice_log = people("alice")
    alice.register(PW)
    alice_log.wait(ev.Registered)
    bob, bob_log = people("bob")
    bob.send("lobby", "lobby before you logged in")
    bob.dm("alice", "hello alice")
    alice_log.wait(ev.DirectReceived, 1)
    alice.dm("bob", "hi bob, what's up?")
    alice_log.wait(ev.DirectReceived, 2)
    alice.mark_read(peer="bob", up_to=2)
    alice.close()
    bob.dm("alice", "are you coming to the demo at 3?")  # stored: alice is offline
    bob.dm("alice", "it's in room 4")
    bob_log.wait(ev.Acked, 4)

    # first log-in: bob's conversation is in the sidebar with its two unread dms
    app = open_app()
    chat = chat_after(app, "alice", PW)
    settle(app.root, lambda: chat.view.has(BOB) and chat.view.conversations.unread(BOB) == 2,
           what="bob's conversation with 2 unread")
    chat.select(BOB)
    settle(app.root, lambda: "hello alice" in shown(chat, BOB), what="the stored history")
    text = shown(chat, BOB)
    order = ["hello alice", "hi bob, what's up?", "New messages",
             "are you coming to the demo at 3?", "it's in room 4"]
    positions = [text.index(part) for part in order]
    assert positions == sorted(positions), text
    assert text.count("hello alice") == 1
    assert chat.view.conversations.unread(BOB) == 0
    screenshot(chat.view.frame, "10-dm-history")
    # read as the person looks at it: bob's thread, then the lobby
    settle(app.root, lambda: chat.read_sent(BOB) == 4, what="bob's thread marked read")
    chat.select(LOBBY)
    settle(app.root, lambda: (chat.read_sent(LOBBY) or 0) >= 1, what="the lobby read")
    app.shutdown()

    bob.send("lobby", "lobby while you were away")
    bob.dm("alice", "never mind, see you tomorrow")
    bob_log.wait(ev.Acked, 6)

    # second log-in: only what came since counts
    app = open_app()
    chat = chat_after(app, "alice", PW)
    settle(app.root, lambda: chat.view.has(BOB) and chat.view.conversations.unread(BOB) == 1,
           what="one unread dm")
    settle(app.root, lambda: "lobby while you were away" in shown(chat, LOBBY),
           what="the lobby")
    lobby = shown(chat, LOBBY)
    assert (lobby.index("lobby before you logged in") < lobby.index("New messages")
            < lobby.index("lobby while you were away")), lobby
    chat.select(BOB)
    settle(app.root, lambda: "hello alice" in shown(chat, BOB), what="the history again")
    text = shown(chat, BOB)
    assert text.index("it's in room 4") < text.index("New messages") < text.index(
        "never mind, see you tomorrow"), text
