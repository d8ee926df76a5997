"""Broker and keys against fakeredis (its Lua runs on lupa): every method, both paths.

Pub/sub payloads are asserted byte for byte through a subscriber; time is a
fake clock, never a sleep. The same scripts run on a real redis-server in
tests/cluster/test_broker_redis.py.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import fakeredis
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

import gateway.redis.broker as broker_module
from gateway.redis import keys
from gateway.redis.broker import (
    Broker,
    BrokerUnavailable,
    HistoryBatch,
    token_hash,
    window_for_timeout,
)
from protocol.codec import encode
from protocol.errors import ErrorCode, ProtocolError
from protocol.frames import DirectMessage, Joined, Left, Message, TypingNotice
from protocol.names import name_key
from tests.support.broker_clock import LEASE_MS, T0, FakeClock, lease_runs_out


class Listener:
    """A subscriber that returns exactly what was published so far, in order.

    ``take`` publishes a marker and reads up to it, so "nothing was published"
    is an assertion that can fail, not a timeout.
    """

    def __init__(self, client: redis.Redis, *channels: str) -> None:
        self.client = client
        self.channels = channels
        self.pubsub = client.pubsub()
        self.pubsub.subscribe(*channels)
        confirmed = 0
        while confirmed < len(channels):
            msg = self.pubsub.get_message(timeout=5.0)
            assert msg is not None, "subscription not confirmed"
            confirmed += msg["type"] == "subscribe"

    def take(self) -> list[tuple[str, bytes]]:
        marker = f"marker-{uuid.uuid4().hex}".encode()
        self.client.publish(self.channels[0], marker)
        out: list[tuple[str, bytes]] = []
        while True:
            msg = self.pubsub.get_message(timeout=5.0)
            assert msg is not None, "marker never arrived"
            if msg["type"] != "message":
                continue
            if msg["data"] == marker:
                return out
            out.append((msg["channel"].decode(), msg["data"]))

    def close(self) -> None:
        self.pubsub.close()


def line(frame: Any) -> bytes:
    return encode(frame)[:-1]


def no_retry_client(server: fakeredis.FakeServer, cls: type[fakeredis.FakeRedis] | None = None
                    ) -> fakeredis.FakeRedis:
    return (cls or fakeredis.FakeRedis)(server=server, retry=Retry(NoBackoff(), 0))


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def raw(server: fakeredis.FakeServer) -> fakeredis.FakeRedis:
    """A plain client for looking at Redis behind the broker's back."""
    return fakeredis.FakeRedis(server=server)


@pytest.fixture
def make_broker(server: fakeredis.FakeServer, clock: FakeClock) -> Callable[..., Broker]:
    def make(gateway_id: str = "gw1", client: redis.Redis | None = None, **kw: Any) -> Broker:
        return Broker(client or no_retry_client(server), gateway_id, clock=clock, **kw)

    return make


@pytest.fixture
def gw1(make_broker: Callable[..., Broker]) -> Broker:
    broker = make_broker("gw1")
    broker.heartbeat()
    return broker


@pytest.fixture
def gw2(make_broker: Callable[..., Broker]) -> Broker:
    broker = make_broker("gw2")
    broker.heartbeat()
    return broker


@pytest.fixture
def listen(raw: fakeredis.FakeRedis) -> Iterator[Callable[..., Listener]]:
    made: list[Listener] = []

    def make(*channels: str) -> Listener:
        made.append(Listener(raw, *channels))
        return made[-1]

    yield make
    for listener in made:
        listener.close()


class DoubleSend(fakeredis.FakeRedis):
    """Runs every script twice, as redis-py's Retry does when a reply is lost."""

    def evalsha(self, *args: Any) -> Any:
        super().evalsha(*args)
        return super().evalsha(*args)


# --------------------------------------------------------------------------- keys


def test_room_keys_share_the_room_hash_tag() -> None:
    room_keys = [keys.room_seq("dev"), keys.room_epoch("dev"), keys.room_log("dev"),
                 keys.room_members("dev"), keys.room_ref("dev", "Bob", "r:1"),
                 keys.room_channel("dev")]
    assert all(k.startswith("{room:dev}:") for k in room_keys)
    assert room_keys == ["{room:dev}:seq", "{room:dev}:epoch", "{room:dev}:log",
                         "{room:dev}:members", "{room:dev}:ref:bob:r:1", "{room:dev}:ch"]


def test_user_and_gateway_keys_are_spelled_as_documented() -> None:
    assert keys.user("BoB") == "{user:bob}"
    assert keys.dm_ref("BoB", "x") == "{user:bob}:dmref:x"
    assert keys.user_rooms("BoB") == "{user:bob}:rooms"
    assert keys.GRACE == "{liveness}:grace"
    assert keys.PULSE == "{liveness}:pulse"
    assert keys.GATEWAYS == "{liveness}:gateways"
    assert keys.gateway_channel("g-1") == "{gw:g-1}:ch"
    assert keys.gateway_members("g-1") == "{gw:g-1}:members"
    assert keys.gateway_names("g-1") == "{gw:g-1}:names"
    assert keys.gateway_reaper("g-1") == "{gw:g-1}:reaper"
    assert keys.gateway_instance("g-1") == "{gw:g-1}:instance"
    assert keys.gateway_wait("g-1") == "{gw:g-1}:wait"


def test_membership_fields_round_trip_and_reject_garbage() -> None:
    assert keys.membership("dev", "BoB") == "dev|bob"
    assert keys.parse_membership("dev|bob") == ("dev", "bob")
    for bad in ("dev", "|bob", "dev|", ""):
        with pytest.raises(ValueError):
            keys.parse_membership(bad)


def test_broker_refuses_gateway_ids_that_would_break_member_values(server: Any) -> None:
    with pytest.raises(ValueError):
        Broker(fakeredis.FakeRedis(server=server), "a|b")
    with pytest.raises(ValueError):
        Broker(fakeredis.FakeRedis(server=server), "gw", history=0)


# --------------------------------------------------------------------------- publish


def test_first_message_creates_epoch_stores_and_publishes_exact_line(
        gw1: Broker, raw: Any, listen: Callable[..., Listener]) -> None:
    sub = listen(keys.room_channel("lobby"))
    pub = gw1.publish_message("lobby", "Bob", 'say "hi" \u00e9\U0001f600\n\t', 12.5, "r1")
    expected = line(Message("lobby", 1, "Bob", 'say "hi" \u00e9\U0001f600\n\t', 12.5))
    assert pub.id == 1 and not pub.duplicate
    assert raw.get(keys.room_epoch("lobby")) == pub.epoch.encode()
    assert len(pub.epoch) == 32
    assert raw.lrange(keys.room_log("lobby"), 0, -1) == [expected]
    assert sub.take() == [("{room:lobby}:ch", b"M" + pub.epoch.encode() + b"|1|" + expected)]


def test_ids_have_no_gaps_across_gateways(gw1: Broker, gw2: Broker) -> None:
    ids = [b.publish_message("dev", "Bob", "x", 1.0, None).id for b in (gw1, gw2, gw1, gw2)]
    assert ids == [1, 2, 3, 4]
    assert gw1.read_history("dev", limit=1).last_id == 4


