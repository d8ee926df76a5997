"""Subscriber on a real redis-server: subscriptions follow the registry, races included.

The sessions here are stand-ins that record what the subscriber hands them;
probes on the gateway's own channel mark points in the subscriber's stream,
so every wait is for an event, never for time.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest
from redis.backoff import ConstantBackoff

from gateway.front.registry import Registry
from gateway.metrics import GatewayMetrics
from gateway.redis import keys
from gateway.redis.broker import Broker
from gateway.subscriber import Subscriber
from tests.support.redis_server import RedisEndpoint, RedisServer
from tests.support.waiting import wait_for

GW = "gw-sub"


class RecordingSession:
    """What the subscriber calls on a session, recorded."""

    def __init__(self) -> None:
        self.sid = uuid.uuid4().hex[:16]
        self.peer_host = "127.0.0.1"
        self.name: str | None = None
        self.lines: list[bytes] = []

    def deliver_messages(self, room: str, epoch: str, ids: list[int], lines: list[bytes],
                         joined: bytes, contiguous: bool) -> bool:
        self.lines.extend(lines)
        return False

    def deliver_event(self, room: str, line: bytes, typist: str | None = None) -> None:
        self.lines.append(line)

    def position(self, room: str) -> tuple[str, int] | None:
        return None


class HookedRegistry(Registry):
    """A Registry that runs a hook right after its next ``rooms()`` snapshot is taken."""

    def __init__(self) -> None:
        super().__init__()
        self.after_snapshot: Callable[[], None] | None = None

    def rooms(self) -> frozenset[str]:
        snapshot = super().rooms()
        hook, self.after_snapshot = self.after_snapshot, None
        if hook is not None:
            hook()
        return snapshot


class Probes:
    """Marks in the subscriber's stream: publish a nonce, wait until the subscriber saw it."""

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._cond = threading.Condition()

    def returned(self, nonce: str) -> None:
        with self._cond:
            self._seen.add(nonce)
            self._cond.notify_all()

    def wait(self, nonce: str) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: nonce in self._seen, 10), "probe lost"


@pytest.fixture
def setup(shared_redis: RedisEndpoint) -> Iterator[tuple[Subscriber, HookedRegistry, Probes, Any]]:
    registry = HookedRegistry()
    broker = Broker.from_url(shared_redis.url, GW)
    probes = Probes()
    sub = Subscriber(shared_redis.url, GW, registry, broker, GatewayMetrics(GW),
                     backoff=ConstantBackoff(0.05), on_probe=probes.returned)
    sub.start()
    try:
        wait_for(lambda: sub.connected, 10, what="subscriber connected")
        yield sub, registry, probes, shared_redis.client()
    finally:
        sub.stop()
        broker.close()


def test_a_join_before_the_link_is_up_waits_for_it_instead_of_failing(
        redis_server: RedisServer) -> None:
    """A login right after a gateway starts: its room is subscribed by the first connection."""
    registry = Registry()
    broker = Broker.from_url(redis_server.url, GW)
    sub = Subscriber(redis_server.url, GW, registry, broker, GatewayMetrics(GW),
                     backoff=ConstantBackoff(0.05))
    joiner = RecordingSession()
    try:
        registry.admit(cast(Any, joiner), 100, 0)
        registry.add_member(cast(Any, joiner), "early")
        ticket = sub.subscribe("early")  # not started yet: not connected
        assert not ticket.wait(0), "resolved before any connection"
        sub.start()
        assert ticket.wait(10), "refused instead of waiting for the link"
        client = redis_server.client()
        assert client.pubsub_numsub(keys.room_channel("early"))[0][1] == 1
    finally:
        sub.stop()
        broker.close()


def test_a_join_while_redis_is_unreachable_is_refused_by_the_failed_attempt(
        redis_server: RedisServer) -> None:
    """No link and none to be had: the ticket is refused, the login answers unavailable."""
    registry = Registry()
    broker = Broker.from_url(redis_server.url, GW)
    sub = Subscriber(redis_server.url, GW, registry, broker, GatewayMetrics(GW),
                     backoff=ConstantBackoff(0.05))
    redis_server.stop()
    joiner = RecordingSession()
    try:
        registry.admit(cast(Any, joiner), 100, 0)
        registry.add_member(cast(Any, joiner), "r")
        ticket = sub.subscribe("r")
        sub.start()
        assert not ticket.wait(10)
        assert ticket.done(), "a failed attempt must answer the waiting ticket"
    finally:
        sub.stop()
        broker.close()


