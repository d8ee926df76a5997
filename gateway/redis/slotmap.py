"""Which master of a Redis Cluster owns each hash slot: the map the gateway's own links
(publisher, pub/sub) route by.

redis-py's ``RedisCluster`` routes the pooled client's commands itself; the
links that speak RESP by hand need the same knowledge: ``SlotMap.owner`` says
which master serves a key's slot. The map is read from ``CLUSTER SHARDS`` on
any node that answers (the seeds of the URL, then every master seen), and is
corrected one slot at a time from a ``MOVED`` reply (``moved``) until the next
``refresh``. A redirection reply is parsed here too (``Redirect``).

Threads: any thread reads the map (one list, replaced whole, never changed in
place but for one slot's entry, both atomic under the GIL); ``refresh`` does
its I/O without a lock and swaps the result in under ``_lock``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import hiredis
from redis.crc import key_slot as _crc_slot

from gateway.redis.target import HostPort
from gateway.redis.wire import RedisWire, pack

log = logging.getLogger(__name__)

SLOTS = 16384


@dataclass(frozen=True, slots=True)
class Node(HostPort):
    """A cluster node's address as ``CLUSTER SHARDS`` announces it; written as a URL's
    ``HostPort`` (``host:port``, an IPv6 host in brackets)."""

    @property
    def name(self) -> str:
        return str(self)


def key_slot(key: str | bytes) -> int:
    """The hash slot of ``key`` (its ``{tag}`` if it has one), as Redis computes it."""
    return int(_crc_slot(key.encode() if isinstance(key, str) else key))


@dataclass(frozen=True, slots=True)
class Redirect:
    """A ``MOVED slot host:port`` or ``ASK slot host:port`` error reply."""

    ask: bool
    slot: int
    node: Node

    @classmethod
    def parse(cls, message: str, default_host: str = "127.0.0.1") -> Redirect | None:
        """The redirection ``message`` (an error reply's text) names; None for any other
        error. An empty host (Redis 7's "same host as me") becomes ``default_host``."""
        kind, _, rest = message.partition(" ")
        if kind not in ("MOVED", "ASK"):
            return None
        slot_text, _, where = rest.strip().partition(" ")
        host, _, port_text = where.rpartition(":")
        try:
            slot, port = int(slot_text), int(port_text)
        except ValueError:
            return None
        return cls(kind == "ASK", slot, Node(host.strip("[]") or default_host, port))


def _pairs(flat: Any) -> dict[bytes, Any]:
    """A RESP2 map (a flat list of key, value) as a dict."""
    if isinstance(flat, dict):
        return {bytes(k): v for k, v in flat.items()}
    return {bytes(flat[i]): flat[i + 1] for i in range(0, len(flat) - 1, 2)}


def parse_shards(reply: Any, tls: bool = False) -> list[tuple[int, int, Node]]:
    """``CLUSTER SHARDS`` as (first slot, last slot, master) ranges; a master with no
    address (``?``) or not ``online`` is left out, so its slots read as unowned."""
    ranges = []
    for shard in reply:
        fields = _pairs(shard)
        master = None
        for node in fields.get(b"nodes", []):
            info = _pairs(node)
            if info.get(b"role") != b"master" or info.get(b"health", b"online") != b"online":
                continue
            host = info.get(b"endpoint") or info.get(b"ip") or b""
            port = info.get(b"tls-port") if tls else info.get(b"port")
            if host in (b"", b"?") or not port:
                continue
            master = Node(host.decode(), int(port))
        if master is None:
            continue
        bounds = fields.get(b"slots", [])
        for i in range(0, len(bounds) - 1, 2):
            ranges.append((int(bounds[i]), int(bounds[i + 1]), master))
    return ranges


def parse_slots(reply: Any) -> list[tuple[int, int, Node]]:
    """``CLUSTER SLOTS`` (Redis before 7, which has no ``CLUSTER SHARDS``) as ranges."""
    ranges = []
    for entry in reply:
        first, last, master = entry[0], entry[1], entry[2]
        host = master[0].decode() if isinstance(master[0], bytes) else str(master[0])
        if host in ("", "?"):
            continue
        ranges.append((int(first), int(last), Node(host, int(master[1]))))
    return ranges


class SlotMapError(OSError):
    """No node answered ``CLUSTER SHARDS``."""


class SlotMap:
    """Slot -> master; see the module docstring. ``connect`` opens a ``RedisWire`` to a node
    (address, TLS and password of the URL)."""

    def __init__(self, seeds: Sequence[Node], connect: Callable[[Node], RedisWire], *,
                 tls: bool = False) -> None:
        self._seeds = tuple(seeds)
        self._connect = connect
        self._tls = tls
        self._lock = threading.Lock()
        self._table: list[Node | None] = [None] * SLOTS
        self._version = 0

    @property
    def version(self) -> int:
        """Counts refreshes and corrections: a reader that saw another version may re-route."""
        return self._version

    def owner(self, slot: int) -> Node | None:
        """The master serving ``slot`` as last known (None: unknown, refresh first)."""
        return self._table[slot]

    def owner_of(self, key: str | bytes) -> Node | None:
        return self._table[key_slot(key)]

    def masters(self) -> set[Node]:
        return {node for node in self._table if node is not None}

    def covered(self) -> bool:
        """Whether every slot has a known master."""
        return None not in self._table

    def moved(self, redirect: Redirect) -> None:
        """A ``MOVED`` reply: the slot is the named node's now."""
        with self._lock:
            if self._table[redirect.slot] != redirect.node:
                self._table[redirect.slot] = redirect.node
                self._version += 1

    def refresh(self) -> None:
        """Read the map afresh from the first node that answers; ``SlotMapError`` if none."""
        candidates = list(dict.fromkeys([*self.masters(), *self._seeds]))
        errors = []
        for node in candidates:
            try:
                wire = self._connect(node)
            except OSError as exc:
                errors.append(f"{node}: {exc}")
                continue
            try:
                ranges = self._read(wire)
            except OSError as exc:
                errors.append(f"{node}: {exc}")
                continue
            finally:
                wire.close()
            table: list[Node | None] = [None] * SLOTS
            for first, last, master in ranges:
                table[first:last + 1] = [master] * (last - first + 1)
            with self._lock:
                self._table = table
                self._version += 1
            return
        raise SlotMapError("no cluster node answered CLUSTER SHARDS: " + "; ".join(errors))

    def _read(self, wire: RedisWire) -> list[tuple[int, int, Node]]:
        """The ranges one node knows: ``CLUSTER SHARDS``, or ``CLUSTER SLOTS`` before 7."""
        wire.send(pack("CLUSTER", "SHARDS"))
        reply = wire.read_one()
        if isinstance(reply, hiredis.ReplyError) and "nknown" in str(reply):
            wire.send(pack("CLUSTER", "SLOTS"))
            slots = wire.read_one()
            if isinstance(slots, hiredis.ReplyError):
                raise SlotMapError(str(slots))
            return parse_slots(slots)
        if isinstance(reply, hiredis.ReplyError):
            raise SlotMapError(str(reply))
        return parse_shards(reply, self._tls)


__all__ = ["Node", "Redirect", "SLOTS", "SlotMap", "SlotMapError", "key_slot",
           "parse_shards", "parse_slots"]