def test_repeated_ref_is_a_duplicate_with_the_first_id_and_publishes_nothing(
        gw1: Broker, gw2: Broker, raw: Any, listen: Callable[..., Listener]) -> None:
    first = gw1.publish_message("lobby", "Bob", "one", 1.0, "r1")
    gw1.publish_message("lobby", "Bob", "two", 1.0, "r2")
    sub = listen(keys.room_channel("lobby"))
    again = gw2.publish_message("lobby", "bob", "one", 2.0, "r1")  # other gateway, other case
    assert again.duplicate and again.id == first.id == 1 and again.epoch == first.epoch
    assert sub.take() == []
    assert raw.llen(keys.room_log("lobby")) == 2
    assert raw.get(keys.room_seq("lobby")) == b"2"


def test_same_ref_from_another_user_or_room_is_new(gw1: Broker) -> None:
    gw1.publish_message("lobby", "Bob", "one", 1.0, "r1")
    assert not gw1.publish_message("lobby", "Ann", "one", 1.0, "r1").duplicate
    assert not gw1.publish_message("dev", "Bob", "one", 1.0, "r1").duplicate


def test_ref_key_lives_for_the_ref_ttl(make_broker: Callable[..., Broker], raw: Any) -> None:
    broker = make_broker(ref_ttl_ms=300_000)
    broker.publish_message("lobby", "Bob", "x", 1.0, "r1")
    assert raw.get(keys.room_ref("lobby", "Bob", "r1")) == b"1"
    assert 290_000 < raw.pttl(keys.room_ref("lobby", "Bob", "r1")) <= 300_000


def test_message_without_ref_gets_a_short_lived_internal_dedup_key(gw1: Broker, raw: Any) -> None:
    assert not gw1.publish_message("lobby", "Bob", "x", 1.0, None).duplicate
    (ref_key,) = raw.keys("{room:lobby}:ref:*")
    assert ref_key.startswith(b"{room:lobby}:ref:bob:~")
    assert 0 < raw.pttl(ref_key) <= broker_module.INTERNAL_REF_TTL_MS


def test_a_resent_script_publishes_once(make_broker: Callable[..., Broker], server: Any,
                                        raw: Any, listen: Callable[..., Listener]) -> None:
    broker = make_broker(client=no_retry_client(server, DoubleSend))
    sub = listen(keys.room_channel("lobby"))
    pub = broker.publish_message("lobby", "Bob", "x", 1.0, None)
    assert (pub.id, pub.duplicate) == (1, False)
    assert len(sub.take()) == 1
    assert raw.get(keys.room_seq("lobby")) == b"1"


def test_log_is_trimmed_to_history(make_broker: Callable[..., Broker], raw: Any) -> None:
    broker = make_broker(history=5)
    for i in range(8):
        broker.publish_message("lobby", "Bob", f"m{i + 1}", 1.0, None)
    stored = raw.lrange(keys.room_log("lobby"), 0, -1)
    assert [m for m in stored] == [line(Message("lobby", i, "Bob", f"m{i}", 1.0))
                                   for i in range(4, 9)]


def test_script_survives_script_flush(gw1: Broker, raw: Any) -> None:
    gw1.publish_message("lobby", "Bob", "x", 1.0, None)
    raw.script_flush()
    assert gw1.publish_message("lobby", "Bob", "y", 1.0, None).id == 2
    assert gw1.read_history("lobby").last_id == 2


def test_flushall_starts_a_new_epoch_and_ids_again(gw1: Broker, raw: Any) -> None:
    old = gw1.publish_message("lobby", "Bob", "x", 1.0, None)
    gw1.publish_message("lobby", "Bob", "y", 1.0, None)
    raw.flushall()
    new = gw1.publish_message("lobby", "Bob", "z", 1.0, None)
    assert new.id == 1 and new.epoch != old.epoch


# --------------------------------------------------------------------------- history


def ids_of(batch: HistoryBatch) -> list[int]:
    return [Message(**_fields(m)).id for m in batch.messages]


def _fields(raw_line: bytes) -> dict[str, Any]:
    import orjson

    obj = orjson.loads(raw_line)
    return {"room": obj["room"], "id": obj["id"], "sender": obj["from"], "text": obj["text"],
            "ts": obj["ts"]}


@pytest.fixture
def trimmed(make_broker: Callable[..., Broker]) -> Broker:
    """Room ``lobby`` with ids 1..8 sent and history=5: ids 4..8 kept."""
    broker = make_broker(history=5)
    for i in range(8):
        broker.publish_message("lobby", "Bob", f"m{i + 1}", 1.0, None)
    return broker


def test_history_of_a_new_room_creates_its_epoch(gw1: Broker, raw: Any) -> None:
    batch = gw1.read_history("new")
    assert batch == HistoryBatch("new", batch.epoch, 0, (), 1, True)
    assert raw.get(keys.room_epoch("new")) == batch.epoch.encode()
    assert gw1.read_history("new").epoch == batch.epoch
    assert gw1.read_history("new", after=0).epoch == batch.epoch
    assert gw1.publish_message("new", "Bob", "x", 1.0, None).epoch == batch.epoch


def test_newest_messages_up_to_limit(gw1: Broker) -> None:
    for i in range(10):
        gw1.publish_message("lobby", "Bob", f"m{i + 1}", 1.0, None)
    batch = gw1.read_history("lobby", limit=3)
    assert ids_of(batch) == [8, 9, 10]
    assert (batch.first_id, batch.last_id, batch.complete) == (8, 10, True)
    assert batch.messages[0] == line(Message("lobby", 8, "Bob", "m8", 1.0))


@pytest.mark.parametrize(
    ("before", "limit", "expected", "complete"),
    [
        (None, 50, [4, 5, 6, 7, 8], False),  # wants 1..8, 1..3 trimmed
        (None, 5, [4, 5, 6, 7, 8], True),
        (6, 2, [4, 5], True),
        (6, 3, [4, 5], False),
        (5, 1, [4], True),
        (4, 50, [], False),  # everything below 4 is gone
        (1, 50, [], True),  # ids < 1 do not count
        (100, 2, [7, 8], True),  # before beyond the end: the newest
    ],
)
def test_history_before(trimmed: Broker, before: int | None, limit: int, expected: list[int],
                        complete: bool) -> None:
    batch = trimmed.read_history("lobby", before=before, limit=limit)
    assert ids_of(batch) == expected
    assert batch.complete is complete
    assert batch.last_id == 8
    assert batch.first_id == (expected[0] if expected else 9)


def test_history_before_in_an_untrimmed_room_is_complete_down_to_id_1(gw1: Broker) -> None:
    for _ in range(4):
        gw1.publish_message("lobby", "Bob", "x", 1.0, None)
    batch = gw1.read_history("lobby", before=3, limit=10)
    assert ids_of(batch) == [1, 2] and batch.complete


@pytest.mark.parametrize(
    ("after", "expected", "complete"),
    [
        (5, [6, 7, 8], True),
        (3, [4, 5, 6, 7, 8], True),
        (2, [4, 5, 6, 7, 8], False),  # id 3 was trimmed
        (0, [4, 5, 6, 7, 8], False),
        (8, [], True),
        (100, [], True),  # ahead of the room (say, an old epoch's position)
        (-5, [4, 5, 6, 7, 8], False),
    ],
)
def test_history_after(trimmed: Broker, after: int, expected: list[int], complete: bool) -> None:
    batch = trimmed.read_history("lobby", after=after, limit=1)  # limit does not apply
    assert ids_of(batch) == expected
    assert batch.complete is complete
    assert batch.first_id == (expected[0] if expected else 9)


