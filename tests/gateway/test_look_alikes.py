"""Look-alike names and invisible text, over real TCP against one gateway on a real redis-server.

Names are unique up to case and ASCII look-alikes (``protocol.names.name_key``),
start with a letter or digit, and text that shows nothing or reorders itself
on screen is refused before anything is published.
"""

from __future__ import annotations

import pytest

from gateway.server import Gateway
from protocol.limits import Limits
from tests.gateway.conftest import Connect, StartGateway
from tests.gateway.live import error, login, send_ok
from tests.support.wire import WireClient

ROOMY = Limits(rate_per_s=10_000.0, burst=10_000)


@pytest.fixture
def gw(start_gateway: StartGateway) -> Gateway:
    return start_gateway(limits=ROOMY)


def ping_pong(client: WireClient) -> None:
    client.send(type="ping", ref="alive")
    assert client.recv_type("pong", ref="alive") == {"type": "pong", "ref": "alive"}


def test_look_alikes_of_a_name_online_get_name_taken(gw: Gateway, connect: Connect) -> None:
    alice = connect(gw.address)
    login(alice, "alice")
    impostor = connect(gw.address)
    for i, name in enumerate(["aIice", "a1ice", "ALICE", "AL1CE"]):
        impostor.send(type="hello", name=name, ref=f"h{i}")
        assert error(impostor, "name_taken")["ref"] == f"h{i}"
    ping_pong(alice)  # the holder kept its session
    login(impostor, "bob")  # the refusals left the connection open and claimed nothing


def test_a_look_alike_is_free_again_once_the_name_is_released(
        gw: Gateway, connect: Connect) -> None:
    alice = connect(gw.address)
    login(alice, "alice")
    alice.send(type="bye")
    alice.wait_closed()
    again = connect(gw.address)
    welcome, _ = login(again, "a1ice")
    assert welcome["name"] == "a1ice"  # the holder's spelling is the one shown


@pytest.mark.parametrize("name", ["...", "-", "_x", ".alice"])
def test_a_name_that_does_not_start_with_a_letter_or_digit_is_bad_name(
        gw: Gateway, connect: Connect, name: str) -> None:
    client = connect(gw.address)
    client.send(type="hello", name=name, ref="h")
    frame = error(client, "bad_name")
    assert frame["message"] == ("name must be 1 to 32 characters from A-Z a-z 0-9 _ - . "
                                "starting with a letter or digit")
    login(client, "x1")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("\u200b", "text is empty"),
        ("\ufeff\u200b \u2060", "text is empty"),
        ("evil\u202etxt.exe", "text contains bidirectional formatting character U+202E"
                              " (RIGHT-TO-LEFT OVERRIDE)"),
        ("\u2067isolate", "text contains bidirectional formatting character U+2067"
                          " (RIGHT-TO-LEFT ISOLATE)"),
    ],
    ids=["zwsp", "invisible-mix", "rlo", "rli"],
)
def test_invisible_or_bidi_text_is_bad_text_and_nothing_is_published(
        gw: Gateway, connect: Connect, text: str, message: str) -> None:
    alice = connect(gw.address)
    bob = connect(gw.address)
    login(alice, "alice")
    login(bob, "bob")
    for kind, where in (("send", {"room": "lobby"}), ("dm", {"to": "bob"})):
        alice.send(type=kind, text=text, ref=kind, **where)
        frame = error(alice, "bad_text")
        assert (frame["ref"], frame["message"]) == (kind, message)
    assert send_ok(alice, "lobby", "visible", "ok") == 1  # nothing took an id before it
    first = bob.recv_type("message")
    assert (first["id"], first["text"]) == (1, "visible")
    assert not [f for f in bob.drain(0.2) if f["type"] == "dm"]
