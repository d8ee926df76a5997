"""Three gateways on one real redis-server: docs/protocol.md's cluster-wide guarantees.

In-process gateways (fast timings: heartbeat 0.5 s, lease 2 s) unless a test
must kill one, which then runs as a ``python -m gateway`` process. Every
client is a raw protocol client over TCP. Clients that must keep reading
while a test does something else get a ``Collector`` thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from itertools import pairwise
from typing import Any

import pytest

from gateway.redis import keys
from gateway.redis.publisher import SETTLE_S
from gateway.server import Gateway
from gateway.subscriber import Ticket
from protocol.limits import Limits
from tests.gateway.live import (
    Collector,
    error,
    frames_until,
    ids,
    login,
    read_messages,
    send_ok,
    wait_closed_with_bye,
)
from tests.support.gateways import GatewayProcess, gateways
from tests.support.redis_server import RedisEndpoint, RedisServer
from tests.support.waiting import wait_for
from tests.support.wire import WireClient

ROOMY = Limits(rate_per_s=10_000.0, burst=10_000)

Connect = Callable[[Gateway | tuple[str, int]], WireClient]


@pytest.fixture
def cluster(gateway_redis: RedisEndpoint) -> Iterator[list[Gateway]]:
    with gateways(gateway_redis.url, n=3, limits=ROOMY) as gws:
        yield gws


@pytest.fixture
def connect() -> Iterator[Connect]:
    clients: list[WireClient] = []

    def open_client(where: Gateway | tuple[str, int]) -> WireClient:
        client = WireClient(where.address if isinstance(where, Gateway) else where)
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        client.close()


def assert_in_order_once(got: list[int]) -> None:
    """Every id at most once, increasing: docs/protocol.md's per-client delivery rule."""
    assert got == sorted(set(got)), [(a, b) for a, b in pairwise(got) if b <= a][:10]


# ------------------------------------------------------------------ rooms


def test_a_message_reaches_every_member_on_every_gateway(
        cluster: list[Gateway], connect: Connect) -> None:
    clients = [connect(gw) for gw in cluster]
    for i, c in enumerate(clients):
        login(c, f"user{i}")
    for i, c in enumerate(clients):
        assert send_ok(c, "lobby", f"from {i}", f"r{i}") == i + 1
    for c in clients:
        frames = read_messages(c, "lobby", 3)
        got = [(f["id"], f["from"], f["text"]) for f in frames if f["type"] == "message"]
        assert got == [(1, "user0", "from 0"), (2, "user1", "from 1"), (3, "user2", "from 2")]


def test_ids_are_consecutive_and_in_order_for_everyone_under_concurrent_senders(
        cluster: list[Gateway], connect: Connect) -> None:
    per_sender, senders_per_gateway = 40, 2
    senders = [connect(gw) for gw in cluster for _ in range(senders_per_gateway)]
    readers = [connect(gw) for gw in cluster]
    for i, c in enumerate(senders):
        login(c, f"s{i}")
    for i, c in enumerate(readers):
        login(c, f"reader{i}")
    start = threading.Barrier(len(senders))
    acked: dict[int, list[int]] = {}

    def run(i: int, client: WireClient) -> None:
        start.wait()
        for n in range(per_sender):
            client.send(type="send", room="lobby", text=f"{i}:{n}", ref=f"{i}:{n}")
        acked[i] = [client.recv_type("ack", ref=f"{i}:{n}")["id"] for n in range(per_sender)]

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    total = per_sender * len(senders)
    assert sorted(i for mine in acked.values() for i in mine) == list(range(1, total + 1))
    for mine in acked.values():
        assert mine == sorted(mine)  # one connection's sends keep their order
    for client in readers + senders:
        frames = read_messages(client, "lobby", total)
        messages = [f for f in frames if f["type"] == "message"]
        assert [m["id"] for m in messages] == list(range(1, total + 1))
        by_sender: dict[str, list[int]] = {}
        for m in messages:
            i, n = m["text"].split(":")
            by_sender.setdefault(i, []).append(int(n))
            assert acked[int(i)][int(n)] == m["id"]
        assert all(v == list(range(per_sender)) for v in by_sender.values())