def test_history_limit_must_be_positive(gw1: Broker) -> None:
    with pytest.raises(ValueError):
        gw1.read_history("lobby", limit=0)


# --------------------------------------------------------------------------- presence


def test_join_publishes_joined_once(gw1: Broker, raw: Any,
                                    listen: Callable[..., Listener]) -> None:
    sub = listen(keys.room_channel("dev"))
    assert gw1.join("dev", "Bob") is True
    assert gw1.join("dev", "Bob") is False
    assert sub.take() == [("{room:dev}:ch", b"E" + line(Joined("dev", "Bob")))]
    assert raw.hgetall(keys.room_members("dev")) == {b"bob": b"gw1|Bob"}
    assert raw.hgetall(keys.gateway_members("gw1")) == {b"dev|bob": b"1"}


def test_join_of_a_name_present_through_a_live_gateway_moves_it_silently(
        gw1: Broker, gw2: Broker, raw: Any, listen: Callable[..., Listener]) -> None:
    gw1.join("dev", "Bob")
    sub = listen(keys.room_channel("dev"))
    assert gw2.join("dev", "Bob") is False
    assert raw.hget(keys.room_members("dev"), "bob") == b"gw2|Bob"
    assert gw1.leave("dev", "Bob") is False  # no longer gw1's
    assert sub.take() == []
    assert raw.hgetall(keys.gateway_members("gw1")) == {}
    assert gw1.who("dev") == ["Bob"]


def test_join_of_a_name_held_by_a_dead_gateway_is_new(
        gw1: Broker, gw2: Broker, clock: FakeClock, listen: Callable[..., Listener]) -> None:
    gw1.join("dev", "Bob")
    lease_runs_out(clock, gw2)
    sub = listen(keys.room_channel("dev"))
    assert gw2.join("dev", "Bob") is True
    assert sub.take() == [("{room:dev}:ch", b"E" + line(Joined("dev", "Bob")))]


def test_leave_publishes_left_with_the_stored_name(gw1: Broker, raw: Any,
                                                   listen: Callable[..., Listener]) -> None:
    gw1.join("dev", "Bob")
    sub = listen(keys.room_channel("dev"))
    assert gw1.leave("dev", "bob") is True
    assert gw1.leave("dev", "Bob") is False
    assert sub.take() == [("{room:dev}:ch", b"E" + line(Left("dev", "Bob")))]
    assert raw.exists(keys.room_members("dev"), keys.gateway_members("gw1")) == 0


def test_who_lists_live_names_sorted_case_insensitively(
        gw1: Broker, gw2: Broker, make_broker: Callable[..., Broker], clock: FakeClock) -> None:
    assert gw1.who("dev") == []
    gw3 = make_broker("gw3")
    gw3.heartbeat()
    gw1.join("dev", "carol")
    gw2.join("dev", "Bob")
    gw1.join("dev", "alice")
    gw3.join("dev", "Zed")
    clock.advance(5)
    gw1.heartbeat()
    gw2.heartbeat()
    assert gw1.who("dev") == ["alice", "Bob", "carol", "Zed"]
    clock.advance(4)  # gw3's lease (8 s) ran out
    assert gw1.who("dev") == ["alice", "Bob", "carol"]


def test_typing_and_probe_payloads(gw1: Broker, listen: Callable[..., Listener]) -> None:
    sub = listen(keys.room_channel("dev"), keys.gateway_channel("gw1"))
    gw1.publish_typing("dev", "Bob")
    gw1.publish_probe("n-42")
    assert sub.take() == [
        ("{room:dev}:ch", b"Tbob|" + line(TypingNotice("dev", "Bob"))),
        ("{gw:gw1}:ch", b"Pn-42"),
    ]


def test_heartbeat_records_the_gateway_clock_in_ms(gw1: Broker, raw: Any,
                                                   clock: FakeClock) -> None:
    clock.advance(1.5)
    assert gw1.heartbeat() is False  # already registered by the fixture
    assert raw.zscore(keys.GATEWAYS, "gw1") == T0 * 1000 + 1500


def test_heartbeat_tells_a_gateway_it_was_reaped(gw1: Broker, gw2: Broker,
                                                 clock: FakeClock) -> None:
    lease_runs_out(clock, gw2)
    assert gw2.reap_dead() == ["gw1"]
    assert gw1.heartbeat() is True
    assert gw1.heartbeat() is False


# --------------------------------------------------------------------------- names


def test_claim_of_a_free_name(make_broker: Callable[..., Broker], raw: Any) -> None:
    fresh = make_broker("gw9")  # never heartbeat: the claim itself marks it alive
    claim = fresh.claim_name("Bob", "s1", None)
    assert (claim.name, claim.replaced_session) == ("Bob", None)
    assert len(claim.token) >= 22
    record = raw.hgetall(keys.user("bob"))
    assert record == {b"name": b"Bob", b"gw": b"gw9", b"sid": b"s1",
                      b"token": hashlib.sha256(claim.token.encode()).hexdigest().encode()}
    assert claim.token.encode() not in b"".join(record.values())
    assert raw.smembers(keys.gateway_names("gw9")) == {b"bob"}
    assert raw.zscore(keys.GATEWAYS, "gw9") == T0 * 1000


def test_held_name_without_or_with_a_wrong_token_is_taken(
        gw1: Broker, gw2: Broker, raw: Any, listen: Callable[..., Listener]) -> None:
    gw1.claim_name("Bob", "s1", None)
    before = raw.hgetall(keys.user("bob"))
    sub = listen(keys.gateway_channel("gw1"), keys.gateway_channel("gw2"))
    for token in (None, "wrong"):
        with pytest.raises(ProtocolError) as info:
            gw2.claim_name("bOB", "s2", token)
        assert info.value.code is ErrorCode.NAME_TAKEN
    assert raw.hgetall(keys.user("bob")) == before
    assert raw.smembers(keys.gateway_names("gw2")) == set()
    assert sub.take() == []


def test_takeover_with_the_token_from_another_gateway(
        gw1: Broker, gw2: Broker, raw: Any, listen: Callable[..., Listener]) -> None:
    first = gw1.claim_name("Bob", "s1", None)
    sub = listen(keys.gateway_channel("gw1"))
    second = gw2.claim_name("bob", "s2", first.token)
    assert (second.name, second.replaced_session) == ("bob", "s1")
    assert second.token != first.token
    assert sub.take() == [("{gw:gw1}:ch", b"Kbob|s1")]
    assert raw.hget(keys.user("bob"), "token") == token_hash(second.token).encode()
    with pytest.raises(ProtocolError):
        gw1.claim_name("Bob", "s3", first.token)  # the old token is spent
    assert gw1.claim_name("Bob", "s3", second.token).replaced_session == "s2"


def test_takeover_on_the_same_gateway_keeps_the_name_in_its_set(gw1: Broker, raw: Any) -> None:
    first = gw1.claim_name("Bob", "s1", None)
    assert gw1.claim_name("Bob", "s2", first.token).replaced_session == "s1"
    gw1.release_name("Bob", "s1")  # the replaced session cleans up late
    assert raw.hget(keys.user("bob"), "sid") == b"s2"
    assert raw.smembers(keys.gateway_names("gw1")) == {b"bob"}


