"""The broker's Lua scripts and failure handling on a real redis-server.

The fakeredis tests (tests/gateway/test_broker.py) cover every branch; these
prove the same scripts on the real thing, plus what only a real server shows:
restarts, SCRIPT FLUSH, a killed or paused server, passwords, concurrency.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import redis
from redis.backoff import NoBackoff

from gateway.redis import keys
from gateway.redis.broker import Broker, BrokerUnavailable
from protocol.codec import encode
from protocol.errors import ErrorCode, ProtocolError
from protocol.frames import DirectMessage, Joined, Left, Message
from tests.support.broker_clock import FakeClock
from tests.support.redis_server import RedisEndpoint, RedisServer
from tests.support.waiting import wait_for


class Listener:
    """Everything published on some channels so far, read up to a marker of our own."""

    def __init__(self, client: redis.Redis, *channels: str) -> None:
        self.client = client
        self.channel = channels[0]
        self.pubsub = client.pubsub()
        self.pubsub.subscribe(*channels)
        confirmed = 0
        while confirmed < len(channels):
            msg = self.pubsub.get_message(timeout=5.0)
            assert msg is not None, "subscription not confirmed"
            confirmed += msg["type"] == "subscribe"

    def take(self) -> list[tuple[str, bytes]]:
        marker = f"marker-{uuid.uuid4().hex}".encode()
        self.client.publish(self.channel, marker)
        out: list[tuple[str, bytes]] = []
        while True:
            msg = self.pubsub.get_message(timeout=5.0)
            assert msg is not None, "marker never arrived"
            if msg["type"] != "message":
                continue
            if msg["data"] == marker:
                return out
            out.append((msg["channel"].decode(), msg["data"]))


def line(frame: Any) -> bytes:
    return encode(frame)[:-1]


def fast_broker(url: str, gateway_id: str = "gw1", **kw: Any) -> Broker:
    """A broker whose retries never sleep, so failure tests stay quick."""
    kw.setdefault("retries", 2)
    return Broker.from_url(url, gateway_id, backoff=NoBackoff(), timeout_s=1.0, **kw)


@pytest.fixture
def raw(gateway_redis: RedisEndpoint) -> Iterator[redis.Redis]:
    client = gateway_redis.client()
    yield client
    client.close()


def test_messages_history_and_duplicates(shared_redis: RedisEndpoint, raw: redis.Redis) -> None:
    broker = fast_broker(shared_redis.url, history=5)
    sub = Listener(raw, keys.room_channel("lobby"))
    text = 'caf\u00e9 "quoted" \U0001f600\nline two'
    published = [broker.publish_message("lobby", "Bob", f"{text} {i}", 10.0 + i, f"r{i}")
                 for i in range(1, 9)]
    assert [p.id for p in published] == list(range(1, 9))
    epoch = published[0].epoch
    expected = [line(Message("lobby", i, "Bob", f"{text} {i}", 10.0 + i)) for i in range(1, 9)]
    assert sub.take() == [("{room:lobby}:ch", b"M%s|%d|%s" % (epoch.encode(), i, expected[i - 1]))
                          for i in range(1, 9)]

    again = broker.publish_message("lobby", "BOB", "ignored", 99.0, "r3")
    assert (again.id, again.duplicate, again.epoch) == (3, True, epoch)
    assert sub.take() == []

    newest = broker.read_history("lobby")
    assert newest.messages == tuple(expected[3:])
    assert (newest.first_id, newest.last_id, newest.complete) == (4, 8, False)
    page = broker.read_history("lobby", before=6, limit=2)
    assert (page.messages, page.complete) == (tuple(expected[3:5]), True)
    resume = broker.read_history("lobby", after=2)
    assert (resume.messages, resume.complete) == (tuple(expected[3:]), False)
    assert broker.read_history("lobby", after=3).complete
    assert orjson.loads(newest.messages[0])["text"] == f"{text} 4"
    broker.close()


def test_concurrent_publishers_get_every_id_once(shared_redis: RedisEndpoint) -> None:
    brokers = [fast_broker(shared_redis.url, f"gw{i}") for i in range(3)]
    ids: list[int] = []
    lock = threading.Lock()

    def send(broker: Broker) -> None:
        for n in range(100):
            got = broker.publish_message("busy", "Bob", f"{n}", 1.0, None).id
            with lock:
                ids.append(got)

    threads = [threading.Thread(target=send, args=(b,)) for b in brokers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(ids) == list(range(1, 301))
    history = brokers[0].read_history("busy", after=0)
    assert [orjson.loads(m)["id"] for m in history.messages] == list(range(1, 301))
    for b in brokers:
        b.close()


def test_scripts_survive_script_flush(shared_redis: RedisEndpoint, raw: redis.Redis) -> None:
    broker = fast_broker(shared_redis.url)
    broker.heartbeat()
    broker.publish_message("lobby", "Bob", "x", 1.0, None)
    broker.claim_name("Bob", "s1", None)
    raw.script_flush()
    assert broker.publish_message("lobby", "Bob", "y", 1.0, None).id == 2
    assert broker.read_history("lobby").last_id == 2
    assert broker.join("lobby", "Bob")
    broker.close()


def test_epoch_survives_a_restart_with_data_and_changes_without(
        redis_server: RedisServer) -> None:
    broker = fast_broker(redis_server.url, retries=20)
    first = broker.publish_message("lobby", "Bob", "x", 1.0, None)
    quiet = broker.read_history("quiet", after=0)
    assert quiet.last_id == 0  # a room with only an epoch
    quiet_epoch = quiet.epoch

    redis_server.restart()  # AOF kept: same epochs, ids go on
    assert broker.publish_message("lobby", "Bob", "y", 1.0, None).id == 2
    lobby = broker.read_history("lobby", after=2)
    assert (lobby.epoch, lobby.last_id) == (first.epoch, 2)
    quiet = broker.read_history("quiet", after=0)
    assert (quiet.epoch, quiet.last_id) == (quiet_epoch, 0)

    redis_server.restart(wipe=True)  # state lost: a new epoch, ids from 1
    after = broker.publish_message("lobby", "Bob", "z", 1.0, None)
    assert (after.id, after.duplicate) == (1, False) and after.epoch != first.epoch
    batch = broker.read_history("lobby", after=2)
    assert batch.epoch == after.epoch and batch.last_id == 1
    broker.close()


def test_flushall_gives_rooms_a_new_epoch(shared_redis: RedisEndpoint, raw: redis.Redis) -> None:
    broker = fast_broker(shared_redis.url)
    old = broker.read_history("lobby").epoch
    raw.flushall()
    assert broker.read_history("lobby").epoch != old
    broker.close()


def test_names_takeover_and_dead_gateways(shared_redis: RedisEndpoint, raw: redis.Redis) -> None:
    clock = FakeClock()
    gw1 = fast_broker(shared_redis.url, "gw1", clock=clock)
    gw2 = fast_broker(shared_redis.url, "gw2", clock=clock)
    sub = Listener(raw, keys.gateway_channel("gw1"), keys.gateway_channel("gw2"))
    first = gw1.claim_name("Bob", "s1", None)
    with pytest.raises(ProtocolError) as info:
        gw2.claim_name("bob", "s2", "not the token")
    assert info.value.code is ErrorCode.NAME_TAKEN
    second = gw2.claim_name("bob", "s2", first.token)
    assert second.replaced_session == "s1"
    assert sub.take() == [("{gw:gw1}:ch", b"Kbob|s1")]
    gw1.release_name("Bob", "s1")
    assert raw.hget(keys.user("bob"), "sid") == b"s2"

    for _ in range(2):  # gw2's lease runs out while gw1 beats (no beat at all: an outage)
        clock.now += 4.0
        gw1.heartbeat()
    third = gw1.claim_name("Bob", "s3", None)
    assert third.replaced_session is None
    assert raw.hget(keys.user("bob"), "gw") == b"gw1"
    gw1.close()
    gw2.close()


def test_presence_dms_and_reaping(shared_redis: RedisEndpoint, raw: redis.Redis) -> None:
    clock = FakeClock()
    gw1 = fast_broker(shared_redis.url, "gw1", clock=clock)
    gw2 = fast_broker(shared_redis.url, "gw2", clock=clock)
    gw1.claim_name("Bob", "s1", None)
    gw2.claim_name("Ann", "s2", None)
    sub = Listener(raw, keys.room_channel("dev"), keys.gateway_channel("gw2"))
    assert gw1.join("dev", "Bob") and gw2.join("dev", "Ann")
    assert gw1.who("dev") == ["Ann", "Bob"]
    sent = gw1.send_dm("Bob", "ann", "hello \u00e9", 5.5, "d1")
    assert sent.line == line(DirectMessage("Bob", "Ann", "hello \u00e9", 5.5))
    assert gw1.send_dm("Bob", "ann", "hello \u00e9", 5.5, "d1").duplicate
    assert sub.take() == [
        ("{room:dev}:ch", b"E" + line(Joined("dev", "Bob"))),
        ("{room:dev}:ch", b"E" + line(Joined("dev", "Ann"))),
        ("{gw:gw2}:ch", b"Dann|" + sent.line),
    ]

    for _ in range(3):  # gw1 stopped heartbeating: dead
        clock.now += 3.0
        gw2.heartbeat()
    assert gw2.who("dev") == ["Ann"]
    with pytest.raises(ProtocolError):
        gw2.send_dm("Ann", "Bob", "x", 1.0, None)
    assert gw2.reap_dead() == ["gw1"]
    assert sub.take() == [("{room:dev}:ch", b"E" + line(Left("dev", "Bob")))]
    assert raw.exists(keys.user("bob")) == 0
    gw2.release_gateway()
    assert sub.take() == [("{room:dev}:ch", b"E" + line(Left("dev", "Ann")))]
    assert raw.zcard(keys.GATEWAYS) == 0
    gw1.close()
    gw2.close()


@pytest.mark.slow
def test_after_an_outage_the_grace_runs_on_redis_clock(shared_redis: RedisEndpoint,
                                                       raw: redis.Redis) -> None:
    """The pulse and the grace expire by Redis's clock (PX): a beat re-sent across the outage
    with a time from before it still opens the grace, and the grace ends by itself."""
    clock = FakeClock()
    gw1 = fast_broker(shared_redis.url, "gw1", clock=clock, lease_ms=1000)
    gw2 = fast_broker(shared_redis.url, "gw2", clock=clock, lease_ms=1000)
    gw1.claim_name("Bob", "s1", None)
    gw2.claim_name("Ann", "s2", None)
    wait_for(lambda: not raw.exists(keys.PULSE), 10, what="no beat for a lease")
    assert not raw.exists(keys.GRACE)
    gw1.heartbeat()  # the gateway clock did not move: it alone shows no outage
    assert 0 < raw.pttl(keys.GRACE) <= 1000
    clock.now += 2.0  # gw2's beat is two leases old, gw1 beats on
    gw1.heartbeat()
    sub = Listener(raw, keys.gateway_channel("gw2"))
    gw1.send_dm("Bob", "Ann", "during the grace", 1.0, None)
    assert [channel for channel, _ in sub.take()] == ["{gw:gw2}:ch"]

    def grace_over() -> bool:
        gw1.heartbeat()  # a live gateway beats on meanwhile
        return not raw.exists(keys.GRACE)

    wait_for(grace_over, 10, what="the grace ran out")
    with pytest.raises(ProtocolError):
        gw1.send_dm("Bob", "Ann", "after it", 1.0, None)
    assert gw1.reap_dead() == ["gw2"]
    assert not raw.exists(keys.GRACE)
    gw1.close()
    gw2.close()


def test_killed_server_raises_unavailable_then_recovers(redis_server: RedisServer) -> None:
    broker = fast_broker(redis_server.url, retries=1)
    broker.publish_message("lobby", "Bob", "x", 1.0, None)
    redis_server.kill()
    with pytest.raises(BrokerUnavailable):
        broker.publish_message("lobby", "Bob", "y", 1.0, "r1")
    with pytest.raises(BrokerUnavailable):
        broker.claim_name("Bob", "s1", None)
    assert broker.ping() is False
    broker.release_gateway()  # never raises
    redis_server.start()
    pub = broker.publish_message("lobby", "Bob", "y", 1.0, "r1")
    assert (pub.id, pub.duplicate) == (2, False)  # the refused send left nothing behind
    broker.close()


def test_paused_server_times_out_as_unavailable(redis_server: RedisServer) -> None:
    broker = Broker.from_url(redis_server.url, "gw1", retries=0, backoff=NoBackoff(),
                             timeout_s=0.2)
    assert broker.ping()
    redis_server.pause()
    try:
        with pytest.raises(BrokerUnavailable):
            broker.read_history("lobby")
        assert broker.ping() is False
    finally:
        redis_server.resume()
    assert broker.read_history("lobby").last_id == 0
    broker.close()


def test_password_travels_in_the_url(redis_server: RedisServer, raw: redis.Redis) -> None:
    raw.config_set("requirepass", "s3cret pw")
    host_port = f"{redis_server.host}:{redis_server.port}"
    broker = fast_broker(f"redis://:s3cret%20pw@{host_port}/0")
    assert broker.publish_message("lobby", "Bob", "x", 1.0, None).id == 1
    wrong = fast_broker(f"redis://:nope@{host_port}/0")
    assert wrong.ping() is False
    with pytest.raises(BrokerUnavailable):
        wrong.heartbeat()
    broker.close()
    wrong.close()


def test_restore_name_keeps_the_held_token_after_data_loss(shared_redis: RedisEndpoint) -> None:
    """After Redis lost its data, a live session's name comes back with the token it holds."""
    from gateway.redis.broker import Broker, token_hash

    broker = Broker.from_url(shared_redis.url, "gw-r")
    try:
        claim = broker.claim_name("Zed", "sid-1", None)
        shared_redis.client().flushall()
        assert broker.restore_name("Zed", "sid-1", token_hash(claim.token))
        # The client's token still takes the name over from elsewhere.
        other = Broker.from_url(shared_redis.url, "gw-s")
        taken = other.claim_name("zed", "sid-2", claim.token)
        assert taken.replaced_session == "sid-1"
        # ... and then the old session cannot restore over the new live holder.
        assert not broker.restore_name("Zed", "sid-1", token_hash(claim.token))
        other.close()
    finally:
        broker.close()


def test_renew_epoch_is_idempotent_across_gateways(shared_redis: RedisEndpoint) -> None:
    """Two gateways that both saw ids go back start one new epoch, not two."""
    from gateway.redis.broker import Broker

    a = Broker.from_url(shared_redis.url, "gw-a")
    b = Broker.from_url(shared_redis.url, "gw-b")
    try:
        old = a.read_history("lobby", after=0).epoch
        fresh = a.renew_epoch("lobby", old)
        assert fresh != old
        assert b.renew_epoch("lobby", old) == fresh  # the second one finds it done
        assert a.read_history("lobby", after=0).epoch == fresh
    finally:
        a.close()
        b.close()