def test_history_on_login_on_join_and_on_request_across_gateways(
        cluster: list[Gateway], connect: Connect) -> None:
    writer = connect(cluster[0])
    login(writer, "writer", ["lobby", "dev"])
    for i in range(1, 8):
        send_ok(writer, "dev", f"m{i}", f"r{i}")
    on_login = connect(cluster[1])
    _, histories = login(on_login, "reader", ["dev"])
    assert ids([histories["dev"]]) == list(range(1, 8))
    assert [m["text"] for m in histories["dev"]["messages"]] == [f"m{i}" for i in range(1, 8)]
    on_join = connect(cluster[2])
    login(on_join, "joiner")
    on_join.send(type="join", room="dev")
    joined = on_join.recv_type("history", room="dev")
    assert joined == histories["dev"]
    on_login.send(type="history", room="dev", before=4, limit=2)
    page = on_login.recv_type("history", room="dev")
    assert ids([page]) == [2, 3] and page["epoch"] == joined["epoch"]


def test_who_joined_and_left_across_gateways(cluster: list[Gateway], connect: Connect) -> None:
    alice = connect(cluster[0])
    login(alice, "alice", ["lobby", "dev"])
    bob = connect(cluster[1])
    login(bob, "Bob", ["dev"])
    assert alice.recv_type("joined", room="dev", name="Bob") == {
        "type": "joined", "room": "dev", "name": "Bob"}
    carol = connect(cluster[2])
    login(carol, "carol")
    carol.send(type="who", room="dev")
    assert carol.recv_type("who") == {"type": "who", "room": "dev", "names": ["alice", "Bob"]}
    bob.send(type="leave", room="dev")
    bob.recv_type("left", room="dev")
    assert alice.recv_type("left", room="dev") == {"type": "left", "room": "dev", "name": "Bob"}
    carol.send(type="join", room="dev")
    carol.recv_type("history", room="dev")
    assert alice.recv_type("joined", room="dev", name="carol")
    carol.send(type="who", room="dev")
    assert carol.recv_type("who")["names"] == ["alice", "carol"]
    carol.send(type="bye")
    wait_closed_with_bye(carol, "client")
    assert alice.recv_type("left", room="dev", name="carol")
    assert alice.recv_type("left", room="lobby", name="carol")
    alice.send(type="who", room="dev")
    assert alice.recv_type("who")["names"] == ["alice"]


def test_typing_crosses_gateways_but_not_back_to_the_typist(
        cluster: list[Gateway], connect: Connect) -> None:
    alice, bob, carol = (connect(gw) for gw in cluster)
    for c, n in ((alice, "alice"), (bob, "bob"), (carol, "carol")):
        login(c, n)
    alice.send(type="typing", room="lobby")
    assert bob.recv_type("typing") == {"type": "typing", "room": "lobby", "name": "alice"}
    assert carol.recv_type("typing") == {"type": "typing", "room": "lobby", "name": "alice"}
    send_ok(alice, "lobby", "marker", "m")
    assert not [f for f in read_messages(alice, "lobby", 1) if f["type"] == "typing"]


# ------------------------------------------------------------------ users


def test_dm_across_gateways_and_to_self(cluster: list[Gateway], connect: Connect) -> None:
    alice = connect(cluster[0])
    bob = connect(cluster[2])
    login(alice, "alice")
    login(bob, "Bob")
    alice.send(type="dm", to="bob", text="psst", ref="d1")
    got = bob.recv_type("dm")
    assert (got["from"], got["to"], got["text"]) == ("alice", "Bob", "psst")
    assert alice.recv_type("ack", ref="d1") == {"type": "ack", "ref": "d1"}
    assert alice.recv_type("dm") == got
    bob.send(type="dm", to="BOB", text="self", ref="d2")
    bob.recv_type("ack", ref="d2")
    assert bob.recv_type("dm")["text"] == "self"
    bob.send(type="ping", ref="p")
    frames = frames_until(bob, "pong", ref="p")
    assert not [f for f in frames if f["type"] == "dm"]  # to self: exactly one copy
    bob.send(type="bye")
    bob.wait_closed()
    alice.send(type="dm", to="bob", text="gone?", ref="d3")
    assert error(alice, "no_such_user")["ref"] == "d3"


def test_name_taken_across_gateways_case_insensitively(
        cluster: list[Gateway], connect: Connect) -> None:
    first = connect(cluster[0])
    login(first, "Alice")
    for gw in cluster:
        c = connect(gw)
        c.send(type="hello", name="aLiCe", ref="h")
        assert error(c, "name_taken")["ref"] == "h"
    first.send(type="bye")
    first.wait_closed()
    again = connect(cluster[2])
    login(again, "ALICE")