def test_name_held_by_a_dead_gateway_is_free(
        gw1: Broker, gw2: Broker, clock: FakeClock, listen: Callable[..., Listener]) -> None:
    gw1.claim_name("Bob", "s1", None)
    lease_runs_out(clock, gw2)
    sub = listen(keys.gateway_channel("gw1"))
    claim = gw2.claim_name("Bob", "s2", None)
    assert claim.replaced_session is None
    # a gateway only presumed dead (paused) still learns its session lost the name
    assert sub.take() == [("{gw:gw1}:ch", b"Kbob|s1")]


def test_name_is_held_while_its_gateway_lease_runs(gw1: Broker, gw2: Broker,
                                                   clock: FakeClock) -> None:
    gw1.claim_name("Bob", "s1", None)
    clock.advance(LEASE_MS / 1000 - 0.001)
    with pytest.raises(ProtocolError):
        gw2.claim_name("Bob", "s2", None)


def test_a_resent_claim_is_not_refused_as_taken(make_broker: Callable[..., Broker],
                                                 server: Any, raw: Any) -> None:
    broker = make_broker(client=no_retry_client(server, DoubleSend))
    claim = broker.claim_name("Bob", "s1", None)
    assert raw.hget(keys.user("bob"), "token") == token_hash(claim.token).encode()


def test_release_frees_the_name(gw1: Broker, gw2: Broker, raw: Any) -> None:
    gw1.claim_name("Bob", "s1", None)
    gw1.release_name("Bob", "s1")
    assert raw.exists(keys.user("bob")) == 0
    assert raw.smembers(keys.gateway_names("gw1")) == set()
    gw2.claim_name("Bob", "s2", None)


def test_release_by_a_replaced_session_keeps_the_new_holder(gw1: Broker, gw2: Broker,
                                                             raw: Any) -> None:
    first = gw1.claim_name("Bob", "s1", None)
    gw2.claim_name("Bob", "s2", first.token)
    gw1.release_name("Bob", "s1")
    assert raw.hget(keys.user("bob"), "gw") == b"gw2"
    assert raw.smembers(keys.gateway_names("gw1")) == set()
    assert raw.smembers(keys.gateway_names("gw2")) == {b"bob"}


# --------------------------------------------------------------------------- dms


def test_dm_goes_to_the_recipients_gateway_with_its_display_name(
        gw1: Broker, gw2: Broker, listen: Callable[..., Listener]) -> None:
    gw2.claim_name("Alice", "s2", None)
    sub = listen(keys.gateway_channel("gw2"), keys.gateway_channel("gw1"))
    sent = gw1.send_dm("Bob", "aLiCe", 'hi "you" \u00e9', 3.25, "d1")
    expected = line(DirectMessage("Bob", "Alice", 'hi "you" \u00e9', 3.25))
    assert sent.line == expected and not sent.duplicate
    assert sub.take() == [("{gw:gw2}:ch", b"D" + name_key("alice").encode() + b"|" + expected)]


def test_repeated_dm_ref_is_a_duplicate_even_after_the_recipient_left(
        gw1: Broker, gw2: Broker, raw: Any, listen: Callable[..., Listener]) -> None:
    gw2.claim_name("Alice", "s2", None)
    gw1.send_dm("Bob", "Alice", "one", 1.0, "d1")
    assert raw.get(keys.dm_ref("bob", "d1")) == b"sent"
    sub = listen(keys.gateway_channel("gw2"))
    assert gw1.send_dm("bob", "alice", "one", 1.0, "d1").duplicate
    gw2.release_name("Alice", "s2")
    again = gw1.send_dm("Bob", "Alice", "one", 1.0, "d1")
    assert again.duplicate and again.line == line(DirectMessage("Bob", "Alice", "one", 1.0))
    assert sub.take() == []


def test_dm_to_nobody_or_to_a_dead_gateway_is_refused_and_leaves_no_trace(
        gw1: Broker, gw2: Broker, clock: FakeClock, raw: Any,
        listen: Callable[..., Listener]) -> None:
    with pytest.raises(ProtocolError) as info:
        gw1.send_dm("Bob", "ghost", "x", 1.0, "d1")
    assert info.value.code is ErrorCode.NO_SUCH_USER
    gw2.claim_name("Alice", "s2", None)
    lease_runs_out(clock, gw1)
    sub = listen(keys.gateway_channel("gw2"))
    with pytest.raises(ProtocolError) as info:
        gw1.send_dm("Bob", "Alice", "x", 1.0, "d1")
    assert info.value.code is ErrorCode.NO_SUCH_USER
    assert sub.take() == []
    assert raw.keys("{user:bob}*") == []


def test_a_resent_dm_script_publishes_once(make_broker: Callable[..., Broker], server: Any,
                                           gw2: Broker, listen: Callable[..., Listener]) -> None:
    gw2.claim_name("Alice", "s2", None)
    broker = make_broker(client=no_retry_client(server, DoubleSend))
    sub = listen(keys.gateway_channel("gw2"))
    assert not broker.send_dm("Bob", "Alice", "x", 1.0, None).duplicate
    assert len(sub.take()) == 1


# --------------------------------------------------------------------------- deadlines

WINDOW_MS = 1000


def deadline_clock(offset_s: float) -> Callable[[], float]:
    """A gateway clock ``offset_s`` away from the real one, which Redis's (fakeredis's) TIME
    follows: -2 makes every deadline (a 1 s window) a second in the past."""
    return lambda: time.time() + offset_s


@pytest.fixture
def late(make_broker: Callable[..., Broker]) -> Broker:
    """A broker whose scripts all reach Redis after their deadline."""
    return make_broker("gw1", deadline_clock=deadline_clock(-2), publish_window_ms=WINDOW_MS)


class LostReplyThenLate(fakeredis.FakeRedis):
    """Redis runs a script in time but its reply is lost; redis-py's retry, the same
    script with the same deadline, reaches Redis after that deadline."""

    def evalsha(self, *args: Any) -> Any:
        super().evalsha(*args[:-1], int(time.time() * 1000) + 60_000)  # the deadline is last
        return super().evalsha(*args)


def test_a_publish_redis_runs_after_its_deadline_stores_and_publishes_nothing(
        late: Broker, raw: Any, listen: Callable[..., Listener]) -> None:
    sub = listen(keys.room_channel("lobby"))
    for ref in ("r1", None):
        with pytest.raises(BrokerUnavailable) as info:
            late.publish_message("lobby", "Bob", "x", 1.0, ref)
        assert info.value.code is ErrorCode.UNAVAILABLE
    assert sub.take() == []
    assert raw.keys("{room:lobby}*") == []  # no epoch, id, log line or dedup key


def test_a_dm_redis_runs_after_its_deadline_publishes_nothing(
        late: Broker, gw2: Broker, raw: Any, listen: Callable[..., Listener]) -> None:
    gw2.claim_name("Alice", "s2", None)
    sub = listen(keys.gateway_channel("gw2"))
    for ref in ("d1", None):
        with pytest.raises(BrokerUnavailable):
            late.send_dm("Bob", "Alice", "x", 1.0, ref)
    assert sub.take() == []
    assert raw.keys("{user:bob}*") == []  # no dedup key: a resend is no duplicate


def test_a_dm_to_nobody_after_its_deadline_is_unavailable_too(late: Broker) -> None:
    with pytest.raises(BrokerUnavailable):
        late.send_dm("Bob", "ghost", "x", 1.0, "d1")


