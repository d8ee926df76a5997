"""Everything the gateway asks of Redis: ids, history, presence, names, dms.

Each request that writes is one Lua script (``gateway.redis.scripts``): one round trip,
atomic, so a request Redis refuses is never half done. Messages and dms, the
hot path, go through the gateway's publisher (``gateway.redis.publisher``):
one thread that writes every request queued at that moment as one pipelined
batch and completes each from its own reply (group commit); a session hands
over all the sends of one read together (``batch``, ``submit_message``) and
waits on the outcome (``Pending.result``). Every other request runs on
redis-py's pooled client from the caller's thread. Transient failures are
retried with redis-py's own ``Retry`` (see ``Broker.from_url``): the pool's
for one command, the publisher's for the unanswered rest of a batch. When it
gives up, the broker raises ``BrokerUnavailable`` and the caller answers
``unavailable``. Because a retry may run a script twice after a lost reply,
every publication carries a dedup key: the client's ``ref``, or an internal
one when the client gave none, so a retry never publishes twice.

Deadlines: a message or dm carries one (``window_for_timeout``) and its script
writes nothing once Redis's clock is past it (``lua/deadline.lua``), so a send
answered ``unavailable`` is never carried out later. Why that holds, and the
one assumption on clocks it rests on, is written once, in docs/architecture.md,
"Deadlines".

The requests live by job: ``gateway.redis.rooms``, ``names``, ``gateways`` (liveness and
reaping, over rooms and names: reaping leaves and releases for a dead gateway), ``dms``,
over ``gateway.redis.base`` (shared state and helpers),
``errors`` and ``pending``; ``Broker`` joins them, and this module re-exports
what callers use.

Thread-safe: the broker's only mutable state is a counter (internal refs and
epoch candidates, ``itertools.count``) and the publisher's queue; redis-py's
client pools connections. Keys and payloads are those of
docs/architecture.md, spelled in ``gateway.redis.keys``.
"""

from __future__ import annotations

from gateway.redis.base import (
    DEFAULT_ROOM_TTL_MS,
    DEFAULT_TIMEOUT_S,
    token_hash,
    window_for_timeout,
)
from gateway.redis.dms import DmRequests, DmSent
from gateway.redis.errors import BrokerUnavailable
from gateway.redis.gateways import GatewayRequests, Holdings, InstanceClaim
from gateway.redis.names import NameClaim
from gateway.redis.pending import Pending, PublishBatch
from gateway.redis.rooms import INTERNAL_REF_TTL_MS, HistoryBatch, Published


class Broker(GatewayRequests, DmRequests):
    """The gateway's Redis layer; see the module docstring."""


__all__ = [
    "Broker",
    "BrokerUnavailable",
    "DEFAULT_ROOM_TTL_MS",
    "DEFAULT_TIMEOUT_S",
    "DmSent",
    "HistoryBatch",
    "Holdings",
    "INTERNAL_REF_TTL_MS",
    "InstanceClaim",
    "NameClaim",
    "Pending",
    "PublishBatch",
    "Published",
    "token_hash",
    "window_for_timeout",
]