@pytest.mark.parametrize("same_gateway", [False, True], ids=["other-gateway", "same-gateway"])
def test_token_takeover_replaces_the_old_connection_and_keeps_the_rooms(
        cluster: list[Gateway], connect: Connect, same_gateway: bool) -> None:
    observer = connect(cluster[2])
    login(observer, "observer", ["lobby", "dev"])
    old = connect(cluster[0])
    welcome, _ = login(old, "alice", ["lobby", "dev"])
    observer.recv_type("joined", room="dev", name="alice")
    send_ok(observer, "dev", "before", "b")
    frames_until(observer, "message", room="dev", id=1)
    new = connect(cluster[0] if same_gateway else cluster[1])
    new_welcome, histories = login(new, "ALICE", ["lobby", "dev"], token=welcome["token"])
    assert new_welcome["name"] == "ALICE" and new_welcome["token"] != welcome["token"]
    assert ids([histories["dev"]]) == [1]
    wait_closed_with_bye(old, "replaced")
    send_ok(observer, "dev", "after", "a")
    assert new.recv_type("message", room="dev")["text"] == "after"
    seen = frames_until(observer, "message", room="dev", id=2)
    assert [f for f in seen if f["type"] in ("left", "joined")] == []
    for room in ("lobby", "dev"):
        observer.send(type="who", room=room)
        assert observer.recv_type("who")["names"] == ["ALICE", "observer"]
    # the old token is spent; the new one works, on any gateway
    thief = connect(cluster[2])
    thief.send(type="hello", name="alice", token=welcome["token"])
    error(thief, "name_taken")
    newest = connect(cluster[2])
    login(newest, "alice", ["dev"], token=new_welcome["token"])
    wait_closed_with_bye(new, "replaced")
    observer.send(type="who", room="lobby")  # the takeover did not ask for lobby: left
    assert observer.recv_type("who")["names"] == ["observer"]
    observer.send(type="who", room="dev")
    assert observer.recv_type("who")["names"] == ["alice", "observer"]


def test_a_takeover_on_another_gateway_is_not_announced_as_left_and_joined(
        cluster: list[Gateway], connect: Connect, monkeypatch: pytest.MonkeyPatch) -> None:
    observer = connect(cluster[2])
    login(observer, "observer", ["dev"])
    old = connect(cluster[0])
    welcome, _ = login(old, "alice", ["dev"])
    frames_until(observer, "joined", room="dev", name="alice")
    old_gone = threading.Event()
    real_subscribe = cluster[1].subscriber.subscribe

    def subscribe(room: str) -> Ticket:
        old_gone.wait(10)  # the slowest legal order: the old session has cleaned up first
        return real_subscribe(room)

    monkeypatch.setattr(cluster[1].subscriber, "subscribe", subscribe)
    new = connect(cluster[1])
    new.send(type="hello", name="alice", rooms=["dev"], token=welcome["token"])
    wait_closed_with_bye(old, "replaced")  # closed after its cleanup
    old_gone.set()
    new.recv_type("history", room="dev")
    send_ok(observer, "dev", "marker", "m")
    seen = frames_until(observer, "message", room="dev", id=1)
    assert [f for f in seen if f["type"] in ("left", "joined")] == []


def test_resume_with_since_on_another_gateway_has_no_gap_and_no_duplicate(
        cluster: list[Gateway], connect: Connect) -> None:
    writer = connect(cluster[2])
    login(writer, "writer")
    alice = connect(cluster[0])
    welcome, histories = login(alice, "alice")
    epoch = histories["lobby"]["epoch"]
    for i in range(1, 6):
        send_ok(writer, "lobby", f"m{i}", f"r{i}")
    read_messages(alice, "lobby", 5)
    alice.close()  # the connection drops; alice saw up to 5
    for i in range(6, 11):
        send_ok(writer, "lobby", f"m{i}", f"r{i}")
    resumed = connect(cluster[1])
    _, histories = login(resumed, "alice", token=welcome["token"],
                         since={"lobby": {"epoch": epoch, "id": 5}})
    assert histories["lobby"]["epoch"] == epoch
    assert ids([histories["lobby"]]) == [6, 7, 8, 9, 10]
    assert histories["lobby"]["complete"] is True
    send_ok(writer, "lobby", "m11", "r11")
    frames = read_messages(resumed, "lobby", 11)
    assert ids(frames, "lobby") == [11]


