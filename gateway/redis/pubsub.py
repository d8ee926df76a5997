"""The subscriber's pub/sub link to Redis: open it, change its subscriptions, confirm them.

``open_link`` connects and subscribes to the gateway's own channel and every
room given, waiting for each confirmation (Redis sends them all before any
message); ``change_rooms`` subscribes and unsubscribes room channels on an open
link, whose confirmations arrive among the messages. A ``Ticket`` is what a
joining session waits on until its room's subscription is confirmed.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Sequence

from gateway.redis import keys
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


__all__ = ["Ticket", "change_rooms", "open_link"]
