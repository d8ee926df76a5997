"""/register and /passwd in the window: masked fields in a small dialog, never in the
composer; refusals in plain words (stub client)."""

from __future__ import annotations

import tkinter as tk
from collections.abc import Iterator

import pytest

from client.events import ServerError
from client.gui.app import ChatApp
from client.gui.widgets import PasswordDialog
from protocol.errors import ErrorCode, ProtocolError
from tests.gui.conftest import FakeClock, screenshot, settle
from tests.gui.helpers import LOBBY, give_focus, log_in, send, shown
from tests.gui.stub_client import Script, StubFactory

PW = "a long enough password"


@pytest.fixture
def factory() -> StubFactory:
    return StubFactory(Script())


@pytest.fixture
def app(tk_root: tk.Tk, factory: StubFactory, clock: FakeClock) -> Iterator[ChatApp]:
    app = ChatApp(tk_root, factory, gateways="localhost:5050", clock=clock)
    give_focus(tk_root)
    yield app
    if not app.closed:
        app.shutdown()


def fill(dialog: PasswordDialog, *texts: str) -> None:
    for entry, text in zip(dialog.entries, texts, strict=True):
        entry.delete(0, "end")
        entry.insert(0, text)
    dialog.entries[-1].event_generate("<Return>")
    dialog.entries[-1].update()


def test_register_from_the_window_asks_in_a_masked_dialog(app: ChatApp,
                                                         factory: StubFactory) -> None:
    chat = log_in(app, "alice")
    send(chat, "/register")
    dialog = chat.password_dialog
    assert dialog is not None
    assert all(entry.cget("show") == "•" for entry in dialog.entries)
    assert chat.view.composer.text() == "", "the command left the composer"
    fill(dialog, PW, PW + "?")
    assert dialog.error_text() == "The two new passwords differ."
    fill(dialog, "tiny", "tiny")
    assert "8 to 1024 characters" in dialog.error_text()
    fill(dialog, PW, PW)
    assert factory.last.called("register") == [("register", len(PW))]
    assert chat.password_dialog is None
    settle(app.root, lambda: "Your account is ready" in shown(chat, LOBBY), what="the notice")
    assert PW not in shown(chat, LOBBY)


def test_passwd_refused_says_why(app: ChatApp, factory: StubFactory) -> None:
    assert app.login_view is not None
    app.login_view.password_var.set(PW)
    chat = log_in(app, "alice")
    send(chat, "/passwd")
    dialog = chat.password_dialog
    assert dialog is not None and len(dialog.entries) == 3
    settle(app.root, lambda: dialog.window.winfo_ismapped(), what="the dialog on screen")
    dialog.entries[0].insert(0, "typed")
    dialog.window.update()
    screenshot(dialog.window, "11-passwd-dialog")
    factory.last.passwd = lambda old, new: factory.last.emit(  # type: ignore[method-assign]
        ServerError(ProtocolError(ErrorCode.AUTH_FAILED, "wrong name or password")))
    fill(dialog, "not it", PW, PW)  # replaces what was typed
    settle(app.root, lambda: "The current password is wrong" in shown(chat, LOBBY),
           what="the refusal")
    send(chat, "/register")
    assert "You are logged in to an account already" in shown(chat, LOBBY)
