"""What every part of the broker shares: its Redis client, publisher, clocks and helpers.

``BrokerBase`` holds the state (see ``gateway.redis.broker`` for the whole layer);
the request families (``gateway.redis.rooms``, ``names``, ``gateways``, ``dms``) are
its subclasses, and ``Broker`` joins them.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Self, TypeVar

import redis
from redis.backoff import AbstractBackoff, ExponentialBackoff
from redis.retry import Retry

from gateway.redis import keys, payloads, scripts
from gateway.redis.endpoint import RedisEndpoint
from gateway.redis.errors import BrokerUnavailable, guard, too_late
from gateway.redis.pending import Pending, PublishBatch
from gateway.redis.publisher import (
    SETTLE_S,
    ClientLink,
    Link,
    Publisher,
    Submitter,
    WireLink,
)
from gateway.redis.router import ShardLink, ShardRouter
from gateway.redis.scripts import ScriptCall
from gateway.redis.target import ClusterTarget, parse_target
from protocol.codec import encode
from protocol.frames import Left, ServerFrame

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 2.0
"""Socket timeout of Redis commands (``Broker.from_url``)."""

DEFAULT_ROOM_TTL_MS = 30 * 86_400_000
"""How long a room with no member and no new message keeps its keys: 30 days."""

CLOCK_SKEW_MARGIN_MS = 500
"""How far Redis's clock may lag a gateway's: deadlines end this long before a reply times out.
The one assumption on clocks the ``unavailable`` promise rests on (NTP keeps far tighter)."""


T = TypeVar("T")


def window_for_timeout(socket_timeout_s: float | None) -> int:
    """How long after a message or dm is asked for Redis may still carry it out.

    Strictly less than the socket timeout, the least time the broker takes to
    give up on a script it wrote, by ``CLOCK_SKEW_MARGIN_MS``; timeouts under
    twice the margin (tests) keep half of themselves as the margin. Without a
    timeout the broker never gives up on a reply: the default's window will do.
    """
    timeout_ms = round((DEFAULT_TIMEOUT_S if socket_timeout_s is None else socket_timeout_s)
                       * 1000)
    return timeout_ms - min(CLOCK_SKEW_MARGIN_MS, timeout_ms // 2)


def token_hash(token: str) -> str:
    """What Redis stores of a name token: tokens themselves never leave the gateway."""
    return hashlib.sha256(token.encode()).hexdigest()


def line(frame: ServerFrame) -> bytes:
    return encode(frame)[:-1]


def cut(line: bytes, field: bytes) -> tuple[bytes, bytes]:
    """Cut ``line`` around the value ``~`` of ``field``: (head up to its opening quote, tail from
    its closing quote).

    The first match is the field itself: every value before it is a name or a
    room, which hold no quotes, and a ``"`` inside a JSON string is escaped.
    """
    marker = b'"' + field + b'":"~"'
    at = line.index(marker)
    return line[: at + len(marker) - 2], line[at + len(marker) - 1 :]


def left_parts(room: str) -> tuple[bytes, bytes]:
    """The ``left`` payload of ``room`` around the display name only Redis knows."""
    head, tail = cut(line(Left(room, "~")), b"name")
    return payloads.event(head), tail


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class BrokerBase:
    """The broker's shared state and helpers; see ``gateway.redis.broker``."""

    def __init__(self, client: redis.Redis, gateway_id: str, *, history: int = 1000,
                 lease_ms: int = 8000, ref_ttl_ms: int = 300_000,
                 clock: Callable[[], float] = time.time,
                 deadline_clock: Callable[[], float] = time.time,
                 publish_window_ms: int | None = None, link: Link | None = None,
                 publish_retry: Retry | None = None,
                 on_batch: Callable[[int, float], None] = lambda size, seconds: None,
                 min_replicas: int = 0, room_ttl_ms: int = DEFAULT_ROOM_TTL_MS,
                 new_rooms_per_min: float = 10.0, new_rooms_burst: int = 60,
                 sharded: bool = False, publish_settle_s: float = SETTLE_S) -> None:
        """``clock`` times heartbeats and leases (tests move it); ``deadline_clock`` times
        deadlines, which Redis compares with its own clock, so it is the real time but in
        tests. ``publish_window_ms`` defaults to the one that fits the client's socket
        timeout, and must end before it (module docstring). ``room_ttl_ms``: how long a room
        with no member and no new message lives (0: forever); ``new_rooms_per_min`` and
        ``new_rooms_burst``: the bucket of rooms a name may create (0 a minute: no limit).

        Messages and dms go through the publisher (``gateway.redis.publisher``) on
        ``link``, by default through ``client`` itself; ``publish_retry`` re-sends a batch
        whose link failed, ``on_batch`` gets each batch's size and seconds;
        ``publish_settle_s``: how long a request in doubt (written, its reply lost) is sent
        again before it is answered ``unavailable`` (``gateway.redis.publisher.SETTLE_S``).

        ``sharded``: Redis Cluster, where room and gateway channels are sharded pub/sub
        (``SPUBLISH``); else ``PUBLISH`` (one Redis, Sentinel: Redis 6.2 has no ``SPUBLISH``)."""
        if history < 1:
            raise ValueError("history must keep at least one message")
        if not gateway_id or "|" in gateway_id:
            raise ValueError("gateway id must be non-empty and hold no '|'")
        socket_timeout = client.get_connection_kwargs().get("socket_timeout")
        window = (window_for_timeout(socket_timeout) if publish_window_ms is None
                  else publish_window_ms)
        if window <= 0 or (socket_timeout is not None and window >= socket_timeout * 1000):
            raise ValueError(f"a publish window of {window} ms must be positive and end "
                             f"before the socket timeout ({socket_timeout} s)")
        self._redis = client
        self._gateway_id = gateway_id
        self._history = history
        self._lease_ms = lease_ms
        self._ref_ttl_ms = ref_ttl_ms
        self._clock = clock
        self._deadline_clock = deadline_clock
        self._window_ms = window
        self._room_ttl_ms = max(0, room_ttl_ms)
        self._new_rooms_per_min = max(0.0, new_rooms_per_min)
        self._new_rooms_burst = max(1, new_rooms_burst)
        self._names = secrets.token_hex(8)
        """This broker's prefix of internal refs and epoch candidates: unique per process."""
        self._serial = itertools.count(1)
        self._instance = self._names + secrets.token_hex(8)
        """This process's nonce: tells it from another process started with the same id."""
        self._publisher: Submitter = Publisher(
            link or ClientLink(client), publish_retry, on_batch=on_batch,
            name=f"publisher-{gateway_id}", min_replicas=min_replicas, window_ms=window,
            wait_key=keys.gateway_wait(gateway_id), settle_s=publish_settle_s)
        self.min_replicas = min_replicas
        self.endpoint: RedisEndpoint | None = None
        """How ``from_url`` reaches Redis (None for a broker built on a client)."""
        self._direct = ClientLink(client)
        self.sharded = sharded
        """Redis Cluster: channels are sharded (``publish_command``)."""

    @classmethod
    def from_url(cls, url: str, gateway_id: str, *, retries: int = 3,
                 backoff: AbstractBackoff | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                 health_check_interval: int = 5, pool_size: int = 64,
                 pool_wait_s: float = 10.0, min_replicas: int | None = None,
                 **kw: Any) -> Self:
        """A broker for ``url`` (``gateway.redis.target``: ``redis://``, ``rediss://``,
        ``redis+sentinel://`` ..., password included): raises ``TargetError`` (a URL that
        does not parse) or ``TopologyError`` (Redis Cluster, not supported yet).

        ``min_replicas`` (default: 1 under Sentinel, 0 for one Redis): a message or dm is
        acknowledged only once that many replicas have it (``WAIT`` per publisher batch).

        Transient errors (connection, timeout, loading) are retried ``retries``
        times with ``backoff`` (exponential, capped at 1 s, by default); tests
        pass a backoff that never sleeps. ``kw`` goes to ``Broker()``.

        Thousands of session threads share ``pool_size`` connections: a thread
        waits up to ``pool_wait_s`` for a free one (then ``BrokerUnavailable``).
        redis-py's default pool instead fails at once past 100 connections in
        use, which turned a login storm into spurious ``unavailable`` errors.
        """
        def retry() -> Retry:
            return Retry(backoff or ExponentialBackoff(cap=1.0, base=0.05), retries)

        endpoint = RedisEndpoint(parse_target(url), timeout_s=timeout_s, retry=retry(),
                                 health_check_interval=health_check_interval,
                                 pool_size=pool_size, pool_wait_s=pool_wait_s)
        if min_replicas is None:
            min_replicas = endpoint.target.default_min_replicas
        kw.setdefault("sharded", isinstance(endpoint.target, ClusterTarget))
        slots = endpoint.slots
        link = WireLink(endpoint.address, timeout_s) if slots is None else ClientLink(
            endpoint.client)  # on a cluster the router below replaces the one publisher
        broker = cls(endpoint.client, gateway_id, link=link, publish_retry=retry(),
                     min_replicas=min_replicas, **kw)
        broker.endpoint = endpoint
        if slots is not None:
            broker._publisher = ShardRouter(
                slots, lambda node: ShardLink(endpoint.node_address(node), timeout_s), retry,
                on_batch=kw.get("on_batch", lambda size, seconds: None),
                name=f"publisher-{gateway_id}", min_replicas=min_replicas,
                window_ms=broker.publish_window_ms, wait_key=keys.gateway_wait(gateway_id),
                settle_s=kw.get("publish_settle_s", SETTLE_S))
        return broker

    @property
    def redis(self) -> redis.Redis:
        return self._redis

    @property
    def gateway_id(self) -> str:
        return self._gateway_id

    @property
    def instance(self) -> str:
        """This process's nonce in ``{gw:<id>}:instance``."""
        return self._instance

    @property
    def publish_window_ms(self) -> int:
        """How long after it was asked for Redis may still carry out a message or dm."""
        return self._window_ms

    def _fresh(self) -> str:
        """A name no other request of any gateway uses: an internal ref, an epoch candidate
        (32 characters, as a uuid4 in hex), without the cost of a uuid4."""
        return f"{self._names}{next(self._serial):016x}"

    def run_script(self, call: ScriptCall) -> Any:
        """One script of the Redis layer's (``gateway.redis.scripts``) on the pooled client, from
        the caller's thread; inside ``guard`` its refusals become ``BrokerUnavailable``."""
        return self._run(call)

    def _run(self, call: ScriptCall) -> Any:
        """One script on the pooled client, from the caller's thread (all but the hot path)."""
        return self._direct.one(call)

    def _run_all(self, calls: Sequence[ScriptCall]) -> list[Any]:
        """Scripts in one pipeline (each in its own slot: on a cluster, one round trip per
        node); a script Redis lacks is run again alone (``_run`` loads it). Raises the first
        error of any other kind."""
        pipe = self._redis.pipeline(transaction=False)
        for call in calls:
            pipe.evalsha(call.script.sha.decode(), len(call.keys), *call.keys, *call.args)
        replies = pipe.execute(raise_on_error=False) if calls else []
        for i, reply in enumerate(replies):
            if isinstance(reply, redis.exceptions.NoScriptError):
                replies[i] = self._run(calls[i])
            elif isinstance(reply, Exception):
                raise reply
        return list(replies)

    @property
    def publish_command(self) -> str:
        """What publishes to a room's or a gateway's channel: ``SPUBLISH`` on Redis Cluster
        (the channel's traffic stays on its slot's shard), else ``PUBLISH``. Scripts that
        publish get it as an argument: one code path, two commands."""
        return "SPUBLISH" if self.sharded else "PUBLISH"

    def _publish(self, channel: str, payload: bytes) -> None:
        """Publish from Python (what no script in the channel's slot does: typing, a probe,
        a dm or a lost name for another gateway)."""
        self._redis.execute_command(self.publish_command, channel, payload)  # type: ignore[no-untyped-call]

    def alive(self, gateways: Iterable[str], *, beat: bool = False) -> dict[str, bool]:
        """Whether each gateway is alive now, by ``lua/liveness.lua``'s rule in the liveness
        slot (``beat``: after a heartbeat of ours). What a script in another slot is told
        (it re-checks that its record still names the gateway; docs/architecture.md,
        "Liveness across slots")."""
        ids = tuple(dict.fromkeys(gw for gw in gateways if gw))
        if not ids and not beat:
            return {}
        flags = scripts.Verdict.read(self._run(scripts.Verdict(
            keys.GATEWAYS, keys.GRACE, keys.PULSE, self.now_ms(), self._lease_ms,
            self._gateway_id if beat else "", ids).call()))
        return dict(zip(ids, flags, strict=True))

    @property
    def lease_ms(self) -> int:
        """How long a heartbeat keeps this gateway alive."""
        return self._lease_ms

    def now_ms(self) -> int:
        """The broker's clock (heartbeats, leases) in ms."""
        return int(self._clock() * 1000)

    def deadline_ms(self) -> int:
        """After this (Redis's clock) the request's script must write nothing (docs/architecture.md,
        "Deadlines")."""
        return int(self._deadline_clock() * 1000) + self._window_ms

    @staticmethod
    def too_late(what: str) -> BrokerUnavailable:
        """The refusal of a request whose script ran past its deadline."""
        return too_late(what)

    def guard(self, what: str) -> AbstractContextManager[None]:
        """Turn Redis being out of reach into ``BrokerUnavailable``; let our own bugs through."""
        return guard(what)

    def ping(self) -> bool:
        """Whether Redis answers now; never raises."""
        try:
            return bool(self._redis.ping())
        except redis.RedisError as exc:
            logger.debug("ping failed: %s", exc)
            return False

    def publish_probe(self, nonce: str) -> None:
        """Send ``P<nonce>`` to our own channel: the subscriber proves it still hears it."""
        with self.guard("probe"):
            self._publish(keys.gateway_channel(self._gateway_id), payloads.probe(nonce))

    def start(self) -> None:
        """Start the publisher's thread (a gateway does at start, so its thread count is
        steady from then on; a broker used alone starts it at its first message)."""
        self._publisher.start()

    def close(self) -> None:
        """Stop the publisher (after writing what it holds) and close every connection."""
        self._publisher.stop()
        self._redis.close()

    def batch(self) -> PublishBatch:
        """Collect messages and dms to hand to the publisher together (``submit_message``,
        ``submit_dm`` with ``batch=``): one queue entry, one future, one wake-up."""
        return PublishBatch(self._publisher)

    def _pending(self, batch: PublishBatch | None, call: ScriptCall, what: str,
                 interpret: Callable[[Any], T]) -> Pending[T]:
        alone = batch is None
        if batch is None:
            batch = PublishBatch(self._publisher)
        pending = Pending(batch, batch.add(call), what, guard, interpret)
        if alone:
            batch.submit()
        return pending


__all__ = ["BrokerBase", "DEFAULT_ROOM_TTL_MS", "DEFAULT_TIMEOUT_S", "line", "text",
           "token_hash", "window_for_timeout"]