def test_resume_with_an_unknown_epoch_gets_the_retained_history_of_the_real_one(
        cluster: list[Gateway], connect: Connect) -> None:
    writer = connect(cluster[0])
    _, histories = login(writer, "writer")
    for i in range(1, 4):
        send_ok(writer, "lobby", f"m{i}", f"r{i}")
    resumed = connect(cluster[1])
    _, got = login(resumed, "alice", since={"lobby": {"epoch": "an-old-epoch", "id": 2}})
    assert got["lobby"]["epoch"] == histories["lobby"]["epoch"]
    assert ids([got["lobby"]]) == [1, 2, 3]  # everything: the client's ids mean nothing here


def test_resume_from_an_id_beyond_what_is_kept_says_incomplete(
        shared_redis: RedisEndpoint, connect: Connect) -> None:
    with gateways(shared_redis.url, n=2, limits=ROOMY, history=10) as (gw1, gw2):
        writer = connect(gw1)
        _, histories = login(writer, "writer")
        for i in range(1, 31):
            writer.send(type="send", room="lobby", text=f"m{i}", ref=f"r{i}")
        writer.recv_type("ack", ref="r30")
        resumed = connect(gw2)
        _, got = login(resumed, "alice",
                       since={"lobby": {"epoch": histories["lobby"]["epoch"], "id": 5}})
        assert ids([got["lobby"]]) == list(range(21, 31))
        assert got["lobby"]["complete"] is False


def test_a_repeated_ref_is_acknowledged_with_the_first_id_and_delivered_once(
        cluster: list[Gateway], connect: Connect) -> None:
    reader = connect(cluster[2])
    login(reader, "reader")
    alice = connect(cluster[0])
    welcome, _ = login(alice, "alice", ["lobby", "dev"])
    assert send_ok(alice, "lobby", "once", "same") == 1
    assert send_ok(alice, "lobby", "once", "same") == 1
    assert send_ok(alice, "dev", "other room, same ref", "same") == 1  # refs are per room
    assert send_ok(alice, "lobby", "next", "other") == 2
    alice.send(type="dm", to="reader", text="dm once", ref="dm-ref")
    alice.recv_type("ack", ref="dm-ref")
    alice.send(type="dm", to="reader", text="dm once", ref="dm-ref")
    alice.recv_type("ack", ref="dm-ref")
    # the connection drops before the client trusts its acks: it resends on another gateway
    alice.close()
    again = connect(cluster[1])
    login(again, "alice", token=welcome["token"])
    assert send_ok(again, "lobby", "once", "same") == 1
    again.send(type="dm", to="reader", text="dm once", ref="dm-ref")
    again.recv_type("ack", ref="dm-ref")
    assert send_ok(again, "lobby", "marker", "end") == 3
    frames = read_messages(reader, "lobby", 3)
    assert [(f["id"], f["text"]) for f in frames if f["type"] == "message"] == [
        (1, "once"), (2, "next"), (3, "marker")]
    assert [f["text"] for f in frames if f["type"] == "dm"] == ["dm once"]
    assert [f["text"] for f in again.drain(0.2) if f["type"] == "dm"] == []  # no 2nd copy


# ------------------------------------------------------------------ failures


@pytest.mark.slow
def test_a_killed_gateway_frees_its_names_and_its_rooms_see_left_within_15_s(
        shared_redis: RedisEndpoint, cluster: list[Gateway], connect: Connect) -> None:
    observer = connect(cluster[0])
    login(observer, "observer", ["lobby", "dev"])
    proc = GatewayProcess(shared_redis.url, "victim")
    try:
        victims = [connect(proc.address) for _ in range(2)]
        login(victims[0], "alice", ["lobby", "dev"])
        login(victims[1], "bob", ["dev"])
        for name in ("alice", "bob"):
            observer.recv_type("joined", room="dev", name=name)
        proc.kill()
        killed = time.monotonic()
        for room, name in (("lobby", "alice"), ("dev", "alice"), ("dev", "bob")):
            assert observer.recv_type("left", room=room, name=name, timeout=15)
        assert time.monotonic() - killed < 15
        for gw, name in ((cluster[1], "ALICE"), (cluster[2], "bob")):
            login(connect(gw), name)  # no token: the dead gateway's names are free
        assert time.monotonic() - killed < 15
        observer.send(type="who", room="dev")
        assert observer.recv_type("who")["names"] == ["observer"]
        for victim in victims:
            victim.wait_closed(5)
    finally:
        proc.close()


