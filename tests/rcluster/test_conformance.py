"""docs/protocol.md's cluster-wide guarantees, with Redis Cluster under three gateway processes.

Rooms and names are chosen so that their keys live on different masters
(``ChatRedis.spread``): a room on each master, users whose ``{user:...}``
keys are on other masters than their rooms, so every cross-slot path the
gateway has (join, send, dm, takeover, resume, history) is exercised. On the
cluster backend each test also checks that the keys are where the slot map
says. Every client is a raw protocol client over TCP.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gateway.redis import keys
from tests.gateway.live import error, frames_until, ids, login, read_messages, send_ok
from tests.rcluster.conftest import Chat
from tests.support.gateways import GatewayProcess
from tests.support.rcluster import CLUSTER_GATEWAY, ON_CLUSTER
from tests.support.waiting import wait_for
from tests.support.wire import WireClient

pytestmark = [CLUSTER_GATEWAY, pytest.mark.timeout(90)]

Connect = Callable[[GatewayProcess], WireClient]


def texts(frames: list[dict[str, Any]], room: str) -> list[str]:
    out: list[str] = []
    for f in frames:
        if f["type"] == "message" and f["room"] == room:
            out.append(f["text"])
        elif f["type"] == "history" and f["room"] == room:
            out.extend(m["text"] for m in f["messages"])
    return out


def test_rooms_on_every_master_deliver_in_order_across_gateways(
        chat: Chat, connect: Connect) -> None:
    rooms = chat.redis.spread("order", 3)
    gw1, gw2, gw3 = chat.gateways
    names = ("alice", "bob", "carol")
    clients = [connect(gw) for gw in (gw1, gw2, gw3)]
    for client, name in zip(clients, names, strict=True):
        login(client, name, rooms)
    for client in clients:  # everyone is in: later joins would be interleaved with messages
        client.drain(0.3)
    sent: dict[str, list[str]] = {room: [] for room in rooms}
    for round_ in range(3):
        for client, name in zip(clients, names, strict=True):
            for room in rooms:
                text = f"{name} {round_} in {room}"
                msg_id = send_ok(client, room, text, ref=f"{room}-{name}-{round_}")
                sent[room].append(text)
                assert msg_id == len(sent[room]), "ids are 1, 2, 3 ... per room"
    for client in clients:
        got: list[dict[str, Any]] = []
        for room in rooms:
            got += read_messages(client, room, 9)
        for room in rooms:
            assert ids(got, room) == list(range(1, 10))
            assert texts(got, room) == sent[room]
    late = connect(gw2)
    _, histories = login(late, "dave", rooms)
    for room in rooms:
        assert [m["text"] for m in histories[room]["messages"]] == sent[room]
    if ON_CLUSTER:
        masters = {chat.redis.master_of(keys.room_log(room)) for room in rooms}
        assert len(masters) == 3, "the rooms were meant to live on three masters"
        for room in rooms:
            node = chat.redis.node(keys.room_log(room))
            assert node.llen(keys.room_log(room)) == 9
            assert node.get(keys.room_seq(room)) == b"9"
            node.close()


def test_a_dm_crosses_gateways_and_masters(chat: Chat, connect: Connect) -> None:
    sender, receiver = chat.redis.spread("dmuser", 2, user=True)
    gw1, _, gw3 = chat.gateways
    a, b = connect(gw1), connect(gw3)
    login(a, sender, ["dmroom"])
    login(b, receiver, ["dmroom"])
    a.send(type="dm", to=receiver, text="psst", ref="d1")
    got = b.recv_type("dm")
    assert (got["from"], got["to"], got["text"]) == (sender, receiver, "psst")
    assert a.recv_type("ack", ref="d1")
    echo = a.recv_type("dm")
    assert (echo["from"], echo["to"], echo["text"]) == (sender, receiver, "psst")
    b.send(type="dm", to=sender.upper(), text="back", ref="d2")
    assert a.recv_type("dm", text="back")["from"] == receiver
    assert b.recv_type("ack", ref="d2")
    # The same ref again is not delivered twice: the first ack comes back.
    a.send(type="dm", to=receiver, text="psst", ref="d1")
    assert a.recv_type("ack", ref="d1")
    assert [f for f in b.drain(0.5) if f["type"] == "dm" and f["text"] == "psst"] == []
    a.send(type="dm", to="nobody-here", text="hello?", ref="d3")
    error(a, "no_such_user", ref="d3")


def test_a_name_is_unique_across_gateways_whatever_its_case(
        chat: Chat, connect: Connect) -> None:
    gw1, gw2, gw3 = chat.gateways
    first = connect(gw1)
    login(first, "Erin", ["names"])
    other = connect(gw2)
    other.send(type="hello", name="ERIN", rooms=["names"])
    error(other, "name_taken")
    first.send(type="bye")
    first.wait_closed()

    def welcomed() -> bool:
        again = connect(gw3)
        again.send(type="hello", name="erin", rooms=["names"])
        frame = again.recv()
        return bool(frame["type"] == "welcome")

    wait_for(welcomed, 10, interval=0.2, what="the name free again after bye")


def test_joined_left_and_who_are_cluster_wide(chat: Chat, connect: Connect) -> None:
    (room,) = chat.redis.spread("presence", 1)
    gw1, gw2, gw3 = chat.gateways
    frank, grace, heidi = connect(gw1), connect(gw2), connect(gw3)
    login(frank, "frank", [room])
    login(grace, "grace", [room])
    assert frank.recv_type("joined", room=room, name="grace")
    login(heidi, "heidi", ["elsewhere"])
    heidi.send(type="join", room=room)
    heidi.recv_type("history", room=room)
    for client in (frank, grace):
        assert client.recv_type("joined", room=room, name="heidi")
    heidi.send(type="who", room=room)
    assert heidi.recv_type("who", room=room)["names"] == ["frank", "grace", "heidi"]
    grace.send(type="leave", room=room)
    for client in (frank, heidi):
        assert client.recv_type("left", room=room, name="grace")
    frank.send(type="who", room=room)
    assert frank.recv_type("who", room=room)["names"] == ["frank", "heidi"]


def test_a_token_takes_the_name_over_on_another_gateway(chat: Chat, connect: Connect) -> None:
    (room,) = chat.redis.spread("takeover", 1)
    gw1, gw2, _ = chat.gateways
    old = connect(gw1)
    welcome, _ = login(old, "ivan", [room])
    new = connect(gw2)
    again, _ = login(new, "ivan", [room], token=welcome["token"])
    assert again["gateway"] != welcome["gateway"]
    frames = old.wait_closed()
    assert frames[-1] == {"type": "bye", "reason": "replaced"}
    wrong = connect(gw1)
    wrong.send(type="hello", name="ivan", rooms=[room], token="not-the-token")
    error(wrong, "name_taken")
    # The new session is the room's member: a message reaches it.
    watcher = connect(gw1)
    login(watcher, "judy", [room])
    send_ok(watcher, room, "still there?", ref="t1")
    assert new.recv_type("message", room=room)["text"] == "still there?"


def test_resume_with_token_and_since_gets_exactly_what_was_missed(
        chat: Chat, connect: Connect) -> None:
    rooms = chat.redis.spread("resume", 2)
    gw1, gw2, gw3 = chat.gateways
    karl = connect(gw1)
    welcome, histories = login(karl, "karl", rooms)
    epochs = {room: histories[room]["epoch"] for room in rooms}
    writer = connect(gw2)
    login(writer, "lena", rooms)
    for room in rooms:
        for i in range(2):
            send_ok(writer, room, f"before {i}", ref=f"{room}-b{i}")
    for room in rooms:
        read_messages(karl, room, 2)
    karl.close()  # gone without bye, as a dropped connection
    for room in rooms:
        for i in range(3):
            send_ok(writer, room, f"missed {i}", ref=f"{room}-m{i}")
    back = connect(gw3)
    since = {room: {"epoch": epochs[room], "id": 2} for room in rooms}
    again, histories = login(back, "karl", rooms, token=welcome["token"], since=since)
    assert again["gateway"] == gw3.gateway_id
    for room in rooms:
        assert histories[room]["epoch"] == epochs[room]
        assert [m["id"] for m in histories[room]["messages"]] == [3, 4, 5]
        assert [m["text"] for m in histories[room]["messages"]] == [
            f"missed {i}" for i in range(3)]
    send_ok(writer, rooms[0], "live again", ref="live")
    assert back.recv_type("message", room=rooms[0])["id"] == 6


def test_history_scrolls_back_on_any_gateway(chat: Chat, connect: Connect) -> None:
    (room,) = chat.redis.spread("scroll", 1)
    gw1, _, gw3 = chat.gateways
    writer = connect(gw1)
    login(writer, "mona", [room])
    for i in range(1, 16):
        send_ok(writer, room, f"line {i}", ref=f"s{i}")
    reader = connect(gw3)
    _, histories = login(reader, "nils", [room])
    assert [m["id"] for m in histories[room]["messages"]] == list(range(1, 16))
    reader.send(type="history", room=room, before=11, limit=5)
    older = reader.recv_type("history", room=room)
    assert [m["id"] for m in older["messages"]] == [6, 7, 8, 9, 10]
    assert [m["text"] for m in older["messages"]] == [f"line {i}" for i in range(6, 11)]


def test_room_messages_travel_over_sharded_pubsub_only(chat: Chat, connect: Connect) -> None:
    """Each room's channel is SSUBSCRIBEd on the master owning its slot, once per gateway
    with members there, and never subscribed with plain SUBSCRIBE; each message is one
    SPUBLISH on that master."""
    if not ON_CLUSTER:
        pytest.skip("sharded pub/sub exists on the cluster backend only")
    assert chat.redis.cluster is not None
    cluster = chat.redis.cluster
    rooms = chat.redis.spread("sharded", 3)
    gw1, gw2, _ = chat.gateways
    olga, paul = connect(gw1), connect(gw2)
    login(olga, "olga", rooms)
    login(paul, "paul", rooms)
    spublish_before = {port: spublish_calls(cluster.client(port)) for port in cluster.ports}
    for room in rooms:
        for i in range(5):
            send_ok(olga, room, f"sharded {i}", ref=f"{room}-{i}")
        read_messages(paul, room, 5)
    for room in rooms:
        channel = keys.room_channel(room)
        owner = cluster.master_of(channel)
        with cluster.client(owner) as node:
            (name, count) = node.execute_command("PUBSUB", "SHARDNUMSUB", channel)
            assert (name.decode(), count) == (channel, 2), \
                f"{channel}: both gateways SSUBSCRIBEd on its master {owner}"
            assert spublish_calls(node) - spublish_before[owner] >= 5
    for port in cluster.running_ports():
        with cluster.client(port) as node:
            classic = [c.decode() for c in node.execute_command("PUBSUB", "CHANNELS")]
            assert not [c for c in classic if keys.room_of_channel(c.encode())], \
                f"node {port} has room channels on classic pub/sub: {classic}"
            counts = node.execute_command("PUBSUB", "NUMSUB",
                                          *(keys.room_channel(r) for r in rooms))
            assert counts[1::2] == [0, 0, 0], f"node {port}: {counts}"


def spublish_calls(node: Any) -> int:
    """SPUBLISH calls this node has run since it started (scripts' included)."""
    stats = node.info("commandstats")
    return int(stats.get("cmdstat_spublish", {}).get("calls", 0))


def test_a_message_reaches_members_on_every_gateway_in_a_room_on_each_master(
        chat: Chat, connect: Connect) -> None:
    """Fan-out: one send, one delivery per member, whatever gateway the member is on."""
    rooms = chat.redis.spread("fan", 3)
    members = [connect(gw) for gw in chat.gateways for _ in range(2)]
    for i, client in enumerate(members):
        login(client, f"fan{i}", rooms)
    for client in members:
        client.drain(0.3)
    for room in rooms:
        send_ok(members[0], room, f"to all in {room}", ref=room)
    for client in members:
        for room in rooms:
            frames = frames_until(client, "message", room=room)
            assert [f["text"] for f in frames if f["type"] == "message"] == [f"to all in {room}"]