def test_requests_inside_their_window_are_carried_out(
        make_broker: Callable[..., Broker], gw2: Broker, listen: Callable[..., Listener]) -> None:
    """Deadlines run on the real clock, not the fake liveness clock (in 2023): ``gw2`` works,
    and so does a gateway clock behind Redis's by most of the window."""
    behind = make_broker("gw1", deadline_clock=deadline_clock(-0.5), publish_window_ms=WINDOW_MS)
    gw2.claim_name("Alice", "s2", None)
    sub = listen(keys.room_channel("lobby"), keys.gateway_channel("gw2"))
    assert behind.publish_message("lobby", "Bob", "x", 1.0, "r1").id == 1
    assert not behind.send_dm("Bob", "Alice", "y", 1.0, "d1").duplicate
    assert gw2.publish_message("lobby", "Ann", "z", 1.0, None).id == 2
    assert [channel for channel, _ in sub.take()] == ["{room:lobby}:ch", "{gw:gw2}:ch",
                                                      "{room:lobby}:ch"]


def test_a_late_retry_of_a_publish_that_ran_is_a_repeat_not_a_refusal(
        make_broker: Callable[..., Broker], server: Any, raw: Any,
        listen: Callable[..., Listener]) -> None:
    broker = make_broker(client=no_retry_client(server, LostReplyThenLate),
                         deadline_clock=deadline_clock(-2), publish_window_ms=WINDOW_MS)
    sub = listen(keys.room_channel("lobby"))
    pub = broker.publish_message("lobby", "Bob", "x", 1.0, None)
    assert (pub.id, pub.duplicate) == (1, False)
    assert broker.publish_message("lobby", "Bob", "y", 1.0, "r1") == broker_module.Published(
        2, pub.epoch, True)  # a client ref: the repeat of its first run, as for any resend
    assert len(sub.take()) == 2
    assert raw.get(keys.room_seq("lobby")) == b"2"


def test_a_late_retry_of_a_dm_that_ran_is_a_repeat_not_a_refusal(
        make_broker: Callable[..., Broker], server: Any, gw2: Broker,
        listen: Callable[..., Listener]) -> None:
    gw2.claim_name("Alice", "s2", None)
    broker = make_broker(client=no_retry_client(server, LostReplyThenLate),
                         deadline_clock=deadline_clock(-2), publish_window_ms=WINDOW_MS)
    sub = listen(keys.gateway_channel("gw2"))
    assert not broker.send_dm("Bob", "Alice", "x", 1.0, None).duplicate
    assert len(sub.take()) == 1


@pytest.mark.parametrize(("timeout_s", "window_ms"), [
    (2.0, 1500), (5.0, 4500), (1.0, 500), (0.2, 100), (None, 1500)])
def test_the_window_ends_a_skew_margin_before_the_socket_timeout(
        timeout_s: float | None, window_ms: int, server: Any) -> None:
    assert window_for_timeout(timeout_s) == window_ms
    client = fakeredis.FakeRedis(server=server, socket_timeout=timeout_s)
    assert Broker(client, "gw1").publish_window_ms == window_ms


def test_a_window_reaching_the_socket_timeout_is_refused(server: Any) -> None:
    client = fakeredis.FakeRedis(server=server, socket_timeout=1.0)
    assert Broker(client, "gw1", publish_window_ms=999).publish_window_ms == 999
    for window in (1000, 0):
        with pytest.raises(ValueError):
            Broker(client, "gw1", publish_window_ms=window)


# --------------------------------------------------------------------------- reaping


def test_dead_gateway_is_reaped_once_with_left_for_its_rooms(
        gw1: Broker, gw2: Broker, make_broker: Callable[..., Broker], clock: FakeClock,
        raw: Any, listen: Callable[..., Listener]) -> None:
    gw1.claim_name("Bob", "s1", None)
    gw1.join("dev", "Bob")
    gw1.join("lobby", "Bob")
    gw2.join("lobby", "Ann")
    lease_runs_out(clock, gw2)
    gw3 = make_broker("gw3")
    gw3.heartbeat()
    sub = listen(keys.room_channel("dev"), keys.room_channel("lobby"))
    assert gw2.reap_dead() == ["gw1"]
    assert gw3.reap_dead() == []
    assert sorted(sub.take()) == [("{room:dev}:ch", b"E" + line(Left("dev", "Bob"))),
                                  ("{room:lobby}:ch", b"E" + line(Left("lobby", "Bob")))]
    assert raw.zscore(keys.GATEWAYS, "gw1") is None
    assert raw.exists(keys.user("bob"), keys.gateway_members("gw1"),
                      keys.gateway_names("gw1"), keys.room_members("dev")) == 0
    assert raw.hgetall(keys.room_members("lobby")) == {b"ann": b"gw2|Ann"}
    assert gw2.claim_name("Bob", "s2", None).replaced_session is None


def test_reaping_spares_what_a_live_gateway_took_over(
        gw1: Broker, gw2: Broker, clock: FakeClock, raw: Any,
        listen: Callable[..., Listener]) -> None:
    first = gw1.claim_name("Bob", "s1", None)
    gw1.join("dev", "Bob")
    gw2.claim_name("Bob", "s2", first.token)
    gw2.join("dev", "Bob")
    lease_runs_out(clock, gw2)
    sub = listen(keys.room_channel("dev"))
    assert gw2.reap_dead() == ["gw1"]
    assert sub.take() == []
    assert raw.hget(keys.user("bob"), "gw") == b"gw2"
    assert gw2.who("dev") == ["Bob"]


def test_a_gateway_that_heartbeats_again_before_the_reap_is_left_alone(
        make_broker: Callable[..., Broker], server: Any, gw1: Broker, clock: FakeClock,
        raw: Any) -> None:
    class ReviveOnLock(fakeredis.FakeRedis):
        """gw1 heartbeats right after the reaper took its lock."""

        def set(self, name: Any, *args: Any, **kw: Any) -> Any:
            result = super().set(name, *args, **kw)
            if name == keys.gateway_reaper("gw1"):
                gw1.heartbeat()
            return result

    gw1.join("dev", "Bob")
    reaper = make_broker("gw2", client=no_retry_client(server, ReviveOnLock))
    reaper.heartbeat()
    lease_runs_out(clock, reaper)
    assert reaper.reap_dead() == []
    assert raw.hget(keys.room_members("dev"), "bob") == b"gw1|Bob"
    assert raw.zscore(keys.GATEWAYS, "gw1") is not None
    assert raw.get(keys.gateway_reaper("gw1")) is None  # the lock is given back at once