@pytest.mark.slow
def test_redis_stopped_and_restarted_mid_stream_loses_nothing_acknowledged(
        redis_server: RedisServer, cluster: list[Gateway], connect: Connect) -> None:
    clients = [connect(gw) for gw in cluster]
    for i, c in enumerate(clients):
        login(c, f"reader{i}")
    readers = [Collector(c) for c in clients]
    senders = [connect(gw) for gw in cluster]
    for i, s in enumerate(senders):
        login(s, f"sender{i}")
    stop = threading.Event()
    acked: dict[str, int] = {}
    refused = [0, 0, 0]
    lock = threading.Lock()

    def send_until_stopped(i: int, client: WireClient) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            ref = f"{i}-{n}"
            while True:  # resend the same ref until acknowledged: exactly once
                client.send(type="send", room="lobby", text=ref, ref=ref)
                frame = _ack_or_error(client, ref)
                if frame["type"] == "ack":
                    with lock:
                        acked[ref] = frame["id"]
                    break
                assert frame["code"] == "unavailable", frame
                refused[i] += 1
                stop.wait(0.02)
            stop.wait(0.005)

    threads = [threading.Thread(target=send_until_stopped, args=(i, s))
               for i, s in enumerate(senders)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(acked) >= 30, 10, what="messages before the outage")
        redis_server.stop()
        # a sender whose send was in flight at the stop is in doubt: refused only once
        # the publisher's settle time has passed with Redis still away
        wait_for(lambda: all(refused), SETTLE_S + 10,
                 what="every sender refused during the outage")
        before_restart = len(acked)
        redis_server.start()
        wait_for(lambda: len(acked) >= before_restart + 30, 15, what="messages after it")
    finally:
        stop.set()
        for t in threads:
            t.join(15)
    top = max(acked.values())
    assert sorted(acked.values()) == list(range(1, top + 1))  # one id per ref, no gap
    for reader in readers:
        got = reader.wait_id("lobby", top)
        assert_in_order_once(got)
        assert got == list(range(1, top + 1))
        texts = _texts(reader.stop())
        assert all(texts[msg_id] == ref for ref, msg_id in acked.items())
        assert not reader.client.closed  # still connected


def _ack_or_error(client: WireClient, ref: str) -> dict[str, Any]:
    """The answer to ``ref``: a send in doubt is answered within the settle time."""
    while True:
        frame = client.recv(SETTLE_S + 5)
        if frame["type"] in ("ack", "error") and frame.get("ref") == ref:
            return frame


def _texts(frames: list[dict[str, Any]]) -> dict[int, str]:
    """id -> text of every lobby message seen, live or in a history batch."""
    out = {f["id"]: f["text"] for f in frames if f["type"] == "message"}
    for f in frames:
        if f["type"] == "history":
            out.update((m["id"], m["text"]) for m in f["messages"])
    return out


def test_redis_restarted_empty_starts_a_new_epoch_and_nothing_breaks(
        redis_server: RedisServer, cluster: list[Gateway], connect: Connect) -> None:
    clients = [connect(gw) for gw in cluster]
    epochs = []
    for i, c in enumerate(clients):
        _, histories = login(c, f"user{i}")
        epochs.append(histories["lobby"]["epoch"])
    old_epoch = epochs[0]
    for i in range(1, 4):
        send_ok(clients[0], "lobby", f"old {i}", f"o{i}")
    for c in clients:
        read_messages(c, "lobby", 3)
    redis_server.restart(wipe=True)
    fresh = [c.recv_type("history", room="lobby", timeout=15) for c in clients]
    new_epoch = fresh[0]["epoch"]
    assert new_epoch != old_epoch
    assert all(h["epoch"] == new_epoch and h["messages"] == [] for h in fresh)
    wait_for(lambda: all(gw.healthy for gw in cluster), 15, what="gateways healthy")
    assert send_ok(clients[1], "lobby", "new 1", "n1") == 1
    for c in clients:
        frames = read_messages(c, "lobby", 1)
        assert [(f["id"], f["text"]) for f in frames if f["type"] == "message"] == [(1, "new 1")]
    # presence came back: names are held again, who and dm work
    wait_for(lambda: _who(clients[2], "lobby") == ["user0", "user1", "user2"], 10,
             what="presence restored")
    thief = connect(cluster[0])
    thief.send(type="hello", name="user1")
    error(thief, "name_taken")
    clients[0].send(type="dm", to="user2", text="still there?", ref="d")
    clients[0].recv_type("ack", ref="d")
    assert clients[2].recv_type("dm")["text"] == "still there?"
    late = connect(cluster[2])
    _, histories = login(late, "late")
    assert histories["lobby"]["epoch"] == new_epoch and ids([histories["lobby"]]) == [1]


