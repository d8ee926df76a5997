"""The gateway's one pub/sub link: receive from Redis, fan out to local sessions.

One thread owns the connection (``gateway.redis.pubsub``). Other threads never
touch it: they ask for subscriptions, fills and rebuilds through flags under
``_lock`` and a ``Waker``, and the thread reconciles the rooms it is
subscribed to with the rooms the registry says have local members. So a
``join`` waits for the confirmation of its room's SUBSCRIBE (``Ticket``)
before it reads history, and no message published after that read is missed.

Each read takes every reply Redis has sent; messages are grouped per room,
each group is encoded once (lines joined) and handed to every local member.
Ids decide delivery (see ``Session``): a gap, a new epoch, or a reconnect
makes the ``Filler`` thread (``gateway.redis.filler``) read the room's
history, which this thread then delivers to each session (only ids past
its last, before newer live messages), so clients see no gap and no
duplicate, and a slow history read never holds up the fan-out of other rooms.

Lock order: ``Subscriber._lock`` guards only the request list, the set of
confirmed rooms, the tickets and the filled history; ``Filler``'s condition
guards its rooms; neither is held across I/O, while calling sessions, or with
the other.
"""

from __future__ import annotations

import logging
import select
import threading
from collections.abc import Callable
from typing import Any

from redis.backoff import AbstractBackoff, ExponentialBackoff

from gateway.front.registry import Registry
from gateway.metrics import GatewayMetrics
from gateway.redis import keys, payloads
from gateway.redis.broker import Broker, BrokerUnavailable, HistoryBatch
from gateway.redis.filler import Filler, read_missing
from gateway.redis.pubsub import Ticket, change_rooms, open_link
from gateway.redis.wire import RedisAddress, RedisWire, RedisWireError
from gateway.wakeup import Waker
from protocol.frames import ByeReason

log = logging.getLogger(__name__)


def _fixed(address: RedisAddress) -> Callable[[], RedisAddress]:
    return lambda: address


