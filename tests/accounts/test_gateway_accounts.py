"""Accounts and stored conversations end to end: real redis-server, real gateways, raw TCP.

Each test proves one promise of protocol v1.1 as a client sees it on the wire.
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway.server import Gateway
from protocol.limits import Limits
from tests.conftest import Connect, StartGateway
from tests.gateway.live import error, login
from tests.support.redis_server import RedisServer
from tests.support.wire import WireClient

PW = "correct horse battery"
ROOMY = Limits(rate_per_s=10_000.0, burst=10_000)


@pytest.fixture
def two(start_gateway: StartGateway) -> tuple[Gateway, Gateway]:
    return start_gateway(limits=ROOMY), start_gateway(limits=ROOMY)


def account(connect: Connect, gw: Gateway, name: str, password: str = PW) -> WireClient:
    """A guest that registers ``name``, then logs out."""
    client = connect(gw.address)
    login(client, name)
    client.send(type="register", password=password, ref="r")
    assert client.recv_type("registered") == {"type": "registered", "name": name}
    client.send(type="bye")
    client.recv_type("bye")
    return client


def dm_ids(frames: list[dict[str, Any]], peer: str) -> list[int]:
    """Ids of the conversation with ``peer`` in ``frames``: live dms and history batches."""
    out: list[int] = []
    for f in frames:
        if f["type"] == "dm" and peer in (f["from"], f["to"]):
            out.append(f["id"])
        elif f["type"] == "history" and f.get("with") == peer:
            out.extend(m["id"] for m in f["messages"])
    return out


def test_register_then_log_in_with_the_password(two: tuple[Gateway, Gateway],
                                                connect: Connect) -> None:
    account(connect, two[0], "alice")
    client = connect(two[1].address)
    welcome, _ = login(client, "alice", password=PW)
    assert (welcome["name"], welcome["account"], welcome["dms"], welcome["read"]) == (
        "alice", True, [], {})


def test_wrong_password_is_auth_failed_and_the_connection_stays_open(
        two: tuple[Gateway, Gateway], connect: Connect) -> None:
    account(connect, two[0], "alice")
    client = connect(two[1].address)
    client.send(type="hello", name="alice", password="not the password", rooms=["lobby"])
    assert error(client, "auth_failed")["message"] == "wrong name or password"
    client.send(type="hello", name="nobody", password="not the password", rooms=["lobby"])
    assert error(client, "auth_failed")["message"] == "wrong name or password"
    welcome, _ = login(client, "alice", password=PW)
    assert welcome["account"] is True