def _who(client: WireClient, room: str) -> list[str]:
    client.send(type="who", room=room)
    return list(client.recv_type("who", room=room)["names"])


@pytest.mark.slow
def test_killed_pubsub_connections_miss_nothing(
        shared_redis: RedisEndpoint, cluster: list[Gateway], connect: Connect) -> None:
    """``CLIENT KILL TYPE pubsub`` while another gateway publishes: the gap is filled, in order."""
    clients = [connect(gw) for gw in cluster]
    for i, c in enumerate(clients):
        login(c, f"reader{i}")
    readers = [Collector(c) for c in clients]
    sender = connect(cluster[0])
    login(sender, "sender")
    stop = threading.Event()
    last = [0]

    def publish() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            last[0] = send_ok(sender, "lobby", f"m{n}", f"r{n}")
            stop.wait(0.002)

    thread = threading.Thread(target=publish)
    thread.start()
    def reconnects() -> list[float]:
        return [gw.metrics.redis_reconnects._value.get() for gw in cluster]

    admin = shared_redis.client()
    start = reconnects()
    try:
        for round_ in range(5):
            target = last[0] + 10
            wait_for(lambda: last[0] >= target, 10, what="more messages")  # noqa: B023
            before = reconnects()
            assert admin.client_kill_filter(_type="pubsub") == 3, round_
            # each subscriber noticed, then subscribed again (connected alone may be stale)
            wait_for(lambda: all(a > b for a, b in zip(reconnects(), before,  # noqa: B023
                                                         strict=True)), 10)
            wait_for(lambda: all(gw.subscriber.connected for gw in cluster), 10)
    finally:
        target = last[0] + 10
        wait_for(lambda: last[0] >= target, 10, what="messages after the last kill")
        stop.set()
        thread.join(10)
    assert all(a >= b + 5 for a, b in zip(reconnects(), start, strict=True))
    for reader in readers:
        got = reader.wait_id("lobby", last[0])
        assert got == list(range(1, last[0] + 1))
        reader.stop()


@pytest.mark.slow
def test_an_outage_longer_than_the_lease_reaps_nobody(
        redis_server: RedisServer, cluster: list[Gateway], connect: Connect) -> None:
    """While Redis is down no gateway can beat: when it is back, peers are not dead."""
    clients = [connect(gw) for gw in cluster]
    for i, c in enumerate(clients):
        login(c, f"user{i}", ["lobby", "dev"])
    for c in clients:
        frames_until(c, "joined", room="dev", name="user2")
    readers = [Collector(c) for c in clients]
    lease_s = cluster[0].config.lease_ms / 1000
    redis_server.stop()
    stopped = time.monotonic()
    wait_for(lambda: not any(gw.healthy for gw in cluster), 10, what="every gateway unhealthy")
    wait_for(lambda: time.monotonic() - stopped > 2 * lease_s, 10, what="the lease ran out")
    redis_server.start()
    back_ms = time.time() * 1000
    wait_for(lambda: all(gw.healthy for gw in cluster), 15, what="every gateway healthy")
    marker = connect(cluster[0])
    login(marker, "marker")
    # each gateway beat twice since: so each looked for dead peers at least once
    admin = redis_server.client()
    later = back_ms + 2 * cluster[0].config.heartbeat_s * 1000
    wait_for(lambda: all((admin.zscore(keys.GATEWAYS, gw.config.gateway_id) or 0) > later
                         for gw in cluster), 10, what="heartbeats after the outage")
    send_ok(marker, "lobby", "after the outage", "m")
    for r in readers:
        r.wait_id("lobby", 1)
        frames = r.stop()
        assert [f for f in frames if f["type"] == "left"] == [], frames
        assert not r.client.closed
    for i, gw in enumerate(cluster):
        thief = connect(gw)
        thief.send(type="hello", name=f"USER{i}")
        error(thief, "name_taken")
    assert _who(marker, "dev") == ["user0", "user1", "user2"]


