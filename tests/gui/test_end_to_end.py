"""The Tk app against a real gateway, a real Redis and the real ChatClient.

Other users are plain ``ChatClient``s driven by the test; the app is driven
through its widgets, and the assertions read what the widgets show.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack

import pytest

from client.backoff import ConstantBackoff
from client.connection import ChatClient
from client.gui.app import ChatApp
from client.gui.chat_controller import ChatController
from client.gui.model import ConvKey
from client.gui.ports import EventSink
from client.gui.widgets import StatusLevel
from gateway.server import Gateway, run_gateway
from tests.gui.conftest import screenshot, settle
from tests.gui.helpers import LOBBY, give_focus, log_in, send, shown, type_and_enter
from tests.support.gateways import GatewayProcess, config
from tests.support.redis_server import RedisServer, free_port

RECONNECT_DELAY = 2.0


def address(gw: Gateway | GatewayProcess) -> str:
    host, port = gw.address
    return f"{host}:{port}"


def real_clients(backoff: float = RECONNECT_DELAY) -> Callable[[str, Sequence[str], EventSink],
                                                                 ChatClient]:
    def make(name: str, gateways: Sequence[str], sink: EventSink,
             password: str | None = None) -> ChatClient:
        return ChatClient(name, gateways, on_event=sink, backoff=ConstantBackoff(backoff),
                          connect_timeout=2.0, password=password)
    return make


@pytest.fixture
def gateway(redis_server: RedisServer) -> Iterator[Gateway]:
    with run_gateway(config(redis_server.url, "gw1")) as gw:
        yield gw


@pytest.fixture
def others(gateway: Gateway) -> Iterator[Callable[[str], ChatClient]]:
    """Log in other users (closed after the test)."""
    with ExitStack() as stack:
        def login(name: str) -> ChatClient:
            client = stack.enter_context(ChatClient(name, [address(gateway)]))
            client.connect(timeout=10)
            return client
        yield login


@pytest.fixture
def app(tk_root: tk.Tk) -> Iterator[ChatApp]:
    app = ChatApp(tk_root, real_clients(), gateways="127.0.0.1:1")
    give_focus(tk_root)
    yield app
    if not app.closed:
        app.shutdown()


def enter(app: ChatApp, gateway: Gateway, name: str = "alice") -> ChatController:
    chat = log_in(app, name, address(gateway))
    settle(app.root, lambda: name in chat.view.members.names(), what="own name in members")
    return chat


def test_login_refused_when_the_name_is_taken(app: ChatApp, gateway: Gateway,
                                              others: Callable[[str], ChatClient]) -> None:
    others("bob")
    view = app.login_view
    assert view is not None
    view.gateways_var.set(address(gateway))
    type_and_enter(view.name_entry, "BOB")
    settle(app.root, lambda: view.error_text(), what="the refusal")
    assert view.error_text() == ("The name “BOB” is already taken. Please pick another one. "
                                 "If that name belongs to your account, enter its password.")
    assert app.chat is None


def test_login_with_no_gateway_listening(app: ChatApp) -> None:
    dead = f"127.0.0.1:{free_port()}"
    view = app.login_view
    assert view is not None
    view.gateways_var.set(dead)
    type_and_enter(view.name_entry, "alice")
    settle(app.root, lambda: view.error_text(), what="the refusal")
    assert view.error_text() == (f"No chat gateway is reachable at {dead}. "
                                 "Check the address and that the server is running.")


def test_login_shows_the_chat_and_messages_flow_both_ways(
        app: ChatApp, gateway: Gateway, others: Callable[[str], ChatClient]) -> None:
    bob = others("bob")
    chat = enter(app, gateway)
    assert chat.view.status.text() == "Connected to gw1 as alice"
    settle(app.root, lambda: chat.view.members.names() == ["alice", "bob"], what="members")
    bob.send("lobby", "hello from bob")
    settle(app.root, lambda: "hello from bob" in shown(chat, LOBBY), what="bob's message")
    send(chat, "hi bob!")
    settle(app.root, lambda: "sending…" not in shown(chat, LOBBY) and "hi bob!"
           in shown(chat, LOBBY), what="the echo of alice's message")
    received = []
    while not bob.events.empty():
        received.append(bob.events.get_nowait())
    assert any(getattr(getattr(e, "message", None), "text", None) == "hi bob!"
               for e in received)


def test_member_joins_and_leaves(app: ChatApp, gateway: Gateway,
                                 others: Callable[[str], ChatClient]) -> None:
    chat = enter(app, gateway)
    carol = others("carol")
    settle(app.root, lambda: "carol" in chat.view.members.names(), what="carol joined")
    assert "carol joined #lobby" in shown(chat, LOBBY)
    carol.close()
    settle(app.root, lambda: "carol" not in chat.view.members.names(), what="carol left")
    assert chat.view.members.names() == ["alice"]


def test_direct_messages_get_their_own_view(app: ChatApp, gateway: Gateway,
                                            others: Callable[[str], ChatClient]) -> None:
    dave = others("dave")
    chat = enter(app, gateway)
    dave.dm("alice", "psst, got a minute?")
    dave_key = ConvKey.direct("dave")
    settle(app.root, lambda: chat.view.has(dave_key)
           and chat.view.conversations.unread(dave_key) == 1, what="dave's DM")
    send(chat, "/msg dave sure")
    settle(app.root, lambda: chat.view.active == dave_key and "sure" in shown(chat, dave_key)
           and "sending…" not in shown(chat, dave_key), what="the answer")
    assert "psst, got a minute?" in shown(chat, dave_key)
    assert "psst" not in shown(chat, LOBBY)


def test_reconnect_status_after_the_gateway_is_killed(app: ChatApp,
                                                      redis_server: RedisServer) -> None:
    first = GatewayProcess(redis_server.url, "gw-a")
    try:
        with run_gateway(config(redis_server.url, "gw-b")) as second:
            chat = log_in(app, "alice", f"{address(first)}, {address(second)}")
            settle(app.root, lambda: chat.view.status.text() == "Connected to gw-a as alice",
                   what="connected to gw-a")
            first.kill()
            settle(app.root, lambda: chat.view.status.text().startswith("Reconnecting to "),
                   timeout=30, what="the reconnecting status")
            assert chat.view.status.level is StatusLevel.WARN
            assert chat.view.banner.winfo_ismapped()
            screenshot(chat.view.frame, "07-e2e-reconnecting")
            settle(app.root, lambda: chat.view.status.text()
                   == "Connected to gw-b as alice (resumed)", timeout=30,
                   what="the reconnect to gw-b")
            assert not chat.view.banner.winfo_ismapped()
            send(chat, "back again")
            settle(app.root, lambda: "back again" in shown(chat, LOBBY)
                   and "sending…" not in shown(chat, LOBBY), what="a message after it")
            app.shutdown()
    finally:
        first.close()
