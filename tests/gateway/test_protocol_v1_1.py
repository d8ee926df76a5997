"""Protocol v1.1 frames from a guest.

Over real TCP on a real redis-server: the v1.1 requests decode and get a
clear, exact answer (``auth_failed`` for what needs an account, silence for
``read``), nothing is stored for a guest, and the v1.1 fields of ``welcome``
say "guest, no conversations". Accounts themselves: tests/accounts.
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway.server import Gateway
from protocol.limits import Limits
from tests.gateway.conftest import Connect, StartGateway
from tests.gateway.live import error, login, redis_state
from tests.support.redis_server import RedisServer
from tests.support.wire import WireClient

ROOMY = Limits(rate_per_s=10_000.0, burst=10_000)


@pytest.fixture
def gw(start_gateway: StartGateway) -> Gateway:
    return start_gateway(limits=ROOMY)


def ping_pong(client: WireClient, ref: str = "alive") -> None:
    client.send(type="ping", ref=ref)
    assert client.recv_type("pong", ref=ref) == {"type": "pong", "ref": ref}


def test_welcome_carries_the_v1_1_fields_of_a_guest(gw: Gateway, connect: Connect) -> None:
    client = connect(gw.address)
    welcome, _ = login(client, "alice")
    assert (welcome["account"], welcome["dms"], welcome["read"]) == (False, [], {})


def test_hello_with_a_password_for_a_name_without_account_is_auth_failed(
        gw: Gateway, connect: Connect) -> None:
    client = connect(gw.address)
    client.send(type="hello", name="alice", password="correct horse", rooms=["lobby"],
                since={"@bob": {"epoch": "e", "id": 3}})
    assert error(client, "auth_failed")["message"] == "wrong name or password"
    welcome, _ = login(client, "alice")
    assert (welcome["name"], welcome["account"]) == ("alice", False)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ({"type": "passwd", "old": "whatever", "new": "correct horse"},
         "wrong name or password"),
        ({"type": "history", "with": "bob"},
         "stored conversations are for accounts: register or log in"),
    ],
    ids=["passwd", "history-with"],
)
def test_account_requests_of_a_guest_are_auth_failed_and_change_nothing(
        gw: Gateway, connect: Connect, redis_server: RedisServer, frame: dict[str, Any],
        message: str) -> None:
    client = connect(gw.address)
    login(client, "alice")
    before = {k: v for k, v in redis_state(redis_server.client()).items()
              if not k.endswith(b":authfail") and not k.startswith(b"{authaddr:")}
    client.send(**frame, ref="v11")
    answer = error(client, "auth_failed")
    assert answer == {"type": "error", "code": "auth_failed", "message": message, "ref": "v11"}
    after = {k: v for k, v in redis_state(redis_server.client()).items()
             if not k.endswith(b":authfail") and not k.startswith(b"{authaddr:")}
    assert after == before
    ping_pong(client)


def test_a_guests_read_is_accepted_without_an_answer_and_forgotten(
        gw: Gateway, connect: Connect, redis_server: RedisServer) -> None:
    client = connect(gw.address)
    login(client, "alice")
    client.send(type="read", room="lobby", id=3, ref="r1")
    client.send(type="read", id=0, ref="r2", **{"with": "bob"})
    ping_pong(client, "after")
    assert not [f for f in client.drain(0.2) if f["type"] == "error"]
    assert not [k for k in redis_server.client().scan_iter() if k.endswith(b":read")]


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"type": "register", "password": "short"}, "bad_password"),
        ({"type": "passwd", "old": "x", "new": "short"}, "bad_password"),
        ({"type": "read", "room": "lobby", "with": "bob", "id": 1}, "bad_frame"),
        ({"type": "history", "room": "lobby", "with": "bob"}, "bad_frame"),
        ({"type": "history", "with": "-bob"}, "bad_name"),
    ],
    ids=["register", "passwd", "read-both", "history-both", "history-bad-with"],
)
def test_malformed_v1_1_requests_get_their_protocol_code(
        gw: Gateway, connect: Connect, frame: dict[str, Any], code: str) -> None:
    client = connect(gw.address)
    login(client, "alice")
    client.send(**frame, ref="m")
    assert error(client, code)["ref"] == "m"
    ping_pong(client)