def test_a_reaper_that_dies_mid_walk_leaves_the_gateway_for_the_next_one(
        gw1: Broker, gw2: Broker, clock: FakeClock, raw: Any,
        monkeypatch: pytest.MonkeyPatch, listen: Callable[..., Listener]) -> None:
    gw1.claim_name("Bob", "s1", None)
    gw1.join("dev", "Bob")
    gw1.join("lobby", "Bob")
    lease_runs_out(clock, gw2)

    def lost(*_: Any) -> str:
        raise redis.ConnectionError("the reaper's link died mid-walk")

    with monkeypatch.context() as patch:
        patch.setattr(gw2, "_release_all", lost)
        with pytest.raises(BrokerUnavailable):
            gw2.reap_dead()
    assert raw.zscore(keys.GATEWAYS, "gw1") == 0  # forgotten: dead even during a grace
    assert gw1.who("dev") == [] and gw1.last_heartbeat_ms() is None
    assert gw1.heartbeat() is False  # the lock is held: it waits, and stays forgotten
    assert raw.zscore(keys.GATEWAYS, "gw1") == 0
    raw.delete(keys.gateway_reaper("gw1"))  # its lease ran out
    sub = listen(keys.room_channel("dev"), keys.room_channel("lobby"))
    assert gw2.reap_dead() == ["gw1"]  # still registered, still dead: walked again
    assert [channel for channel, _ in sub.take()] == []  # the lefts went out the first time
    assert raw.exists(keys.user("bob"), keys.gateway_members("gw1"),
                      keys.gateway_names("gw1"), keys.gateway_reaper("gw1")) == 0
    assert raw.zscore(keys.GATEWAYS, "gw1") is None
    assert gw1.heartbeat() is True  # back: it learns it was forgotten, and restores


