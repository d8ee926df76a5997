"""Accounts and stored conversations end to end: real redis-server, real gateways, raw TCP.

Each test proves one promise of protocol v1.1 as a client sees it on the wire.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from gateway import admin
from gateway.accounts import AccountStore
from gateway.conversations import conversation_tag
from gateway.passwords import FAST_PARAMS, PasswordHasher
from gateway.server import Gateway
from protocol.limits import Limits
from tests.conftest import Connect, StartGateway
from tests.gateway.live import error, login
from tests.support.gateways import GatewayProcess
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


@pytest.mark.parametrize("online", [True, False], ids=["owner-online", "owner-offline"])
def test_a_guest_never_gets_a_name_that_has_an_account(
        two: tuple[Gateway, Gateway], connect: Connect, online: bool) -> None:
    account(connect, two[0], "alice")
    if online:
        owner = connect(two[0].address)
        login(owner, "alice", password=PW)
    guest = connect(two[1].address)
    guest.send(type="hello", name="ALICE", rooms=["lobby"])
    error(guest, "name_taken")
    guest.send(type="hello", name="a1ice", rooms=["lobby"])  # a look-alike is the same name
    error(guest, "name_taken")
    if online:
        owner.send(type="ping", ref="still")
        assert owner.recv_type("pong")["ref"] == "still"


def test_the_owner_takes_the_name_from_a_live_session(
        two: tuple[Gateway, Gateway], connect: Connect, redis_server: RedisServer) -> None:
    first = connect(two[0].address)
    login(first, "alice")
    first.send(type="register", password=PW)
    first.recv_type("registered")
    second = connect(two[1].address)
    welcome, _ = login(second, "alice", password=PW)
    assert welcome["account"] is True
    assert first.recv_type("bye") == {"type": "bye", "reason": "replaced"}


def test_a_token_resumes_the_account_without_the_password(
        two: tuple[Gateway, Gateway], connect: Connect) -> None:
    account(connect, two[0], "alice")
    first = connect(two[0].address)
    welcome, _ = login(first, "alice", password=PW)
    second = connect(two[1].address)
    resumed, _ = login(second, "alice", token=welcome["token"])
    assert resumed["account"] is True
    first.recv_type("bye")


def test_brute_force_is_limited_across_gateways(
        two: tuple[Gateway, Gateway], connect: Connect) -> None:
    account(connect, two[0], "alice")
    clients = [connect(two[0].address), connect(two[1].address)]
    for attempt in range(5):
        client = clients[attempt % 2]
        client.send(type="hello", name="alice", password=f"guess number {attempt}")
        error(client, "auth_failed")
    for client in clients:  # even the right password, on either gateway
        client.send(type="hello", name="alice", password=PW)
        assert "too many" in error(client, "rate_limited")["message"]
    # a name without an account locks the same way: the answer tells nothing
    for attempt in range(6):
        clients[0].send(type="hello", name="nobody", password=f"guess number {attempt}")
        error(clients[0], "auth_failed" if attempt < 5 else "rate_limited")


def test_dm_to_an_offline_account_is_delivered_once_at_its_next_login_elsewhere(
        two: tuple[Gateway, Gateway], connect: Connect) -> None:
    account(connect, two[0], "alice")
    bob = connect(two[0].address)
    login(bob, "bob")
    bob.send(type="dm", to="Alice", text="you there?", ref="d1")
    assert bob.recv_type("ack", ref="d1") == {"type": "ack", "ref": "d1", "id": 1}
    own = bob.recv_type("dm")
    assert (own["from"], own["to"], own["id"]) == ("bob", "alice", 1)
    bob.send(type="dm", to="alice", text="call me", ref="d2")
    assert bob.recv_type("ack", ref="d2")["id"] == 2
    bob.send(type="dm", to="alice", text="call me", ref="d2")  # a retry: not stored twice
    assert bob.recv_type("ack", ref="d2")["id"] == 2

    alice = connect(two[1].address)
    welcome, _ = login(alice, "alice", password=PW)
    [summary] = welcome["dms"]
    assert (summary["with"], summary["last_id"], summary["read"]) == ("bob", 2, 0)
    history = alice.recv_type("history", **{"with": "bob"})
    assert [(m["id"], m["text"]) for m in history["messages"]] == [
        (1, "you there?"), (2, "call me")]
    assert history["epoch"] == summary["epoch"] == own["epoch"]
    bob.send(type="dm", to="alice", text="live now", ref="d3")
    live = alice.recv_type("dm")
    assert (live["id"], live["text"], live["epoch"]) == (3, "live now", own["epoch"])
    assert dm_ids(alice.drain(0.3), "bob") == []


def test_dm_to_an_offline_guest_is_no_such_user_and_guests_stay_live_only(
        two: tuple[Gateway, Gateway], connect: Connect, redis_server: RedisServer) -> None:
    bob = connect(two[0].address)
    login(bob, "bob")
    bob.send(type="dm", to="carol", text="hi", ref="x")
    error(bob, "no_such_user")
    carol = connect(two[1].address)
    login(carol, "carol")
    bob.send(type="dm", to="carol", text="hi", ref="y")
    assert bob.recv_type("ack", ref="y") == {"type": "ack", "ref": "y"}
    got = carol.recv_type("dm")
    assert "id" not in got and "epoch" not in got
    assert not [k for k in redis_server.client().scan_iter() if k.startswith(b"{dm:")]


def test_read_state_follows_the_account_across_logins(
        two: tuple[Gateway, Gateway], connect: Connect) -> None:
    account(connect, two[0], "alice")
    bob = connect(two[0].address)
    login(bob, "bob")
    for i in range(3):
        bob.send(type="dm", to="alice", text=f"m{i}", ref=f"d{i}")
        bob.recv_type("ack", ref=f"d{i}")
    first = connect(two[0].address)
    login(first, "alice", password=PW)
    first.recv_type("history", **{"with": "bob"})
    first.send(type="read", id=2, **{"with": "bob"})
    first.send(type="read", room="lobby", id=7)
    first.send(type="bye")
    first.recv_type("bye")
    second = connect(two[1].address)
    welcome, _ = login(second, "alice", password=PW)
    assert welcome["read"] == {"lobby": 7}
    assert [(d["with"], d["last_id"], d["read"]) for d in welcome["dms"]] == [("bob", 3, 2)]
    # without since, what is past the read mark comes again
    assert dm_ids([second.recv_type("history", **{"with": "bob"})], "bob") == [3]


def test_dm_history_pages_back(two: tuple[Gateway, Gateway], connect: Connect) -> None:
    account(connect, two[0], "alice")
    alice = connect(two[0].address)
    login(alice, "alice", password=PW)
    bob = connect(two[1].address)
    login(bob, "bob")
    for i in range(5):
        bob.send(type="dm", to="alice", text=f"m{i}", ref=f"d{i}")
        bob.recv_type("ack", ref=f"d{i}")
    alice.send(type="history", limit=2, **{"with": "BOB"})
    page = alice.recv_type("history", **{"with": "bob"})
    assert [m["id"] for m in page["messages"]] == [4, 5] and page["complete"]
    alice.send(type="history", before=4, limit=10, **{"with": "bob"})
    page = alice.recv_type("history", **{"with": "bob"})
    assert [m["id"] for m in page["messages"]] == [1, 2, 3]


def test_guests_deny_admits_accounts_only(start_gateway: StartGateway, connect: Connect,
                                          redis_server: RedisServer) -> None:
    allow = start_gateway(limits=ROOMY)
    account(connect, allow, "alice")
    deny = start_gateway(limits=ROOMY, guests="deny")
    guest = connect(deny.address)
    guest.send(type="hello", name="bob", rooms=["lobby"])
    assert "accounts only" in error(guest, "auth_failed")["message"]
    welcome, _ = login(guest, "alice", password=PW)
    assert welcome["account"] is True
    guest.send(type="register", password="another password", ref="r")
    assert error(guest, "auth_failed")["ref"] == "r"


def test_passwd_changes_the_password(two: tuple[Gateway, Gateway], connect: Connect) -> None:
    account(connect, two[0], "alice")
    alice = connect(two[0].address)
    login(alice, "alice", password=PW)
    alice.send(type="passwd", old="wrong old password", new="a new passphrase", ref="p1")
    assert error(alice, "auth_failed")["ref"] == "p1"
    alice.send(type="passwd", old=PW, new="short", ref="p2")
    assert error(alice, "bad_password")["ref"] == "p2"
    alice.send(type="passwd", old=PW, new="a new passphrase", ref="p3")
    assert alice.recv_type("registered") == {"type": "registered", "name": "alice"}
    other = connect(two[1].address)
    other.send(type="hello", name="alice", password=PW)
    error(other, "auth_failed")
    welcome, _ = login(other, "alice", password="a new passphrase")
    assert welcome["account"] is True


def test_an_account_added_for_a_live_guest_needs_the_password_at_its_next_login(
        two: tuple[Gateway, Gateway], connect: Connect, redis_server: RedisServer) -> None:
    guest = connect(two[0].address)
    welcome, _ = login(guest, "alice")
    AccountStore(redis_server.client(), PasswordHasher(FAST_PARAMS)).create("alice", PW)
    guest.send(type="ping", ref="kept")  # chat-admin add kicks nobody
    assert guest.recv_type("pong")["ref"] == "kept"
    again = connect(two[1].address)
    again.send(type="hello", name="alice", token=welcome["token"], rooms=["lobby"])
    error(again, "name_taken")  # the guest's token is not the account's
    login(again, "alice", password=PW)
    assert guest.recv_type("bye")["reason"] == "replaced"


@pytest.mark.slow
def test_dm_history_and_resume_after_a_gateway_kill(redis_server: RedisServer,
                                                    connect: Connect) -> None:
    doomed = GatewayProcess(redis_server.url, "kill-a")
    other = GatewayProcess(redis_server.url, "kill-b")
    try:
        for name in ("alice", "bob"):
            account(connect, other, name)
        alice = connect(doomed.address)
        welcome, _ = login(alice, "alice", password=PW)
        bob = connect(other.address)
        login(bob, "bob", password=PW)
        for i in range(1, 4):
            bob.send(type="dm", to="alice", text=f"m{i}", ref=f"d{i}")
            assert bob.recv_type("ack", ref=f"d{i}")["id"] == i
        seen = [alice.recv_type("dm") for _ in range(3)]
        assert [d["id"] for d in seen] == [1, 2, 3]
        doomed.kill()
        for i in range(4, 7):  # alice's gateway is dead but not yet known to be: stored
            bob.send(type="dm", to="alice", text=f"m{i}", ref=f"d{i}")
            assert bob.recv_type("ack", ref=f"d{i}")["id"] == i
        resumed = connect(other.address)
        since = {"@BOB": {"epoch": seen[-1]["epoch"], "id": 3}}
        again, _ = login(resumed, "alice", token=welcome["token"], password=PW, since=since)
        assert [(d["with"], d["last_id"]) for d in again["dms"]] == [("bob", 6)]
        history = resumed.recv_type("history", **{"with": "bob"})
        assert [m["id"] for m in history["messages"]] == [4, 5, 6]
        bob.send(type="dm", to="alice", text="m7", ref="d7")
        assert resumed.recv_type("dm")["id"] == 7
        assert dm_ids(resumed.drain(0.3), "bob") == []
        resumed.send(type="history", **{"with": "bob"})
        assert [m["text"] for m in resumed.recv_type("history")["messages"]] == [
            f"m{i}" for i in range(1, 8)]
    finally:
        doomed.close()
        other.close()


def test_chat_admin_delete_takes_the_conversations_with_it(
        two: tuple[Gateway, Gateway], connect: Connect, redis_server: RedisServer) -> None:
    account(connect, two[0], "alice")
    bob = connect(two[0].address)
    login(bob, "bob")
    bob.send(type="dm", to="alice", text="secret", ref="d1")
    bob.recv_type("ack", ref="d1")
    out = io.StringIO()
    assert admin.main(["delete", "alice"], client=redis_server.client(), stdout=out) == 0
    account(connect, two[1], "alice", "another password")
    alice = connect(two[1].address)
    welcome, _ = login(alice, "alice", password="another password")
    assert welcome["dms"] == []
    alice.send(type="history", **{"with": "bob"})
    assert alice.recv_type("history")["messages"] == []


def test_a_live_dm_after_a_gap_brings_the_gap_first(
        two: tuple[Gateway, Gateway], connect: Connect, redis_server: RedisServer) -> None:
    account(connect, two[0], "alice")
    alice = connect(two[0].address)
    login(alice, "alice", password=PW)
    bob = connect(two[1].address)
    login(bob, "bob")
    bob.send(type="dm", to="alice", text="one", ref="d1")
    first = alice.recv_type("dm")
    # a dm stored but whose live copy never came (its publication lost on the way)
    raw = redis_server.client()
    tag = conversation_tag("alice", "bob")
    assert raw.incr(f"{tag}:seq") == 2
    lost = dict(first, text="lost on the way", id=2)
    raw.rpush(f"{tag}:log", json.dumps(lost, separators=(",", ":")))
    bob.send(type="dm", to="alice", text="three", ref="d3")
    got = [alice.recv_type("dm"), alice.recv_type("dm")]
    assert [(d["id"], d["text"]) for d in got] == [(2, "lost on the way"), (3, "three")]
    assert dm_ids(alice.drain(0.3), "bob") == []
