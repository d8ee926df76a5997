"""The subscriber on Redis Cluster: one sharded pub/sub link per master.

A room's channel ``{room:R}:ch`` lives in the room's hash slot, and sharded
pub/sub (``SPUBLISH``/``SSUBSCRIBE``) keeps its traffic on the master that
owns that slot; so instead of one link, the subscriber keeps one
``ShardedLink`` per master it needs and ``SSUBSCRIBE``s each room (and the
gateway's own channel) on the owner of its slot (``RedisEndpoint.slots``).
Everything else is ``Subscriber``'s: tickets, reconciling with the registry,
fan-out, fills.

The owner of a channel changes three ways, and each ends the same way: the
channel is forgotten where it was, the slot map is read again, the channel is
``SSUBSCRIBE``d on its owner, and, once confirmed, the room is filled from
history exactly as after a reconnect (on the filler's thread: never blocking
the fan-out of other rooms):

- a ``MOVED`` reply to ``SSUBSCRIBE`` (the map was stale);
- Redis's own ``sunsubscribe`` push (the slot migrated away: Redis drops the
  subscriptions of its channels);
- a lost link (a failover): every channel of that master. While the master is
  not replaced the connect fails; the channel's joins are refused, and the
  thread tries again after a backoff, reading the map each time.

Threads: this one thread owns every link and ``_where`` (channel -> master);
the rest is ``Subscriber``'s and its locks.
"""

from __future__ import annotations

import logging
import select
import time
from collections.abc import Callable
from typing import Any

import hiredis
from redis.backoff import AbstractBackoff

from gateway.front.registry import Registry
from gateway.metrics import GatewayMetrics
from gateway.redis import keys
from gateway.redis.broker import Broker
from gateway.redis.endpoint import RedisEndpoint
from gateway.redis.pubsub import ShardedLink, open_sharded
from gateway.redis.slotmap import Node, Redirect, SlotMap, SlotMapError
from gateway.redis.wire import RedisAddress
from gateway.subscriber import Subscriber

log = logging.getLogger(__name__)


def _no_single_address() -> RedisAddress:
    raise TypeError("a sharded subscriber connects per master")