def test_a_forgotten_gateway_that_beats_after_the_lock_expired_learns_it(
        gw1: Broker, gw2: Broker, clock: FakeClock, raw: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    gw1.join("dev", "Bob")
    lease_runs_out(clock, gw2)
    monkeypatch.setattr(gw2, "_drop_gateway", lambda gw: 0)  # the reaper dies right after
    gw2.reap_dead()
    raw.delete(keys.gateway_reaper("gw1"))
    assert gw1.heartbeat() is True  # a beat of 0 before: its state may be half dropped
    assert raw.zscore(keys.GATEWAYS, "gw1") == T0 * 1000 + LEASE_MS


def test_a_reap_on_a_redis_that_lost_its_scripts_loads_them(
        gw1: Broker, gw2: Broker, clock: FakeClock, raw: Any,
        listen: Callable[..., Listener]) -> None:
    gw1.claim_name("Bob", "s1", None)
    gw1.join("dev", "Bob")
    lease_runs_out(clock, gw2)
    raw.script_flush()  # a restarted Redis: the pipelined leave and release meet NOSCRIPT
    sub = listen(keys.room_channel("dev"))
    assert gw2.reap_dead() == ["gw1"]
    assert sub.take() == [("{room:dev}:ch", b"E" + line(Left("dev", "Bob")))]
    assert raw.exists(keys.user("bob"), keys.room_members("dev")) == 0


def test_listeners_counts_who_listens_on_the_gateway_channel(
        gw1: Broker, listen: Callable[..., Listener]) -> None:
    assert gw1.listeners() == 0
    listen(keys.gateway_channel("gw1"))
    assert gw1.listeners() == 1


def test_reaping_never_takes_oneself(gw1: Broker, clock: FakeClock, raw: Any) -> None:
    gw1.join("dev", "Bob")
    clock.advance(60)
    assert gw1.reap_dead() == []
    assert raw.hget(keys.room_members("dev"), "bob") == b"gw1|Bob"


def test_reaping_walks_every_room_and_name(gw1: Broker, gw2: Broker, clock: FakeClock,
                                          raw: Any, listen: Callable[..., Listener]) -> None:
    rooms = [f"r{i}" for i in range(5)]
    for name in ("Bob", "Ann", "Cy"):
        gw1.claim_name(name, f"s-{name}", None)
    for room in rooms:
        gw1.join(room, "Bob")
    lease_runs_out(clock, gw2)
    sub = listen(*(keys.room_channel(r) for r in rooms))
    assert gw2.reap_dead() == ["gw1"]
    assert len(sub.take()) == 5
    assert raw.keys("{user:*") == [] and raw.keys("{gw:gw1}:[mn]*") == []


def test_release_gateway_leaves_rooms_frees_names_and_forgets_itself(
        gw1: Broker, gw2: Broker, raw: Any, listen: Callable[..., Listener]) -> None:
    gw1.claim_name("Bob", "s1", None)
    gw1.join("dev", "Bob")
    gw2.join("dev", "Ann")
    sub = listen(keys.room_channel("dev"))
    gw1.release_gateway()
    assert sub.take() == [("{room:dev}:ch", b"E" + line(Left("dev", "Bob")))]
    assert raw.zscore(keys.GATEWAYS, "gw1") is None
    assert raw.exists(keys.user("bob"), keys.gateway_members("gw1"),
                      keys.gateway_names("gw1")) == 0
    assert gw2.who("dev") == ["Ann"]


# --------------------------------------------------------------------------- after an outage

OUTAGE_S = 3 * LEASE_MS / 1000
"""Longer than the lease: nobody could beat meanwhile."""


def outage(clock: FakeClock, raw: Any) -> None:
    """Redis was out of reach for longer than the lease: no gateway could beat.

    fakeredis expires keys by the real clock, so the pulse's PX running out is
    played by deleting it.
    """
    clock.advance(OUTAGE_S)
    raw.delete(keys.PULSE)


@pytest.fixture
def ann_on_gw2(gw1: Broker, gw2: Broker) -> None:
    """Ann is logged in through gw2 and in rooms dev and lobby; Bob through gw1."""
    gw1.claim_name("Bob", "s1", None)
    gw2.claim_name("Ann", "s2", None)
    gw2.join("dev", "Ann")
    gw2.join("lobby", "Ann")


def test_every_heartbeat_renews_the_pulse(gw1: Broker, raw: Any) -> None:
    raw.delete(keys.PULSE)
    gw1.claim_name("Bob", "s1", None)  # a claim beats too
    assert 0 < raw.pttl(keys.PULSE) <= LEASE_MS
    raw.delete(keys.PULSE)
    gw1.heartbeat()  # the first beat after an outage: opens the grace, then renews the pulse
    assert 0 < raw.pttl(keys.PULSE) <= LEASE_MS
    assert 0 < raw.pttl(keys.GRACE) <= LEASE_MS


FIRST_CALLS: dict[str, Callable[[Broker], object]] = {
    "heartbeat": lambda b: b.heartbeat(),
    "who": lambda b: b.who("dev"),
    "dm": lambda b: b.send_dm("Bob", "Ann", "x", 1.0, None),
    "claim": lambda b: b.claim_name("Cy", "s3", None),
    "join": lambda b: b.join("lobby", "Ann"),  # asks whether Ann's gateway is alive
    "reap": lambda b: b.reap_dead(),
}


@pytest.mark.usefixtures("ann_on_gw2")
@pytest.mark.parametrize("first", sorted(FIRST_CALLS))
def test_after_an_outage_every_registered_gateway_is_alive_during_the_grace(
        gw1: Broker, clock: FakeClock, raw: Any, listen: Callable[..., Listener],
        first: str) -> None:
    outage(clock, raw)
    FIRST_CALLS[first](gw1)  # whatever Redis runs first after the outage opens the grace
    assert 0 < raw.pttl(keys.GRACE) <= LEASE_MS
    gw1.heartbeat()
    clock.advance(LEASE_MS / 1000)  # gw1 beats on, gw2 has not beaten yet
    gw1.heartbeat()
    assert gw1.who("dev") == ["Ann"]
    sub = listen(keys.gateway_channel("gw2"))
    gw1.send_dm("Bob", "ann", "still there?", 2.0, "d1")
    assert [ch for ch, _ in sub.take()] == ["{gw:gw2}:ch"]
    with pytest.raises(ProtocolError) as info:
        gw1.claim_name("ANN", "s9", None)
    assert info.value.code is ErrorCode.NAME_TAKEN
    assert gw1.reap_dead() == []
    assert raw.hget(keys.room_members("dev"), "ann") == b"gw2|Ann"


@pytest.mark.usefixtures("ann_on_gw2")
def test_a_gateway_that_died_in_the_outage_is_dead_once_the_grace_ends(
        gw1: Broker, clock: FakeClock, raw: Any, listen: Callable[..., Listener]) -> None:
    outage(clock, raw)
    gw1.heartbeat()
    lease_runs_out(clock, gw1)  # gw1 beats on; gw2 never comes back
    assert gw1.who("dev") == ["Ann"]  # the grace runs on Redis's clock
    raw.delete(keys.GRACE)  # its PX ran out
    assert gw1.who("dev") == []
    with pytest.raises(ProtocolError):
        gw1.send_dm("Bob", "Ann", "x", 1.0, None)
    sub = listen(keys.room_channel("dev"))
    assert gw1.reap_dead() == ["gw2"]
    assert sub.take() == [("{room:dev}:ch", b"E" + line(Left("dev", "Ann")))]
    assert gw1.claim_name("Ann", "s9", None).replaced_session is None
    assert raw.exists(keys.GRACE) == 0  # the pulse is there: no new grace


@pytest.mark.usefixtures("ann_on_gw2")
def test_no_grace_while_any_gateway_beats(gw1: Broker, clock: FakeClock, raw: Any) -> None:
    """One gateway dying is not an outage: it is dead as soon as its lease runs out."""
    lease_runs_out(clock, gw1)
    assert gw1.who("dev") == []
    assert gw1.reap_dead() == ["gw2"]
    assert raw.exists(keys.GRACE) == 0


@pytest.mark.usefixtures("ann_on_gw2")
def test_the_grace_is_not_extended_by_later_scripts(gw1: Broker, gw2: Broker,
                                                     clock: FakeClock, raw: Any) -> None:
    outage(clock, raw)
    gw1.who("dev")
    raw.pexpire(keys.GRACE, 10 * LEASE_MS)  # a mark: a new SET would bring it back to a lease
    gw1.send_dm("Bob", "Ann", "x", 1.0, None)  # no pulse yet: the grace is open already
    gw2.heartbeat()
    gw1.claim_name("Cy", "s3", None)
    assert raw.pttl(keys.GRACE) > LEASE_MS


def test_no_grace_when_no_gateway_is_registered(gw1: Broker, raw: Any) -> None:
    """Redis came back empty: there is nobody to keep alive."""
    raw.flushall()
    assert gw1.who("dev") == []
    assert gw1.heartbeat() is True
    assert raw.exists(keys.GRACE) == 0


def test_the_grace_revives_no_gateway_that_is_not_registered(
        gw1: Broker, clock: FakeClock, raw: Any) -> None:
    """A record left by a gateway that was reaped (or never beat) stays free in a grace."""
    raw.hset(keys.user("zed"), mapping={"name": "Zed", "gw": "gw-gone", "sid": "s", "token": "t"})
    raw.hset(keys.room_members("dev"), "zed", "gw-gone|Zed")
    outage(clock, raw)
    with pytest.raises(ProtocolError) as info:
        gw1.send_dm("Bob", "zed", "x", 1.0, None)
    assert info.value.code is ErrorCode.NO_SUCH_USER
    assert raw.exists(keys.GRACE) == 1
    assert gw1.who("dev") == []
    assert gw1.claim_name("ZED", "s1", None).replaced_session is None


# --------------------------------------------------------------------------- takeover


def test_a_token_takeover_from_another_gateway_moves_the_memberships_silently(
        gw1: Broker, gw2: Broker, raw: Any, listen: Callable[..., Listener]) -> None:
    first = gw1.claim_name("Bob", "s1", None)
    gw1.join("dev", "Bob")
    gw1.join("lobby", "Bob")
    assert raw.smembers(keys.user_rooms("bob")) == {b"dev", b"lobby"}
    sub = listen(keys.room_channel("dev"), keys.room_channel("lobby"))
    claim = gw2.claim_name("BOB", "s2", first.token)
    assert claim.rooms == ("dev", "lobby")
    for room in ("dev", "lobby"):
        assert raw.hget(keys.room_members(room), "bob") == b"gw2|Bob"
    assert raw.hgetall(keys.gateway_members("gw1")) == {}
    assert raw.hgetall(keys.gateway_members("gw2")) == {b"dev|bob": b"1", b"lobby|bob": b"1"}
    # the old gateway's cleanup finds nothing of its own; the new session joins dev only
    assert gw1.leave("dev", "Bob") is False and gw1.leave("lobby", "Bob") is False
    assert gw2.join("dev", "BOB") is False
    assert gw2.leave("lobby", "BOB") is True
    assert sub.take() == [("{room:lobby}:ch", b"E" + line(Left("lobby", "Bob")))]
    assert gw1.who("dev") == ["BOB"] and gw1.who("lobby") == []
    assert raw.smembers(keys.user_rooms("bob")) == {b"dev"}


def test_a_claim_without_the_token_moves_no_membership(
        gw1: Broker, gw2: Broker, clock: FakeClock, raw: Any,
        listen: Callable[..., Listener]) -> None:
    gw1.claim_name("Bob", "s1", None)
    gw1.join("dev", "Bob")
    lease_runs_out(clock, gw2)
    assert gw2.claim_name("bob", "s2", None).rooms == ()  # another person may take a dead name
    assert raw.hget(keys.room_members("dev"), "bob") == b"gw1|Bob"
    sub = listen(keys.room_channel("dev"))
    assert gw2.reap_dead() == ["gw1"]
    assert sub.take() == [("{room:dev}:ch", b"E" + line(Left("dev", "Bob")))]


def test_a_resume_with_the_token_after_a_crash_takes_the_memberships_too(
        gw1: Broker, gw2: Broker, clock: FakeClock, raw: Any,
        listen: Callable[..., Listener]) -> None:
    first = gw1.claim_name("Bob", "s1", None)
    gw1.join("dev", "Bob")
    lease_runs_out(clock, gw2)  # gw1 crashed and is not reaped yet
    claim = gw2.claim_name("Bob", "s2", first.token)
    assert (claim.replaced_session, claim.rooms) == (None, ("dev",))
    sub = listen(keys.room_channel("dev"))
    assert gw2.reap_dead() == ["gw1"]
    assert gw2.join("dev", "Bob") is False
    assert sub.take() == []
    assert gw2.who("dev") == ["Bob"]


def test_a_token_takeover_on_the_same_gateway_reports_the_rooms_and_moves_nothing(
        gw1: Broker, raw: Any) -> None:
    first = gw1.claim_name("Bob", "s1", None)
    gw1.join("dev", "Bob")
    assert gw1.claim_name("Bob", "s2", first.token).rooms == ("dev",)
    assert raw.hget(keys.room_members("dev"), "bob") == b"gw1|Bob"
    assert raw.hgetall(keys.gateway_members("gw1")) == {b"dev|bob": b"1"}


def test_a_resent_takeover_still_reports_the_rooms(
        make_broker: Callable[..., Broker], server: Any, gw1: Broker, raw: Any) -> None:
    first = gw1.claim_name("Bob", "s1", None)
    gw1.join("dev", "Bob")
    twice = make_broker("gw2", client=no_retry_client(server, DoubleSend))
    assert twice.claim_name("Bob", "s2", first.token).rooms == ("dev",)
    assert raw.hget(keys.room_members("dev"), "bob") == b"gw2|Bob"


def test_a_takeover_skips_rooms_the_holder_no_longer_has(
        gw1: Broker, gw2: Broker, raw: Any) -> None:
    """The rooms are read before the claim; one left meanwhile is not taken."""
    first = gw1.claim_name("Bob", "s1", None)
    gw1.join("dev", "Bob")
    raw.sadd(keys.user_rooms("bob"), "gone")  # stale: no membership behind it
    assert gw2.claim_name("Bob", "s2", first.token).rooms == ("dev",)
    assert raw.exists(keys.room_members("gone")) == 0
    assert gw2.leave("gone", "Bob") is False
    assert raw.smembers(keys.user_rooms("bob")) == {b"dev"}


def test_reaping_drops_the_rooms_of_the_names_it_frees(
        gw1: Broker, gw2: Broker, clock: FakeClock, raw: Any) -> None:
    gw1.claim_name("Bob", "s1", None)
    gw1.join("dev", "Bob")
    gw2.join("dev", "Ann")
    lease_runs_out(clock, gw2)
    assert gw2.reap_dead() == ["gw1"]
    assert raw.exists(keys.user_rooms("bob")) == 0
    assert raw.smembers(keys.user_rooms("ann")) == {b"dev"}


# --------------------------------------------------------------------------- failures


def test_unreachable_redis_raises_broker_unavailable(gw1: Broker, server: Any) -> None:
    server.connected = False
    calls: list[Callable[[], object]] = [
        lambda: gw1.publish_message("lobby", "Bob", "x", 1.0, "r"),
        lambda: gw1.read_history("lobby"),
        lambda: gw1.read_history("lobby", after=0),
        lambda: gw1.claim_name("Bob", "s1", None),
        lambda: gw1.release_name("Bob", "s1"),
        lambda: gw1.join("dev", "Bob"),
        lambda: gw1.leave("dev", "Bob"),
        lambda: gw1.who("dev"),
        lambda: gw1.send_dm("Bob", "Ann", "x", 1.0, None),
        lambda: gw1.publish_typing("dev", "Bob"),
        lambda: gw1.publish_probe("n"),
        gw1.heartbeat,
        gw1.reap_dead,
    ]
    for call in calls:
        with pytest.raises(BrokerUnavailable):
            call()
    assert gw1.ping() is False
    gw1.release_gateway()  # best effort: logs, does not raise
    server.connected = True
    assert gw1.ping() is True


class RefusingClient(fakeredis.FakeRedis):
    reply = "ERR"

    def evalsha(self, *args: Any) -> Any:
        raise redis.ResponseError(self.reply)


@pytest.mark.parametrize("reply", [
    "OOM command not allowed when used memory > 'maxmemory'.",
    "Error running script (call to f_1): @user_script:14: @user_script: 14: "
    "-OOM command not allowed when used memory > 'maxmemory'.",
    "Error running script (call to f_1): @user_script:14: @user_script: 14: "
    "-NOREPLICAS Not enough good replicas to write.",
    "READONLY You can't write against a read only replica.",
])
def test_refusals_of_a_full_or_read_only_redis_are_unavailable(
        make_broker: Callable[..., Broker], server: Any, reply: str) -> None:
    client = no_retry_client(server, RefusingClient)
    client.reply = reply  # type: ignore[attr-defined]
    with pytest.raises(BrokerUnavailable):
        make_broker(client=client).publish_message("lobby", "Bob", "x", 1.0, None)


def test_other_redis_errors_are_bugs_and_pass_through(make_broker: Callable[..., Broker],
                                                      server: Any) -> None:
    client = no_retry_client(server, RefusingClient)
    client.reply = "ERR Error running script: attempt to compare nil"  # type: ignore[attr-defined]
    with pytest.raises(redis.ResponseError):
        make_broker(client=client).publish_message("lobby", "Bob", "x", 1.0, None)


def test_from_url_configures_retry_timeouts_and_tls() -> None:
    broker = Broker.from_url("rediss://:s3cret@127.0.0.1:1/2", "gw1", retries=7,
                             timeout_s=1.5, history=10)
    kwargs = broker.redis.connection_pool.connection_kwargs
    assert broker.redis.connection_pool.connection_class is redis.SSLConnection
    assert (kwargs["password"], kwargs["db"]) == ("s3cret", 2)
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (1.5, 1.5)
    assert kwargs["retry"].get_retries() == 7
    assert kwargs["decode_responses"] is False and kwargs["health_check_interval"] > 0
    assert broker.gateway_id == "gw1"
    assert broker.publish_window_ms == 1000  # the socket timeout less the skew margin
    broker.close()


# ------------------------------------------------------- verdicts across slots


def test_a_claim_whose_holder_changed_after_its_verdict_asks_again(
        make_broker: Callable[..., Broker], gw1: Broker, gw2: Broker, clock: FakeClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The verdict was about gw1 (dead); before the claim script ran, gw3 took the name with
    its token. The script must not apply gw1's verdict to gw3's record: it asks again, and
    gw3 is alive, so a token-less claim is refused."""
    first = gw1.claim_name("Bob", "s1", None)
    lease_runs_out(clock, gw2)  # gw1 is dead now
    gw3 = make_broker("gw3")
    gw3.heartbeat()
    asked: list[list[str]] = []
    real_alive = gw2.alive

    def alive(gateways: Any, *, beat: bool = False) -> dict[str, bool]:
        ids = list(gateways)
        asked.append(ids)
        verdict = real_alive(ids, beat=beat)
        if len(asked) == 1:
            gw3.claim_name("Bob", "s3", first.token)  # between the verdict and the script
        return verdict

    monkeypatch.setattr(gw2, "alive", alive)
    with pytest.raises(ProtocolError) as info:
        gw2.claim_name("Bob", "s2", None)
    assert info.value.code is ErrorCode.NAME_TAKEN
    assert asked == [["gw1"], ["gw3"]]


def test_a_join_whose_member_moved_after_its_verdict_asks_again(
        make_broker: Callable[..., Broker], gw1: Broker, gw2: Broker, clock: FakeClock,
        raw: Any, monkeypatch: pytest.MonkeyPatch, listen: Callable[..., Listener]) -> None:
    first = gw1.claim_name("Bob", "s1", None)
    gw1.join("dev", "Bob")
    lease_runs_out(clock, gw2)  # gw1 is dead: a join through gw2 would say joined
    gw3 = make_broker("gw3")
    gw3.heartbeat()
    real_alive = gw2.alive
    asked: list[list[str]] = []

    def alive(gateways: Any, *, beat: bool = False) -> dict[str, bool]:
        ids = list(gateways)
        asked.append(ids)
        verdict = real_alive(ids, beat=beat)
        if len(asked) == 1:  # the name moves to the live gw3, with its room
            assert gw3.claim_name("Bob", "s3", first.token).rooms == ("dev",)
        return verdict

    monkeypatch.setattr(gw2, "alive", alive)
    sub = listen(keys.room_channel("dev"))
    assert gw2.join("dev", "Bob") is False  # present through a live gateway: no joined
    assert asked == [["gw1"], ["gw3"]]
    assert sub.take() == []
    assert raw.hget(keys.room_members("dev"), "bob") == b"gw2|Bob"