def mark(client: Any, probes: Probes) -> None:
    """Everything the subscriber was asked before this returns has been acted on."""
    nonce = uuid.uuid4().hex
    client.publish(keys.gateway_channel(GW), b"P" + nonce.encode())
    probes.wait(nonce)


def test_a_join_racing_the_last_leave_keeps_its_subscription(
        setup: tuple[Subscriber, HookedRegistry, Probes, Any]) -> None:
    """The joiner registers between the reconcile's snapshot and its UNSUBSCRIBE."""
    sub, registry, probes, client = setup
    leaver, joiner = RecordingSession(), RecordingSession()
    for s in (leaver, joiner):
        registry.admit(cast(Any, s), 100, 0)
    registry.add_member(cast(Any, leaver), "r")
    assert sub.subscribe("r").wait(5)
    tickets = []

    def joiner_arrives() -> None:
        registry.add_member(cast(Any, joiner), "r")
        tickets.append(sub.subscribe("r"))

    registry.after_snapshot = joiner_arrives
    assert registry.remove_member(cast(Any, leaver), "r")
    sub.rooms_changed()
    wait_for(lambda: tickets, 10, what="the racing join")
    assert tickets[0].wait(5)  # the joiner was told the room is subscribed...
    mark(client, probes)  # ...the reconcile that raced it is over...
    client.publish(keys.room_channel("r"), b"Me1|1|" + b'{"type":"message","id":1}')
    mark(client, probes)  # ...and a message published after it reaches the joiner
    assert joiner.lines == [b'{"type":"message","id":1}\n']
    assert client.pubsub_numsub(keys.room_channel("r"))[0][1] == 1


def test_a_join_queued_before_the_reconcile_is_confirmed(
        setup: tuple[Subscriber, HookedRegistry, Probes, Any]) -> None:
    """The joiner asks after the room left ``subscribed``: its ticket waits for SUBSCRIBE."""
    sub, registry, probes, client = setup
    leaver, joiner = RecordingSession(), RecordingSession()
    for s in (leaver, joiner):
        registry.admit(cast(Any, s), 100, 0)
    registry.add_member(cast(Any, leaver), "r")
    assert sub.subscribe("r").wait(5)
    registry.remove_member(cast(Any, leaver), "r")
    sub.rooms_changed()
    mark(client, probes)
    assert client.pubsub_numsub(keys.room_channel("r"))[0][1] == 0  # dropped when unwanted
    registry.add_member(cast(Any, joiner), "r")
    assert sub.subscribe("r").wait(5)
    client.publish(keys.room_channel("r"), b"Me1|1|" + b'{"type":"message","id":1}')
    mark(client, probes)
    assert joiner.lines == [b'{"type":"message","id":1}\n']


def test_subscriptions_come_back_after_the_connection_is_killed(
        setup: tuple[Subscriber, HookedRegistry, Probes, Any]) -> None:
    sub, registry, probes, client = setup
    member = RecordingSession()
    registry.admit(cast(Any, member), 100, 0)
    for room in ("a", "b"):
        registry.add_member(cast(Any, member), room)
        assert sub.subscribe(room).wait(5)
    assert client.client_kill_filter(_type="pubsub") == 1
    wait_for(lambda: client.pubsub_numsub(keys.room_channel("a"), keys.room_channel("b"))
             == [(keys.room_channel("a").encode(), 1), (keys.room_channel("b").encode(), 1)],
             10, what="resubscribed")
    wait_for(lambda: sub.connected, 10)
    client.publish(keys.room_channel("b"), b"Me1|1|" + b'{"id":1}')
    mark(client, probes)
    assert member.lines == [b'{"id":1}\n']


def test_subscribe_while_disconnected_is_refused_at_once(redis_server: RedisServer) -> None:
    registry = Registry()
    broker = Broker.from_url(redis_server.url, GW)
    redis_server.kill()
    sub = Subscriber(redis_server.url, GW, registry, broker, GatewayMetrics(GW),
                     backoff=ConstantBackoff(0.05))
    sub.start()
    try:
        assert not sub.subscribe("r").wait(5)
    finally:
        sub.stop()
        broker.close()