class ShardedSubscriber(Subscriber):
    """``Subscriber`` over a link per master; see the module docstring."""

    _MESSAGE = b"smessage"
    _SUBSCRIBED = b"ssubscribe"

    def __init__(self, endpoint: RedisEndpoint, gateway_id: str, registry: Registry,
                 broker: Broker, metrics: GatewayMetrics, *,
                 backoff: AbstractBackoff | None = None,
                 on_probe: Callable[[str], None] = lambda nonce: None,
                 connect_timeout: float = 2.0) -> None:
        super().__init__(_no_single_address, gateway_id, registry, broker, metrics,
                         backoff=backoff, on_probe=on_probe, connect_timeout=connect_timeout)
        assert endpoint.slots is not None, "a sharded subscriber needs a cluster endpoint"
        self._endpoint = endpoint
        self._slots: SlotMap = endpoint.slots
        self._links: dict[Node, ShardedLink] = {}
        self._where: dict[bytes, Node] = {}
        """Every channel subscribed or being subscribed, and on which master."""
        self._refill: set[str] = set()
        """Rooms to fill from history once subscribed again (they lost their subscription)."""
        self._dirty = True
        """Something changed that ``_sync`` must act on (this thread only)."""
        self._map_stale = True
        self._map_retry_at = 0.0
        self._down: dict[Node, float] = {}
        """Masters that could not be reached, and when to try each again."""
        self._failures = 0
        self._unserved = False
        """Some wanted channel has no link now (its master is down or unknown)."""
        self._own_on: Node | None = None
        """The master where the own channel's subscription is confirmed."""

    # ------------------------------------------------------------------ thread

    def _run(self) -> None:
        while not self._stop_requested():
            try:
                self._serve_all()
            except Exception:
                log.exception("event=subscriber_crashed")
                for node in list(self._links):
                    self._lost(node, "subscriber crashed")
                self._sleep(self._backoff.compute(1))
        for node in list(self._links):
            self._links.pop(node).close()
        self._where.clear()
        self._set_disconnected()

    def _serve_all(self) -> None:
        """Act on other threads' requests, keep the links as wanted, read; until stopped."""
        while True:
            with self._lock:
                stopping, rebuild, reconcile = self._stopping, self._rebuild, self._reconcile
                self._rebuild = self._reconcile = False
                filled, self._filled = self._filled, []
            if stopping:
                return
            self._deliver_fills(filled)
            if rebuild:
                for node in list(self._links):
                    self._lost(node, "rebuild requested")
            if reconcile or self._dirty or (self._unserved and self._retry_due()):
                self._sync()
            self._wait_and_read()

    def _retry_due(self) -> bool:
        now = time.monotonic()
        return (self._map_stale and now >= self._map_retry_at) or any(
            now >= at for at in self._down.values())

    def _wait_and_read(self) -> None:
        """Wait for replies on any link, another thread's request, or the next retry."""
        links = {link.wire.fileno(): link for link in self._links.values()}
        wake_fd = self._waker.fileno()
        timeout = None
        if self._unserved:
            retries = [*self._down.values(), *([self._map_retry_at] if self._map_stale else [])]
            timeout = max(0.0, min(retries, default=0.0) - time.monotonic())
        readable = select.select([wake_fd, *links], [], [], timeout)[0]
        for fd in readable:
            if fd == wake_fd:
                self._waker.drain()
                continue
            link = links[fd]
            if self._links.get(link.node) is not link:
                continue  # dropped while handling another link's replies
            try:
                replies = link.wire.read_available()
            except OSError as exc:
                self._lost(link.node, repr(exc))
                continue
            self._on_replies(link, replies)

    # ------------------------------------------------------- subscriptions

    def _sync(self) -> None:
        """Make the links match what is wanted: the own channel and every room with a local
        member or a waiting join, each on the master owning its slot."""
        self._dirty = False
        now = time.monotonic()
        self._down = {node: at for node, at in self._down.items() if at > now}
        if self._map_stale and now >= self._map_retry_at:
            try:
                self._slots.refresh()
                self._map_stale = False
            except SlotMapError as exc:
                log.warning("event=slot_map_unavailable error=%s", exc)
        with self._lock:
            waiting = set(self._tickets)
        wanted = {self._own_channel: None} | {
            keys.room_channel(room).encode(): room
            for room in sorted(waiting | self._registry.rooms())}
        drop = [c for c in self._where if c not in wanted]
        if drop:
            self._drop(drop)
        unserved = False
        for channel, room in wanted.items():
            if channel not in self._where and not self._subscribe(channel, now):
                unserved = True
                self._refuse(room)
        self._unserved = unserved
        if unserved:  # try again after a backoff, reading the map first
            self._map_stale = True
            if self._map_retry_at <= now:  # not put off by a sync for another reason
                self._failures += 1
                self._map_retry_at = now + self._backoff.compute(self._failures)
        else:
            self._failures = 0
        self._update_connected()

    def _subscribe(self, channel: bytes, now: float) -> bool:
        """``SSUBSCRIBE`` the channel on its master; False when that cannot be done now."""
        node = self._slots.owner_of(channel)
        if node is None:
            self._map_stale = True
            return False
        if now < self._down.get(node, 0.0):
            return False
        link = self._link(node)
        if link is None:
            self._down[node] = now + self._backoff.compute(self._failures + 1)
            self._map_stale = True  # a failover moves its slots: read the map again
            return False
        self._down.pop(node, None)
        try:
            link.subscribe(channel)
        except OSError as exc:
            self._lost(node, repr(exc))
            return False
        self._where[channel] = node
        return True

    def _drop(self, channels: list[bytes]) -> None:
        """Unsubscribe channels no local member needs (but those a join raced back in)."""
        rooms = [r for c in channels if (r := keys.room_of_channel(c)) is not None]
        with self._lock:
            self._subscribed.difference_update(rooms)
        kept = {keys.room_channel(r).encode() for r in set(rooms) - set(self._keep_raced(rooms))}
        for channel in channels:
            if channel in kept or channel == self._own_channel:
                continue
            node = self._where.pop(channel)
            link = self._links.get(node)
            if link is None:
                continue
            try:
                link.unsubscribe(channel)
            except OSError as exc:
                self._lost(node, repr(exc))

    def _link(self, node: Node) -> ShardedLink | None:
        link = self._links.get(node)
        if link is not None:
            return link
        try:
            link = open_sharded(self._endpoint.node_address(node), node, self._connect_timeout)
        except OSError as exc:
            log.warning("event=pubsub_connect_failed node=%s error=%r", node, exc)
            self._metrics.redis_reconnects.inc()
            return None
        self._links[node] = link
        log.info("event=pubsub_connected node=%s", node)
        return link

    def _refuse(self, room: str | None) -> None:
        """A room's master is out of reach now: its waiting joins are refused."""
        if room is None:
            return
        with self._lock:
            tickets = self._tickets.pop(room, [])
        for ticket in tickets:
            ticket.resolve(False)

    def _lost(self, node: Node, why: str) -> None:
        """The link to ``node`` is gone: each of its channels must be subscribed again
        (wherever its slot is now) and its room filled."""
        link = self._links.pop(node, None)
        if link is not None:
            link.close()
            log.warning("event=pubsub_lost node=%s error=%s", node, why)
        gone = [c for c, n in self._where.items() if n == node]
        for channel in gone:
            self._forget(channel)
        self._map_stale = True
        self._update_connected()

    def _forget(self, channel: bytes) -> None:
        """The channel is no longer subscribed where it was: subscribe it again, and fill
        its room once that is confirmed."""
        self._where.pop(channel, None)
        self._dirty = True
        room = keys.room_of_channel(channel)
        if room is None:
            if channel == self._own_channel:
                self._own_on = None
            return
        with self._lock:
            self._subscribed.discard(room)
        self._refill.add(room)

    def _update_connected(self) -> None:
        """Connected: the own channel is subscribed and every master needed is reachable."""
        connected = self._own_on in self._links and not self._unserved
        with self._lock:
            self._connected = connected

    # ------------------------------------------------------------- replies

    def _on_replies(self, link: ShardedLink, replies: list[Any]) -> None:
        messages = []
        for reply in replies:
            if isinstance(reply, list):
                kind = reply[0]
                if kind == b"smessage":
                    messages.append(reply)
                elif kind == b"ssubscribe":
                    self._on_subscribed(link, reply[1])
                elif kind == b"sunsubscribe":
                    self._on_unsubscribed(link, reply[1])
            elif isinstance(reply, hiredis.ReplyError):
                self._on_error(link, str(reply))
        if messages:
            self._dispatch(messages)

    def _on_subscribed(self, link: ShardedLink, channel: bytes) -> None:
        link.answered(True, channel)
        if self._where.get(channel) != link.node:
            return  # dropped or moved meanwhile
        room = keys.room_of_channel(channel)
        if room is None:
            if channel == self._own_channel:
                self._own_on = link.node
                self._update_connected()
            return
        self._confirmed(channel)
        if room in self._refill:
            self._refill.discard(room)
            self._filler.request(room)

    def _on_unsubscribed(self, link: ShardedLink, channel: bytes) -> None:
        if link.answered(False, channel):
            return  # ours
        if self._where.get(channel) != link.node:
            return
        log.info("event=slot_migrated channel=%s node=%s", channel.decode(errors="replace"),
                 link.node)
        self._forget(channel)
        self._map_stale = True
        self._update_connected()

    def _on_error(self, link: ShardedLink, error: str) -> None:
        asked = link.refused(error)
        if asked is None:
            log.warning("event=pubsub_error node=%s error=%s", link.node, error)
            return
        subscribe, channel = asked
        if not subscribe or self._where.get(channel) != link.node:
            return  # an unsubscribe: the channel is gone anyway
        redirect = Redirect.parse(error, link.node.host)
        if redirect is not None and not redirect.ask:
            self._slots.moved(redirect)
        else:
            self._map_stale = True
        log.info("event=subscribe_redirected channel=%s node=%s error=%s",
                 channel.decode(errors="replace"), link.node, error)
        self._forget(channel)


def subscriber_for(broker: Broker, redis_url: str, gateway_id: str, registry: Registry,
                   metrics: GatewayMetrics, *, backoff: AbstractBackoff | None = None,
                   on_probe: Callable[[str], None] = lambda nonce: None) -> Subscriber:
    """The subscriber the broker's target takes: sharded on Redis Cluster, else one link
    (to the URL's Redis, or the primary Sentinel names at each connect)."""
    endpoint = broker.endpoint
    if endpoint is not None and endpoint.sharded:
        return ShardedSubscriber(endpoint, gateway_id, registry, broker, metrics,
                                 backoff=backoff, on_probe=on_probe)
    return Subscriber(endpoint.address if endpoint is not None else redis_url, gateway_id,
                      registry, broker, metrics, backoff=backoff, on_probe=on_probe)


__all__ = ["ShardedSubscriber", "subscriber_for"]
