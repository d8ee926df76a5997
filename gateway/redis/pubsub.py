"""The subscriber's pub/sub link to Redis: open it, change its subscriptions, confirm them.

``open_link`` connects and subscribes to the gateway's own channel and every
room given, waiting for each confirmation (Redis sends them all before any
message); ``change_rooms`` subscribes and unsubscribes room channels on an open
link, whose confirmations arrive among the messages. A ``Ticket`` is what a
joining session waits on until its room's subscription is confirmed.

On Redis Cluster a gateway keeps one ``ShardedLink`` per master instead,
each channel ``SSUBSCRIBE``d alone (a command names channels of one slot
only), so that an error reply (``MOVED``: the slot is elsewhere) tells which
channel it refuses.
"""

from __future__ import annotations

import concurrent.futures
from collections import deque
from collections.abc import Sequence

from gateway.redis import keys
from gateway.redis.slotmap import Node, Redirect, key_slot
from gateway.redis.wire import RedisAddress, RedisWire, RedisWireError, pack


class Ticket:
    """Resolved True when a room's subscription is confirmed, False when Redis is down: a
    ``concurrent.futures.Future[bool]`` (``future``) with a ``wait`` that answers False on a
    timeout."""

    __slots__ = ("future",)

    def __init__(self) -> None:
        self.future: concurrent.futures.Future[bool] = concurrent.futures.Future()

    def resolve(self, ok: bool) -> None:
        if not self.future.done():
            self.future.set_result(ok)

    def done(self) -> bool:
        return self.future.done()

    def wait(self, timeout: float) -> bool:
        """True once the subscription is confirmed; False if refused or not within ``timeout``."""
        try:
            return self.future.result(timeout)
        except concurrent.futures.TimeoutError:
            return False


def open_link(address: RedisAddress, own_channel: bytes, rooms: Sequence[str],
              timeout: float) -> RedisWire:
    """A connection subscribed to ``own_channel`` and every room's channel, confirmed, and
    blocking from then on (the caller polls it); closed again if any step fails."""
    wire = RedisWire(address, timeout=timeout)
    try:
        channels = [own_channel] + [keys.room_channel(r).encode() for r in rooms]
        wire.send(pack("SUBSCRIBE", *channels))
        for _ in channels:  # Redis sends every confirmation before any message
            reply = wire.read_one()
            if not (isinstance(reply, list) and reply[0] == b"subscribe"):
                raise RedisWireError(f"unexpected reply to SUBSCRIBE: {reply!r}")
        wire.sock.settimeout(None)
    except BaseException:
        wire.close()
        raise
    return wire


def change_rooms(wire: RedisWire, add: Sequence[str], drop: Sequence[str]) -> None:
    """Unsubscribe ``drop``'s channels, subscribe ``add``'s; confirmations come with messages."""
    if drop:
        wire.send(pack("UNSUBSCRIBE", *(keys.room_channel(r) for r in drop)))
    if add:
        wire.send(pack("SUBSCRIBE", *(keys.room_channel(r) for r in add)))


class ShardedLink:
    """One master's sharded pub/sub connection: ``SSUBSCRIBE``/``SUNSUBSCRIBE`` one channel
    a command, and which reply answers which command.

    Replies come in the order of the commands, with publications and Redis's own
    ``sunsubscribe`` pushes (a slot migrated away) among them: ``answered`` tells a
    reply to our command from a push, ``refused`` which command an error reply
    answers. Used by one thread only.
    """

    def __init__(self, node: Node, wire: RedisWire) -> None:
        self.node = node
        self.wire = wire
        self._asked: deque[tuple[bool, bytes]] = deque()
        """(subscribe?, channel) of every command not answered yet, oldest first."""

    def subscribe(self, channel: bytes) -> None:
        self.wire.send(pack("SSUBSCRIBE", channel))
        self._asked.append((True, channel))

    def unsubscribe(self, channel: bytes) -> None:
        self.wire.send(pack("SUNSUBSCRIBE", channel))
        self._asked.append((False, channel))

    def answered(self, subscribe: bool, channel: bytes) -> bool:
        """A confirmation came: True if it answers one of our commands, False for a push."""
        try:
            self._asked.remove((subscribe, channel))
        except ValueError:
            return False
        return True

    def refused(self, error: str) -> tuple[bool, bytes] | None:
        """The (subscribe?, channel) of the command an error reply answers: for ``MOVED``
        the oldest one asked in that slot, else the oldest one; None if none waits."""
        redirect = Redirect.parse(error, self.node.host)
        if redirect is not None:
            for asked in self._asked:
                if key_slot(asked[1]) == redirect.slot:
                    self._asked.remove(asked)
                    return asked
        return self._asked.popleft() if self._asked else None

    def close(self) -> None:
        self.wire.close()


def open_sharded(address: RedisAddress, node: Node, timeout: float) -> ShardedLink:
    """A connection to a master for sharded pub/sub, blocking from then on (the caller
    polls it)."""
    wire = RedisWire(address, timeout=timeout)
    wire.sock.settimeout(None)
    return ShardedLink(node, wire)


__all__ = ["ShardedLink", "Ticket", "change_rooms", "open_link", "open_sharded"]