class Subscriber:
    _MESSAGE = b"message"
    """The kind of a publication on the link (``smessage`` on sharded pub/sub)."""
    _SUBSCRIBED = b"subscribe"
    """The kind of a subscription's confirmation (``ssubscribe`` on sharded pub/sub)."""

    def __init__(self, redis: str | Callable[[], RedisAddress], gateway_id: str,
                 registry: Registry, broker: Broker,
                 metrics: GatewayMetrics, *, backoff: AbstractBackoff | None = None,
                 on_probe: Callable[[str], None] = lambda nonce: None,
                 connect_timeout: float = 2.0) -> None:
        self._address = _fixed(RedisAddress.from_url(redis)) if isinstance(redis, str) else redis
        """Where to connect: a URL's one Redis, or (Sentinel) the primary asked afresh at every
        connect, so the link follows a promotion on its own."""
        self._own_channel = keys.gateway_channel(gateway_id).encode()
        self._registry = registry
        self._broker = broker
        self._metrics = metrics
        self._delivered = metrics.frames_out.labels("message")
        self._backoff = backoff or ExponentialBackoff(cap=2.0, base=0.05)
        self._on_probe = on_probe
        self._connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._subscribed: set[str] = set()
        self._tickets: dict[str, list[Ticket]] = {}
        self._filler = Filler(self._fill)
        self._filled: list[tuple[str, HistoryBatch, HistoryBatch | None]] = []
        """History the filler read, for this thread to deliver (under ``_lock``)."""
        self._seen: dict[str, tuple[bytes, int]] = {}
        """Per room, the epoch and id of the last publication received (this thread only)."""
        self._reconcile = False
        self._rebuild = False
        self._stopping = False
        self._connected = False
        self._waker = Waker()
        self._thread = threading.Thread(target=self._run, name="subscriber")

    # ---------------------------------------------------------------- requests

    @property
    def connected(self) -> bool:
        return self._connected

    def start(self) -> None:
        self._filler.start()
        self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
        self._wake()
        if self._thread.is_alive():
            self._thread.join(5)
        self._filler.stop()
        self._waker.close()

    def subscribe(self, room: str) -> Ticket:
        """Make sure the room's channel is subscribed; wait on the ticket before reading history.

        While the link is down the ticket waits for the next connection, which
        subscribes every room the registry holds; a failed attempt refuses it. So
        a login right after start, or during a reconnect, is served, not refused.
        """
        ticket = Ticket()
        with self._lock:
            if room in self._subscribed:
                ticket.resolve(True)
                return ticket
            self._tickets.setdefault(room, []).append(ticket)
            self._reconcile = True
        self._wake()
        return ticket

    def rooms_changed(self) -> None:
        """The registry's rooms changed (a session left a room, or closed): drop the channels
        of rooms with no local member left."""
        with self._lock:
            self._reconcile = True
        self._wake()

    def request_fill(self, room: str) -> None:
        self._filler.request(room)

    def request_rebuild(self) -> None:
        """Drop and rebuild the connection (the watchdog saw probes stop coming back)."""
        with self._lock:
            self._rebuild = True
        self._wake()

    def _wake(self) -> None:
        self._waker.wake()

    # ------------------------------------------------------------------ thread

    def _stop_requested(self) -> bool:
        """Read fresh each time: ``stop()`` sets it from another thread."""
        with self._lock:
            return self._stopping

    def _run(self) -> None:
        failures = 0
        while not self._stop_requested():
            wire: RedisWire | None = None
            try:
                wire = self._connect()
                failures = 0
                self._serve(wire)
            except (OSError, RedisWireError, BrokerUnavailable) as exc:
                log.warning("event=pubsub_lost error=%r", exc)
            except Exception:
                log.exception("event=subscriber_crashed")
            finally:
                self._set_disconnected()
                if wire is not None:
                    wire.close()
            if self._stop_requested():
                break
            failures += 1
            self._metrics.redis_reconnects.inc()
            self._sleep(self._backoff.compute(failures))

    def _sleep(self, seconds: float) -> None:
        """Wait for the backoff, or less if stop() is called."""
        select.select([self._waker], [], [], seconds)
        self._waker.drain()

    def _set_disconnected(self) -> None:
        with self._lock:
            self._connected = False
            self._subscribed.clear()
            tickets, self._tickets = self._tickets, {}
        for waiting in tickets.values():
            for ticket in waiting:
                ticket.resolve(False)

    def _connect(self) -> RedisWire:
        address = self._address()
        with self._lock:
            self._rebuild = False
            self._reconcile = False
        rooms = sorted(self._registry.rooms())
        wire = open_link(address, self._own_channel, rooms, self._connect_timeout)
        with self._lock:
            self._subscribed = set(rooms)
            self._connected = True
            self._reconcile = True  # rooms joined while we were connecting
            ready = [t for room in rooms for t in self._tickets.pop(room, ())]
        for ticket in ready:  # joins that waited for the link
            ticket.resolve(True)
        log.info("event=pubsub_connected rooms=%d", len(rooms))
        for room in rooms:  # fill whatever was published while we were away
            self._filler.request(room)
        return wire

    def _serve(self, wire: RedisWire) -> None:
        wire_fd, wake_fd = wire.fileno(), self._waker.fileno()
        while True:
            readable = select.select([wire_fd, wake_fd], [], [])[0]
            if wake_fd in readable:
                self._waker.drain()
                if self._handle_requests(wire):
                    return
            if wire_fd in readable:
                self._dispatch(wire.read_available())

    def _handle_requests(self, wire: RedisWire) -> bool:
        """Act on what other threads asked; True to drop the connection."""
        with self._lock:
            if self._stopping or self._rebuild:
                return True
            reconcile, self._reconcile = self._reconcile, False
            filled, self._filled = self._filled, []
            subscribed = set(self._subscribed)
            waiting = set(self._tickets)
        self._deliver_fills(filled)
        if reconcile:
            wanted = self._registry.rooms()
            asked = waiting | wanted
            add = sorted(asked - subscribed)
            drop = sorted(subscribed - wanted)
            if drop:
                with self._lock:
                    self._subscribed.difference_update(drop)
                drop = self._keep_raced(drop)
            change_rooms(wire, add, drop)
        return False

    def _keep_raced(self, drop: list[str]) -> list[str]:
        """Of the rooms about to be dropped, keep those a session joined meanwhile.

        A join registers in the registry, then asks ``subscribe``; if it asked
        before ``drop`` left ``_subscribed`` it was told "subscribed" at once, and
        its registration, earlier still, shows in this second look.
        """
        raced = set(drop) & self._registry.rooms()
        if not raced:
            return drop
        with self._lock:
            self._subscribed.update(raced)
            tickets = [t for room in raced for t in self._tickets.pop(room, [])]
        for ticket in tickets:
            ticket.resolve(True)
        return [room for room in drop if room not in raced]

    # ---------------------------------------------------------------- fan-out

    def _went_back(self, room: str, epoch: bytes, msg_id: int) -> bool:
        """Pub/sub never repeats a publication: an id at or below one already seen
        in the same epoch means Redis lost its last writes and reused ids."""
        seen = self._seen.get(room)
        self._seen[room] = (epoch, msg_id)
        return seen is not None and seen[0] == epoch and msg_id <= seen[1]

    def _renew_epochs(self, rolled_back: set[tuple[str, bytes]]) -> None:
        for room, epoch in rolled_back:
            try:
                fresh = self._broker.renew_epoch(room, epoch.decode())
            except BrokerUnavailable as exc:
                log.warning("event=renew_epoch_failed room=%s error=%r", room, exc)
                continue
            log.warning("event=ids_went_back room=%s old_epoch=%s epoch=%s", room,
                        epoch.decode(), fresh)
            self._filler.request(room)  # every session gets the new epoch's history

    def _dispatch(self, replies: list[Any]) -> None:
        groups: dict[str, list[tuple[bytes, int, bytes]]] = {}
        rolled_back: set[tuple[str, bytes]] = set()
        message, subscribed = self._MESSAGE, self._SUBSCRIBED
        for reply in replies:
            kind = reply[0]
            if kind == message:
                channel, data = reply[1], reply[2]
                room = keys.room_of_channel(channel)
                if room is None:
                    self._on_gateway_message(data)
                    continue
                tag = data[:1]
                if tag == payloads.MESSAGE:
                    epoch, msg_id, line = payloads.read_message(data)
                    if self._went_back(room, epoch, msg_id):
                        rolled_back.add((room, epoch))
                    groups.setdefault(room, []).append((epoch, msg_id, line + b"\n"))
                    continue
                if room in groups:  # keep events in order with the messages before them
                    self._fan_out(room, groups.pop(room))
                if tag == payloads.EVENT:
                    for session in self._registry.members(room):
                        session.deliver_event(room, data[1:] + b"\n")
                elif tag == payloads.TYPING:
                    who, line = payloads.read_addressed(data)
                    for session in self._registry.members(room):
                        session.deliver_event(room, line + b"\n", who)
            elif kind == subscribed:
                self._confirmed(reply[1])
        for room, group in groups.items():
            self._fan_out(room, group)
        if rolled_back:
            self._renew_epochs(rolled_back)

    def _confirmed(self, channel: bytes) -> None:
        room = keys.room_of_channel(channel)
        if room is None:
            return
        with self._lock:
            self._subscribed.add(room)
            tickets = self._tickets.pop(room, [])
        for ticket in tickets:
            ticket.resolve(True)

    def _fan_out(self, room: str, group: list[tuple[bytes, int, bytes]]) -> None:
        members = self._registry.members(room)
        if not members:
            return
        start = 0
        while start < len(group):  # one run per epoch (a change is rare)
            epoch = group[start][0]
            end = start + 1
            while end < len(group) and group[end][0] == epoch:
                end += 1
            run = group[start:end]
            ids = [m[1] for m in run]
            lines = [m[2] for m in run]
            joined = b"".join(lines)
            contiguous = ids[-1] - ids[0] == len(ids) - 1
            epoch_text = epoch.decode()
            gap = False
            for session in members:
                if session.deliver_messages(room, epoch_text, ids, lines, joined, contiguous):
                    gap = True
            self._delivered.inc(len(ids) * len(members))
            if gap:
                self._filler.request(room)
            start = end

    def _fill(self, room: str) -> bool:
        """Read what the room's local members miss (the filler's thread, so a slow read holds
        up no other room) and hand it to this thread to deliver; False when Redis could not
        be read (the filler tries again)."""
        positions = [p for s in self._registry.members(room) if (p := s.position(room))]
        if not positions:
            return True
        try:
            batch, fresh = read_missing(self._broker, room, positions)
        except BrokerUnavailable as exc:
            log.warning("event=fill_failed room=%s error=%r", room, exc)
            return False
        with self._lock:
            self._filled.append((room, batch, fresh))
        self._wake()
        return True

    def _deliver_fills(self, filled: list[tuple[str, HistoryBatch, HistoryBatch | None]]) -> None:
        """Bring every local member of each room up to date from what the filler read (this
        thread only: it alone writes a live room's messages to sessions, in order)."""
        for room, batch, fresh in filled:
            for session in self._registry.members(room):
                if session.position(room) is None or session.catch_up(room, batch):
                    continue
                if fresh is None:  # its epoch changed after the filler looked: read again
                    self._filler.request(room)
                else:
                    session.reset_room(room, fresh)

    def _on_gateway_message(self, data: bytes) -> None:
        tag = data[:1]
        if tag == payloads.DM:
            to, line = payloads.read_addressed(data)
            session = self._registry.by_name(to)
            if session is not None:
                session.deliver_direct(line + b"\n")
        elif tag == payloads.KICK:
            _, sid = payloads.read_addressed(data)
            session = self._registry.get(sid.decode())
            if session is not None:
                session.kick(ByeReason.REPLACED)
        elif tag == payloads.PROBE:
            self._on_probe(data[1:].decode())


__all__ = ["Filler", "Subscriber", "Ticket"]
