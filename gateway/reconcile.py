"""Reconciliation: give back what Redis says this gateway holds and no live session does.

A cleanup can fail: a session's ``leave`` or name release while Redis is out
of reach (a ``bye`` during a blip), a ``hello`` undone while Redis refuses, a
``join`` whose history read failed after its presence was recorded. What it
failed to remove stays in Redis under a gateway that is alive, so nobody ever
reaps it: a ghost in ``who``, a name only its token can take. So after every
heartbeat the housekeeper runs ``Reconciler.run``: it reads the gateway's
``{gw:<id>}:members`` and ``:names`` and gives back (``leave``, publishing
``left``; name release) each one no local session holds.

Races with sessions (the reconciler runs on the housekeeper thread):

- A name a session is claiming right now (``Registry.begin_claim``) is left
  alone; while a name is being reconciled (``Registry.begin_reap``) a new
  claim of it on this gateway waits, so a claim never meets a half-done
  reconciliation. Claims through other gateways move the records away from
  this gateway, and every script here acts only on what is still this
  gateway's.
- A membership of a name whose holder is here but not in that room is left;
  should the holder join that room meanwhile (its join racing ours), the
  membership is recorded again for it.
- Names a gracefully stopped predecessor left reserved for their token
  holders (``reserve``) are left alone until the reservation ends.
- Nothing is given back once the gateway is stopping: its users' names stay
  reserved for them (``Broker.retire``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from gateway.front.registry import Registry
from gateway.redis.broker import Broker

log = logging.getLogger(__name__)


class Reconciler:
    def __init__(self, broker: Broker, registry: Registry, stopping: Callable[[], bool],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._broker = broker
        self._registry = registry
        self._stopping = stopping
        self._clock = clock
        self._reserved: frozenset[str] = frozenset()
        self._reserved_until = 0.0
        """Only the housekeeper thread reads these; ``reserve`` is called before it starts."""

    def reserve(self, lowers: Iterable[str], seconds: float) -> None:
        """Leave these names and their memberships alone for ``seconds``."""
        self._reserved = frozenset(lowers)
        self._reserved_until = self._clock() + seconds

    def run(self) -> int:
        """One pass; returns how many memberships and names were given back. Raises
        ``BrokerUnavailable`` (the housekeeper tries again on its next beat)."""
        if self._stopping():
            return 0
        holdings = self._broker.holdings()
        reserved = self._reserved if self._clock() < self._reserved_until else frozenset()
        rooms_of: dict[str, list[str]] = {lower: [] for lower in holdings.names}
        for room, lower in holdings.memberships:
            rooms_of.setdefault(lower, []).append(room)
        named = frozenset(holdings.names)
        released = 0
        for lower, rooms in rooms_of.items():
            if self._stopping():
                break
            if lower in reserved or not self._suspect(lower, rooms):
                continue
            released += self._reconcile(lower, rooms, lower in named)
        if released:
            log.info("event=reconciled released=%d", released)
        return released

    def _suspect(self, lower: str, rooms: list[str]) -> bool:
        """Cheap check without reserving: might something of ``lower`` be unheld?"""
        holder = self._registry.by_name(lower)
        return holder is None or any(not holder.wants_room(room) for room in rooms)

    def _reconcile(self, lower: str, rooms: list[str], named: bool) -> int:
        free, holder = self._registry.begin_reap(lower)
        if not free:
            return 0  # a claim in flight: it settles the name itself
        released = 0
        try:
            for room in rooms:
                if holder is not None and holder.wants_room(room):
                    continue
                if self._broker.leave(room, lower):
                    released += 1
                    log.info("event=reconcile_left room=%s user=%s", room, lower)
                if holder is not None and holder.name and holder.wants_room(room):
                    self._broker.join(room, holder.name, limited=False)  # it joined meanwhile
            if holder is None and named and self._broker.release_name(lower, ""):
                released += 1
                log.info("event=reconcile_released user=%s", lower)
        finally:
            self._registry.end_reap(lower)
        return released


__all__ = ["Reconciler"]