class HeldHeartbeat:
    """Parks one gateway's heartbeats: 'it has not beaten again yet'."""

    def __init__(self, gw: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
        self._open = threading.Event()
        self._open.set()
        self._parked = threading.Event()
        real = gw.broker.heartbeat

        def heartbeat() -> bool:
            if not self._open.is_set():
                self._parked.set()
                self._open.wait(30)
            return real()

        monkeypatch.setattr(gw.broker, "heartbeat", heartbeat)

    def hold(self) -> None:
        """Return once the gateway's housekeeper waits before its next heartbeat."""
        self._open.clear()
        wait_for(self._parked.is_set, 10, what="the heartbeat parked")

    def release(self) -> None:
        self._open.set()


@pytest.fixture
def held_heartbeat(cluster: list[Gateway], monkeypatch: pytest.MonkeyPatch
                   ) -> Iterator[HeldHeartbeat]:
    held = HeldHeartbeat(cluster[1], monkeypatch)
    try:
        yield held
    finally:
        held.release()


def _outage_longer_than_the_lease(redis_server: RedisServer, cluster: list[Gateway],
                                  held: HeldHeartbeat) -> None:
    """Stop Redis past the lease and start it again, gw2's last beat from before the outage."""
    lease_s = cluster[0].config.lease_ms / 1000
    held.hold()
    redis_server.stop()
    stopped = time.monotonic()
    wait_for(lambda: time.monotonic() - stopped > lease_s, 10, what="the lease ran out")
    redis_server.start()
    wait_for(lambda: cluster[0].healthy, 15, what="gw1 healthy")


@pytest.mark.slow
def test_users_of_a_gateway_that_has_not_beaten_yet_still_get_their_dms(
        redis_server: RedisServer, cluster: list[Gateway], connect: Connect,
        held_heartbeat: HeldHeartbeat) -> None:
    alice = connect(cluster[0])
    bob = connect(cluster[1])
    login(alice, "alice")
    login(bob, "bob")
    _outage_longer_than_the_lease(redis_server, cluster, held_heartbeat)
    alice.send(type="dm", to="bob", text="are you there?", ref="d")
    frame = _ack_or_error(alice, "d")
    assert frame["type"] == "ack" or frame["code"] == "unavailable", frame  # not no_such_user


@pytest.mark.slow
def test_a_held_name_is_not_free_before_its_gateway_beats_again(
        redis_server: RedisServer, cluster: list[Gateway], connect: Connect,
        held_heartbeat: HeldHeartbeat) -> None:
    bob = connect(cluster[1])
    login(bob, "bob")
    _outage_longer_than_the_lease(redis_server, cluster, held_heartbeat)
    thief = connect(cluster[0])
    thief.send(type="hello", name="bob")
    frame = thief.recv()
    assert frame["type"] == "error" and frame["code"] in ("name_taken", "unavailable"), frame


@pytest.mark.slow
def test_a_gateway_killed_during_an_outage_is_reaped_within_15_s_of_redis_coming_back(
        redis_server: RedisServer, cluster: list[Gateway], connect: Connect) -> None:
    """The grace after an outage delays reaping by one lease, no more (docs/architecture.md)."""
    observer = connect(cluster[0])
    login(observer, "observer", ["dev"])
    proc = GatewayProcess(redis_server.url, "victim")
    try:
        victim = connect(proc.address)
        login(victim, "alice", ["dev"])
        observer.recv_type("joined", room="dev", name="alice")
        lease_s = cluster[0].config.lease_ms / 1000
        redis_server.stop()
        proc.kill()
        stopped = time.monotonic()
        wait_for(lambda: time.monotonic() - stopped > lease_s, 10, what="the lease ran out")
        redis_server.start()
        back = time.monotonic()
        assert observer.recv_type("left", room="dev", name="alice", timeout=15)
        login(connect(cluster[1]), "ALICE", ["dev"])  # no token: the name is free
        assert time.monotonic() - back < 15
        assert observer.recv_type("joined", room="dev", name="ALICE")
        observer.send(type="who", room="dev")
        assert observer.recv_type("who")["names"] == ["ALICE", "observer"]
    finally:
        proc.close()
