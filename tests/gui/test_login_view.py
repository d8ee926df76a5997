"""The log-in screen: focus, prefilled gateways, refusals in plain words, no freeze."""

from __future__ import annotations

import threading
import tkinter as tk
from collections.abc import Iterator

import pytest

from client.gui.app import ChatApp, default_gateways
from protocol.errors import ErrorCode
from tests.gui.conftest import FakeClock, screenshot, settle
from tests.gui.helpers import give_focus, log_in, type_and_enter
from tests.gui.stub_client import Script, StubFactory


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


def submit(app: ChatApp, name: str) -> None:
    assert app.login_view is not None
    type_and_enter(app.login_view.name_entry, name)


def test_cursor_starts_in_the_name_field(app: ChatApp) -> None:
    assert app.login_view is not None
    assert app.root.focus_get() is app.login_view.name_entry
    screenshot(app.root, "01-login")


def test_gateways_prefilled_from_environment(tk_root: tk.Tk, factory: StubFactory,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAT_GATEWAYS", "127.0.0.1:6001, 127.0.0.1:6002")
    app = ChatApp(tk_root, factory, gateways=default_gateways())
    assert app.login_view is not None
    assert app.login_view.gateways_entry.get() == "127.0.0.1:6001, 127.0.0.1:6002"
    monkeypatch.delenv("CHAT_GATEWAYS")
    assert default_gateways() == "localhost:5050"
    app.shutdown()


def test_enter_logs_in_and_shows_the_chat_with_the_cursor_in_the_entry(
        app: ChatApp, factory: StubFactory) -> None:
    chat = log_in(app, "alice", "127.0.0.1:7001, 127.0.0.1:7002")
    assert factory.last.gateways == ("127.0.0.1:7001", "127.0.0.1:7002")
    assert app.login_view is None
    assert chat.view.frame.winfo_ismapped()
    assert app.root.focus_get() is chat.view.composer.entry
    assert "Connected to gw-1 as alice" in chat.view.status.text()


def test_connect_runs_off_the_main_thread_and_the_window_stays_live(
        app: ChatApp, factory: StubFactory) -> None:
    hold = threading.Event()
    factory.script.hold_connect = hold
    submit(app, "alice")
    assert app.login_view is not None
    settle(app.root, lambda: factory.clients and factory.last.calls, what="connect called")
    assert factory.last.calls[0][1] != threading.current_thread().name
    # while connect blocks, the window still handles events: the button says so
    assert app.login_view.busy
    assert str(app.login_view.button.cget("text")) == "Connecting…"
    app.root.update()
    hold.set()
    settle(app.root, lambda: app.chat is not None, what="the chat view")


@pytest.mark.parametrize(("code", "words"), [
    (ErrorCode.NAME_TAKEN, "The name “alice” is already taken. Please pick another one."),
    (ErrorCode.BAD_NAME, "“alice” is not a valid name."),
])
def test_refused_login_says_why_in_plain_words(app: ChatApp, factory: StubFactory,
                                               code: ErrorCode, words: str) -> None:
    factory.script.refuse = code
    submit(app, "alice")
    view = app.login_view
    assert view is not None
    settle(app.root, lambda: view.error_text(), what="the refusal")
    assert view.error_text().startswith(words)
    assert not view.busy
    assert app.chat is None
    assert factory.last.closed
    assert app.root.focus_get() is view.name_entry
    if code is ErrorCode.NAME_TAKEN:
        screenshot(app.root, "02-login-name-taken")


def test_no_gateway_reachable_is_said_plainly(app: ChatApp, factory: StubFactory) -> None:
    factory.script.unreachable = True
    assert app.login_view is not None
    app.login_view.gateways_var.set("127.0.0.1:1, 127.0.0.1:2")
    submit(app, "alice")
    view = app.login_view
    settle(app.root, lambda: view.error_text(), what="the refusal")
    assert view.error_text() == (
        "No chat gateway is reachable at 127.0.0.1:1, 127.0.0.1:2. "
        "Check the address and that the server is running.")


def test_invalid_name_is_refused_before_connecting(app: ChatApp, factory: StubFactory) -> None:
    submit(app, "no spaces please")
    assert app.login_view is not None
    assert "is not a valid name" in app.login_view.error_text()
    assert ("1 to 32 characters, each a letter from A to Z (either case), a digit, or one of _ - ."
            in app.login_view.error_text())
    assert factory.clients == []


def test_empty_name_and_empty_gateways_are_refused(app: ChatApp, factory: StubFactory) -> None:
    view = app.login_view
    assert view is not None
    submit(app, "")
    assert view.error_text() == "Please enter a name."
    view.gateways_var.set(" , ")
    submit(app, "alice")
    assert view.error_text().startswith("Please enter at least one gateway address")
    assert factory.clients == []


def test_a_refused_attempt_then_a_good_one(app: ChatApp, factory: StubFactory) -> None:
    factory.script.refuse = ErrorCode.NAME_TAKEN
    submit(app, "alice")
    view = app.login_view
    assert view is not None
    settle(app.root, lambda: view.error_text(), what="the refusal")
    factory.script.refuse = None
    chat = log_in(app, "alice2")
    assert chat.view.status.text().startswith("Connected to gw-1 as alice2")
    assert len(factory.clients) == 2


def test_login_card_fits_a_small_window(app: ChatApp) -> None:
    app.root.geometry("600x400")
    settle(app.root, lambda: app.root.winfo_height() == 400, what="the resize")
    view = app.login_view
    assert view is not None
    view.show_error("The name “alice” is already taken. Please pick another one.")
    app.root.update()
    for widget in (view.name_entry, view.password_entry, view.create_check,
                   view.gateways_entry, view.button, view.error_label):
        assert widget.winfo_ismapped()
        bottom = widget.winfo_rooty() + widget.winfo_height()
        assert bottom <= app.root.winfo_rooty() + 400, widget
    screenshot(app.root, "08-login-600x400")


def test_create_account_needs_a_password_of_the_right_length(app: ChatApp,
                                                             factory: StubFactory) -> None:
    view = app.login_view
    assert view is not None
    view.create_var.set(True)
    assert str(view.button.cget("text")) == "Create account"
    submit(app, "alice")
    assert view.error_text().startswith("To create an account, choose a password.")
    assert app.root.focus_get() is view.password_entry
    view.password_var.set("x" * 1025)
    type_and_enter(view.password_entry, "x" * 1025)
    assert "8 to 1024 characters" in view.error_text()
    assert factory.clients == []


def test_create_account_logs_in_as_a_guest_then_registers(app: ChatApp,
                                                         factory: StubFactory) -> None:
    view = app.login_view
    assert view is not None
    view.create_var.set(True)
    view.password_var.set("a long enough password")
    chat = log_in(app, "alice")
    client = factory.last
    assert client.password is None, "the hello is a guest's"
    assert client.called("register") == [("register", 22)]
    assert client.account
    settle(app.root, lambda: "Your account is ready" in chat.view.view(
        chat.view.active).contents() if chat.view.active else False, what="the notice")


def test_a_refused_create_account_stays_on_the_login_screen(app: ChatApp,
                                                           factory: StubFactory) -> None:
    factory.script.refuse_register = ErrorCode.NAME_TAKEN
    view = app.login_view
    assert view is not None
    view.create_var.set(True)
    view.password_var.set("a long enough password")
    submit(app, "alice")
    settle(app.root, lambda: view.error_text() and not view.busy, what="the refusal")
    assert view.error_text().startswith("“alice” already belongs to an account")
    assert app.chat is None
    settle(app.root, lambda: factory.last.closed, what="the guest session closed")
