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

Thread-safe: the broker's only mutable state is a counter (internal refs and
epoch candidates, ``itertools.count``) and the publisher's queue; redis-py's
client pools connections. Keys and payloads are those of
docs/architecture.md, spelled in ``gateway.redis.keys``.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import itertools
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

import redis
from redis.backoff import AbstractBackoff, ExponentialBackoff
from redis.retry import Retry

from gateway import account_keys
from gateway.redis import keys, payloads, scripts
from gateway.redis.endpoint import RedisEndpoint
from gateway.redis.publisher import ClientLink, Link, Publisher, WireLink
from gateway.redis.scripts import ScriptCall
from gateway.redis.target import parse_target
from protocol.codec import encode, message_parts
from protocol.errors import ChatError, ErrorCode, ProtocolError
from protocol.frames import DirectMessage, Joined, Left, ServerFrame, TypingNotice
from protocol.names import name_key

logger = logging.getLogger(__name__)

INTERNAL_REF_TTL_MS = 60_000
"""How long the dedup key of a ref-less publication lives: longer than any retry."""

REAP_CHUNK = 200
"""Memberships or names dropped per script call, so no single script runs long."""

DEFAULT_TIMEOUT_S = 2.0
"""Socket timeout of Redis commands (``Broker.from_url``)."""

DEFAULT_ROOM_TTL_MS = 30 * 86_400_000
"""How long a room with no member and no new message keeps its keys: 30 days."""

GIVE_UP_S = 120.0
"""How long a session waits for the publisher at most: far beyond every deadline, so only a
publisher bug could make it matter (the request is then answered ``unavailable``)."""


CLOCK_SKEW_MARGIN_MS = 500
"""How far Redis's clock may lag a gateway's: deadlines end this long before a reply times out.
The one assumption on clocks the ``unavailable`` promise rests on (NTP keeps far tighter)."""

_UNAVAILABLE_REPLY = re.compile(
    r"(?:^|: -)(?:OOM|READONLY|MASTERDOWN|MISCONF|NOREPLICAS|LOADING|TRYAGAIN|CLUSTERDOWN)\b"
)
"""Error replies meaning Redis cannot serve writes now, not a bug of ours. Inside a script
Redis 6 reports them as ``Error running script (...): @user_script: 14: -OOM ...``."""
_UNAVAILABLE_ERRORS = (
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
)
"""The same replies when redis-py maps them to classes (it strips the code from the text)."""


class BrokerUnavailable(ChatError):
    """Redis is out of reach (after retries) or cannot serve writes: ``unavailable``."""

    code = ErrorCode.UNAVAILABLE


@dataclass(frozen=True, slots=True)
class Published:
    """A room message stored and published, or a repeat of an earlier one."""

    id: int
    epoch: str
    duplicate: bool
    """The ref was seen before (within the ref TTL): nothing stored or published; first id."""


@dataclass(frozen=True, slots=True)
class HistoryBatch:
    room: str
    epoch: str
    last_id: int
    """The room's current seq (0 when no message was ever sent)."""
    messages: tuple[bytes, ...]
    """Stored ``message`` lines (exact JSON, no newline), oldest first."""
    first_id: int
    """Id of ``messages[0]``, or ``last_id + 1`` when there are none."""
    complete: bool
    """False when older messages were asked for than Redis keeps."""


@dataclass(frozen=True, slots=True)
class NameClaim:
    name: str
    token: str
    """The fresh secret for the client's ``welcome``; Redis keeps only its sha256."""
    replaced_session: str | None
    """The live session this claim took the name from, if any."""
    rooms: tuple[str, ...] = ()
    """Rooms where the name's membership is now this gateway's: taken over with the name
    (token takeover), so the rooms see no left/joined. The new session leaves those its
    ``hello`` does not list."""
    account: bool = False
    """The name has an account and this claim is its owner's (password, or a token of an
    owner's claim)."""


@dataclass(frozen=True, slots=True)
class InstanceClaim:
    """What a starting gateway found under its id (``Broker.claim_instance``)."""

    ours: bool
    """The id is ours now; False: another process runs it (``holder``, ``last_beat_ms``)."""
    reserved_ms: int = 0
    """Ms left of the reservation a gracefully stopped predecessor left for its users."""
    holder: str = ""
    last_beat_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Holdings:
    """What Redis says a gateway holds: its memberships and its names."""

    memberships: tuple[tuple[str, str], ...]
    """(room, lower name) pairs."""
    names: tuple[str, ...]
    """Lower names."""


@dataclass(frozen=True, slots=True)
class DmSent:
    line: bytes
    """The ``dm`` line (no newline) with the recipient's display name, for the sender's copy."""
    duplicate: bool


T = TypeVar("T")


class PublishBatch:
    """Messages and dms collected by one thread, handed to the publisher together.

    ``Broker.batch()`` makes one; ``message``/``dm`` add requests (nothing is
    sent yet), ``submit`` queues them all, in order, behind one future;
    ``Pending.result`` submits its batch if nobody did.
    """

    __slots__ = ("_calls", "_future", "_publisher")

    def __init__(self, publisher: Publisher) -> None:
        self._publisher = publisher
        self._calls: list[ScriptCall] = []
        self._future: concurrent.futures.Future[list[Any]] | None = None

    def __len__(self) -> int:
        return len(self._calls)

    def add(self, call: ScriptCall) -> int:
        if self._future is not None:
            raise RuntimeError("this batch was already submitted")
        self._calls.append(call)
        return len(self._calls) - 1

    def submit(self) -> concurrent.futures.Future[list[Any]]:
        if self._future is None:
            self._future = self._publisher.submit_all(self._calls)
        return self._future


class Pending(Generic[T]):
    """A message or dm handed to the publisher: ``result()`` waits for its outcome."""

    __slots__ = ("_batch", "_guard", "_index", "_interpret", "_what")

    def __init__(self, batch: PublishBatch, index: int, what: str,
                 guard: Callable[[str], AbstractContextManager[None]],
                 interpret: Callable[[Any], T]) -> None:
        self._batch = batch
        self._index = index
        self._what = what
        self._guard = guard
        self._interpret = interpret

    def result(self) -> T:
        """The outcome; raises ``BrokerUnavailable`` or the request's refusal."""
        try:
            outcome = self._batch.submit().result(GIVE_UP_S)[self._index]
        except concurrent.futures.TimeoutError as exc:
            raise BrokerUnavailable("the publisher did not answer") from exc
        if isinstance(outcome, Exception):
            with self._guard(self._what):  # Redis out of reach or refusing: unavailable
                raise outcome
        return self._interpret(outcome)


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


def _line(frame: ServerFrame) -> bytes:
    return encode(frame)[:-1]


def _cut(line: bytes, field: bytes) -> tuple[bytes, bytes]:
    """Cut ``line`` around the value ``~`` of ``field``: (head up to its opening quote, tail from
    its closing quote).

    The first match is the field itself: every value before it is a name or a
    room, which hold no quotes, and a ``"`` inside a JSON string is escaped.
    """
    marker = b'"' + field + b'":"~"'
    at = line.index(marker)
    return line[: at + len(marker) - 2], line[at + len(marker) - 1 :]


def _left_parts(room: str) -> tuple[bytes, bytes]:
    """The ``left`` payload of ``room`` around the display name only Redis knows."""
    head, tail = _cut(_line(Left(room, "~")), b"name")
    return payloads.event(head), tail


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Broker:
    """The gateway's Redis layer; see the module docstring."""

    def __init__(self, client: redis.Redis, gateway_id: str, *, history: int = 1000,
                 lease_ms: int = 8000, ref_ttl_ms: int = 300_000,
                 clock: Callable[[], float] = time.time,
                 deadline_clock: Callable[[], float] = time.time,
                 publish_window_ms: int | None = None, link: Link | None = None,
                 publish_retry: Retry | None = None,
                 on_batch: Callable[[int, float], None] = lambda size, seconds: None,
                 min_replicas: int = 0, room_ttl_ms: int = DEFAULT_ROOM_TTL_MS,
                 new_rooms_per_min: float = 10.0, new_rooms_burst: int = 60) -> None:
        """``clock`` times heartbeats and leases (tests move it); ``deadline_clock`` times
        deadlines, which Redis compares with its own clock, so it is the real time but in
        tests. ``publish_window_ms`` defaults to the one that fits the client's socket
        timeout, and must end before it (module docstring). ``room_ttl_ms``: how long a room
        with no member and no new message lives (0: forever); ``new_rooms_per_min`` and
        ``new_rooms_burst``: the bucket of rooms a name may create (0 a minute: no limit).

        Messages and dms go through the publisher (``gateway.redis.publisher``) on
        ``link``, by default through ``client`` itself; ``publish_retry`` re-sends a batch
        whose link failed, ``on_batch`` gets each batch's size and seconds."""
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
        self._publisher = Publisher(link or ClientLink(client), publish_retry,
                                    on_batch=on_batch, name=f"publisher-{gateway_id}",
                                    min_replicas=min_replicas, window_ms=window,
                                    wait_key=keys.gateway_wait(gateway_id))
        self.min_replicas = min_replicas
        self.endpoint: RedisEndpoint | None = None
        """How ``from_url`` reaches Redis (None for a broker built on a client)."""
        self._direct = ClientLink(client)

    @classmethod
    def from_url(cls, url: str, gateway_id: str, *, retries: int = 3,
                 backoff: AbstractBackoff | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                 health_check_interval: int = 5, pool_size: int = 64,
                 pool_wait_s: float = 10.0, min_replicas: int | None = None,
                 **kw: Any) -> Broker:
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
        broker = cls(endpoint.client, gateway_id, link=WireLink(endpoint.address, timeout_s),
                     publish_retry=retry(), min_replicas=min_replicas, **kw)
        broker.endpoint = endpoint
        return broker

    @property
    def redis(self) -> redis.Redis:
        return self._redis

    @property
    def gateway_id(self) -> str:
        return self._gateway_id

    @property
    def instance(self) -> str:
        """This process's nonce in ``chat:gw:<id>:instance``."""
        return self._instance

    @property
    def publish_window_ms(self) -> int:
        """How long after it was asked for Redis may still carry out a message or dm."""
        return self._window_ms

    def _fresh(self) -> str:
        """A name no other request of any gateway uses: an internal ref, an epoch candidate
        (32 characters, as a uuid4 in hex), without the cost of a uuid4."""
        return f"{self._names}{next(self._serial):016x}"

    def _run(self, call: ScriptCall) -> Any:
        """One script on the pooled client, from the caller's thread (all but the hot path)."""
        return self._direct.one(call)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _deadline_ms(self) -> int:
        """After this (Redis's clock) the request's script must write nothing (docs/architecture.md,
        "Deadlines")."""
        return int(self._deadline_clock() * 1000) + self._window_ms

    @staticmethod
    def _too_late(what: str) -> BrokerUnavailable:
        logger.warning("redis ran a %s after its deadline: nothing done (a stalled or slow "
                       "redis, a long wait for a connection, or redis's clock ahead of ours)",
                       what)
        return BrokerUnavailable(f"redis ran the {what} after its deadline")

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """Turn Redis being out of reach into ``BrokerUnavailable``; let our own bugs through."""
        try:
            yield
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise BrokerUnavailable(f"redis unavailable during {what}: {exc}") from exc
        except redis.ResponseError as exc:
            if isinstance(exc, _UNAVAILABLE_ERRORS) or _UNAVAILABLE_REPLY.search(str(exc)):
                raise BrokerUnavailable(f"redis refused {what}: {exc}") from exc
            raise

    # ------------------------------------------------------------------ health

    def ping(self) -> bool:
        """Whether Redis answers now; never raises."""
        try:
            return bool(self._redis.ping())
        except redis.RedisError as exc:
            logger.debug("ping failed: %s", exc)
            return False

    def heartbeat(self) -> bool:
        """Mark this gateway alive for another lease.

        Returns True when the gateway was not registered: its first beat, or
        (later) a sign that a peer reaped it as dead meanwhile, so its names and
        memberships in Redis are gone. Callers that only beat may ignore it.
        The first beat after an outage opens the grace (``lua/liveness.lua``). Renews this
        process's instance key; logs an error when another process holds it (a second
        gateway with our id, started while we were paused for more than a lease).
        """
        with self._guard("heartbeat"):
            reply = scripts.HeartbeatReply.read(self._run(scripts.Heartbeat(
                keys.GATEWAYS, keys.GRACE, keys.PULSE, keys.gateway_instance(self._gateway_id),
                me=self._gateway_id, now_ms=self._now_ms(), lease_ms=self._lease_ms,
                nonce=self._instance).call()))
        added = reply.added
        if reply.other_instance:
            logger.error("event=gateway_id_taken gateway=%s other_instance=%s hint='another "
                         "process runs with this --id (started while this one was paused for "
                         "more than a lease): stop one of them'", self._gateway_id,
                         reply.other_instance)
        return bool(added)

    def claim_instance(self, *, force: bool = False) -> InstanceClaim:
        """Take this gateway's id for this process, unless another process holds it (its
        instance key is younger than a lease); ``force`` takes it anyway (the holder was
        found dead). Reports the reservation a gracefully stopped predecessor left."""
        with self._guard("claim instance"):
            reply = scripts.ClaimInstanceReply.read(self._run(scripts.ClaimInstance(
                keys.gateway_instance(self._gateway_id), keys.GATEWAYS, me=self._gateway_id,
                nonce=self._instance, lease_ms=self._lease_ms, force=int(force)).call()))
        return InstanceClaim(reply.ours, reply.reserved_ms, reply.holder, reply.last_beat_ms)

    def last_heartbeat_ms(self) -> int | None:
        """This id's last heartbeat in ``chat:gateways`` (whichever process wrote it)."""
        with self._guard("read heartbeat"):
            score = self._redis.zscore(keys.GATEWAYS, self._gateway_id)
        return None if score is None else int(score)

    def retire(self) -> None:
        """Graceful shutdown: beat once more and mark the id stopped, leaving every name and
        membership in place: reserved for its token holder for one lease, then reaped by a
        peer like a dead gateway's. Best effort: logs, never raises."""
        try:
            with self._guard("retire"):
                done = self._run(scripts.Retire(
                    keys.GATEWAYS, keys.GRACE, keys.PULSE,
                    keys.gateway_instance(self._gateway_id), me=self._gateway_id,
                    now_ms=self._now_ms(), lease_ms=self._lease_ms,
                    nonce=self._instance).call())
            if not done:
                logger.error("event=retire_skipped gateway=%s reason='another process holds "
                             "this id'", self._gateway_id)
        except BrokerUnavailable as exc:
            logger.warning("could not retire this gateway: %s", exc)
        except redis.RedisError:
            logger.exception("could not retire this gateway")

    def publish_probe(self, nonce: str) -> None:
        """Send ``P<nonce>`` to our own channel: the subscriber proves it still hears it."""
        with self._guard("probe"):
            self._redis.publish(keys.gateway_channel(self._gateway_id),
                                payloads.probe(nonce))

    def start(self) -> None:
        """Start the publisher's thread (a gateway does at start, so its thread count is
        steady from then on; a broker used alone starts it at its first message)."""
        self._publisher.start()

    def close(self) -> None:
        """Stop the publisher (after writing what it holds) and close every connection."""
        self._publisher.stop()
        self._redis.close()

    # ------------------------------------------------------------------ rooms

    def publish_message(self, room: str, name: str, text: str, ts: float,
                        ref: str | None) -> Published:
        """Give the message the room's next id, store it, publish it: one atomic script.

        A ref seen from this user in this room within ``ref_ttl_ms`` makes it a
        duplicate: nothing is stored or published and the first id comes back.
        """
        return self.submit_message(room, name, text, ts, ref).result()

    def batch(self) -> PublishBatch:
        """Collect messages and dms to hand to the publisher together (``submit_message``,
        ``submit_dm`` with ``batch=``): one queue entry, one future, one wake-up."""
        return PublishBatch(self._publisher)

    def submit_message(self, room: str, name: str, text: str, ts: float, ref: str | None,
                       batch: PublishBatch | None = None) -> Pending[Published]:
        """``publish_message`` without waiting: the request joins ``batch`` (submitted by
        its owner), or alone the publisher's next batch at once. Requests of one thread
        reach Redis in the order they were submitted."""
        prefix, suffix = message_parts(room, name, text, ts)
        internal = ref is None
        ref_key = keys.room_ref(room, name, f"~{self._fresh()}" if internal else str(ref))
        call = scripts.PublishMessage(
            keys.room_seq(room), keys.room_epoch(room), keys.room_log(room), ref_key,
            keys.room_members(room),
            epoch_candidate=self._fresh(), line_prefix=prefix, line_suffix=suffix,
            history=self._history, channel=keys.room_channel(room),
            ref_ttl_ms=INTERNAL_REF_TTL_MS if internal else self._ref_ttl_ms,
            room_ttl_ms=self._room_ttl_ms, message_tag=payloads.MESSAGE,
            deadline_ms=self._deadline_ms()).call()

        def published(raw: Any) -> Published:
            reply = scripts.PublishReply.read(raw)
            if reply.outcome == "too_late":
                raise self._too_late("publish")
            # an internal ref only meets itself when its batch was sent again: one publication
            return Published(reply.id, reply.epoch, reply.outcome == "repeat" and not internal)

        return self._pending(batch, call, "publish", published)

    def _pending(self, batch: PublishBatch | None, call: ScriptCall, what: str,
                 interpret: Callable[[Any], T]) -> Pending[T]:
        alone = batch is None
        if batch is None:
            batch = PublishBatch(self._publisher)
        pending = Pending(batch, batch.add(call), what, self._guard, interpret)
        if alone:
            batch.submit()
        return pending

    def read_history(self, room: str, *, after: int | None = None, before: int | None = None,
                     limit: int = 50) -> HistoryBatch:
        """Retained messages of a room, creating its epoch if the room is new.

        With ``after``: every retained message with a larger id (for resume).
        Otherwise the newest ``limit`` with an id below ``before`` (scroll-back).
        """
        ident: int | None
        if after is not None:
            mode, ident = b"a", max(after, 0)
        else:
            if limit < 1:
                raise ValueError("limit must be positive")
            mode, ident = b"b", before
        with self._guard("history"):
            reply = scripts.HistoryReply.read(self._run(scripts.ReadHistory(
                keys.room_seq(room), keys.room_epoch(room), keys.room_log(room),
                keys.room_members(room), epoch_candidate=self._fresh(), mode=mode,
                id="" if ident is None else ident, limit=limit,
                room_ttl_ms=self._room_ttl_ms).call()))
        return HistoryBatch(room, reply.epoch, reply.last_id, reply.lines, reply.first_id,
                            reply.complete)

    def renew_epoch(self, room: str, rolled_back: str) -> str:
        """Start a new epoch for a room whose ids went backwards under ``rolled_back``.

        Redis that lost its last writes (a crash with AOF ``everysec``) hands out
        ids again that clients already hold: without a new epoch they would drop
        the new messages as duplicates. Idempotent across gateways.
        """
        with self._guard("renew epoch"):
            epoch = self._run(scripts.RenewEpoch(
                keys.room_epoch(room), keys.room_seq(room), keys.room_log(room),
                keys.room_members(room), rolled_back, self._fresh(), self._room_ttl_ms).call())
        return _text(epoch)

    def join(self, room: str, name: str, *, limited: bool = True) -> bool:
        """Record ``name`` as present in ``room`` through this gateway.

        Returns True, after publishing ``joined``, when the name was not present
        (absent, or held by a dead gateway); a name already present through a
        live gateway (a takeover in progress) just moves here, silently.
        ``limited``: a room that does not exist (new, or expired) takes a token of
        the name's bucket of new rooms; an empty bucket raises ``rate_limited`` and
        nothing is written. Presence put back by the gateway itself is not limited.
        """
        lower = name_key(name)
        with self._guard("join"):
            outcome = _text(self._run(scripts.Join(
                keys.room_members(room), keys.GATEWAYS, keys.gateway_members(self._gateway_id),
                keys.GRACE, keys.PULSE, keys.user_rooms(name), keys.room_seq(room),
                keys.room_epoch(room), keys.room_log(room), keys.user_new_rooms(name),
                lower=lower, member_value=f"{self._gateway_id}|{name}", me=self._gateway_id,
                now_ms=self._now_ms(), lease_ms=self._lease_ms, channel=keys.room_channel(room),
                joined_payload=payloads.event(_line(Joined(room, name))),
                membership=keys.membership(room, name), room=room,
                room_ttl_ms=self._room_ttl_ms,
                new_rooms_per_min=repr(self._new_rooms_per_min) if limited else 0,
                new_rooms_burst=self._new_rooms_burst).call()))
        if outcome == "too_many_rooms":
            raise ProtocolError(
                ErrorCode.RATE_LIMITED,
                f"too many new rooms: a user may create {self._new_rooms_burst} at once and "
                f"{self._new_rooms_per_min:g} a minute; join an existing room or wait")
        newly = outcome == "joined"
        return bool(newly)

    def leave(self, room: str, name: str) -> bool:
        """Remove ``name`` from ``room`` if this gateway holds it there, publishing ``left``.

        The ``left`` line carries the display name stored at join time.
        """
        prefix, suffix = _left_parts(room)
        with self._guard("leave"):
            removed = self._run(scripts.Leave(
                keys.room_members(room), keys.gateway_members(self._gateway_id),
                keys.user_rooms(name), keys.room_seq(room), keys.room_epoch(room),
                keys.room_log(room),
                lower=name_key(name), me=self._gateway_id, channel=keys.room_channel(room),
                left_prefix=prefix, left_suffix=suffix, membership=keys.membership(room, name),
                room=room, room_ttl_ms=self._room_ttl_ms).call())
        return bool(removed)

    def who(self, room: str) -> list[str]:
        """Display names present in ``room`` through live gateways.

        Sorted case-insensitively (ties by code point), as names are unique
        case-insensitively.
        """
        with self._guard("who"):
            values = self._run(scripts.Who(keys.room_members(room), keys.GATEWAYS, keys.GRACE,
                                           keys.PULSE, self._now_ms(), self._lease_ms).call())
        names = [_text(value).rpartition("|")[2] for value in values]
        return sorted(names, key=lambda n: (n.lower(), n))

    def publish_typing(self, room: str, name: str) -> None:
        """Tell the room's other members that ``name`` is typing (not stored)."""
        payload = payloads.typing(name_key(name), _line(TypingNotice(room, name)))
        with self._guard("typing"):
            self._redis.publish(keys.room_channel(room), payload)

    # ------------------------------------------------------------------ names

    def claim_name(self, name: str, session_id: str, token: str | None, *,
                   owner: bool = False) -> NameClaim:
        """Make ``name`` this session's, cluster-wide, or raise ``name_taken``.

        Free when nobody holds it or its holder's gateway is dead; held by a live
        gateway, it is taken over only with the token of the last claim (the
        old session is told with ``K`` on its gateway's channel). Every claim
        issues a fresh token. Also heartbeats, so a new gateway counts as alive.

        With the token, the name's room memberships come along (``NameClaim.rooms``):
        the script needs their keys, so the holder and its rooms are read first;
        should they change in between, what changed is left to the old gateway's
        cleanup (``left``, then this session's ``joined``).

        A name with an account (``gateway.account_keys.account``, checked in the same
        script) goes only to its ``owner`` (the caller checked the password: it takes
        the name from any live session, as a token does) or to a token of an owner's
        claim; anyone else gets ``name_taken``, whether the name is held or not.
        """
        fresh = secrets.token_urlsafe(16)
        presented = "*" if owner else ("" if token is None else token_hash(token))
        with self._guard("claim"):
            wants_rooms = owner or token is not None
            holder, rooms = self._holder_and_rooms(name) if wants_rooms else ("", [])
            reply = self._claim(name, session_id, token_hash(fresh), presented, holder, rooms)
        if not reply.claimed:
            raise ProtocolError(ErrorCode.NAME_TAKEN, f"the name {name!r} is in use")
        return NameClaim(name, fresh, reply.replaced_session or None, reply.rooms,
                         reply.account)

    def _holder_and_rooms(self, name: str) -> tuple[str, list[str]]:
        """The gateway holding ``name`` and the rooms of its memberships, as Redis has them now."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.hget(keys.user(name), "gw")
        pipe.smembers(keys.user_rooms(name))
        holder, rooms = pipe.execute()
        return ("" if holder is None else _text(holder)), sorted(_text(r) for r in rooms)

    def _claim(self, name: str, session_id: str, new_hash: str, presented_hash: str,
               holder: str, rooms: Sequence[str]) -> scripts.ClaimReply:
        return scripts.ClaimReply.read(self._run(scripts.ClaimName(
            keys.user(name), keys.GATEWAYS, keys.gateway_names(self._gateway_id), keys.GRACE,
            keys.PULSE, keys.gateway_members(self._gateway_id), keys.user_rooms(name),
            keys.gateway_members(holder or self._gateway_id),
            display=name, session=session_id, new_hash=new_hash, presented_hash=presented_hash,
            me=self._gateway_id, now_ms=self._now_ms(), lease_ms=self._lease_ms,
            lower=name_key(name), gateway_prefix=keys.GATEWAY_PREFIX, holder_seen=holder,
            kick_tag=payloads.KICK,
            rooms=tuple(scripts.RoomOfName(keys.room_members(r), r) for r in rooms),
            account_key=account_keys.account(name)).call()))

    def restore_name(self, name: str, session_id: str, held_token_hash: str, *,
                     owner: bool = False) -> bool:
        """Put back a live session's name record after Redis lost it (restart, reaping).

        Keeps the token the client already holds; never takes the name from
        another live holder (returns False: the session lost its name). ``owner``:
        the session is logged in to the name's account.
        """
        with self._guard("restore"):
            reply = self._claim(name, session_id, held_token_hash, "+" if owner else "", "",
                                ())
        return reply.claimed

    def release_name(self, name: str, session_id: str) -> bool:
        """Free ``name`` if ``session_id`` still holds it (not if it was taken over); an empty
        ``session_id``: whichever session of this gateway holds it (an orphan). True when
        the record was deleted."""
        with self._guard("release"):
            return bool(self._run(scripts.ReleaseName(
                keys.user(name), keys.gateway_names(self._gateway_id), session_id,
                self._gateway_id, name_key(name)).call()))

    def send_dm(self, sender: str, to: str, text: str, ts: float, ref: str | None) -> DmSent:
        """Publish a dm to the gateway holding ``to``, or raise ``no_such_user``.

        A ref seen from ``sender`` within ``ref_ttl_ms`` makes it a duplicate:
        nothing is published (even if ``to`` has gone since).
        """
        return self.submit_dm(sender, to, text, ts, ref).result()

    def submit_dm(self, sender: str, to: str, text: str, ts: float, ref: str | None,
                  batch: PublishBatch | None = None) -> Pending[DmSent]:
        """``send_dm`` without waiting, as ``submit_message``."""
        prefix, suffix = _cut(_line(DirectMessage(sender, "~", text, ts)), b"to")
        internal = ref is None
        ref_key = keys.user_ref(sender, f"~{self._fresh()}" if internal else str(ref))
        call = scripts.SendDm(
            keys.user(to), keys.GATEWAYS, ref_key, keys.GRACE, keys.PULSE,
            now_ms=self._now_ms(), lease_ms=self._lease_ms, line_prefix=prefix,
            line_suffix=suffix, lower_to=name_key(to),
            ref_ttl_ms=INTERNAL_REF_TTL_MS if internal else self._ref_ttl_ms,
            gateway_prefix=keys.GATEWAY_PREFIX, to_as_given=to, dm_tag=payloads.DM,
            deadline_ms=self._deadline_ms()).call()

        def sent(raw: Any) -> DmSent:
            reply = scripts.DmReply.read(raw)
            if reply.outcome == "too_late":
                raise self._too_late("dm")
            if reply.outcome == "no_such_user":
                raise ProtocolError(ErrorCode.NO_SUCH_USER, f"no user {to!r} is connected")
            return DmSent(reply.line, reply.outcome == "repeat" and not internal)

        return self._pending(batch, call, "dm", sent)

    # ------------------------------------------------------------------ gateways

    def reap_dead(self) -> list[str]:
        """Clean up after every gateway that is not alive; returns the ids reaped.

        Alive is ``lua/liveness.lua``'s rule, so nobody is reaped during a grace.
        A lock per dead gateway makes one live gateway do it; its rooms see
        ``left`` for each membership it held, and its names become free records.
        A gateway that heartbeats again meanwhile is left alone.
        """
        with self._guard("reap"):
            expired = cast(list[bytes], self._run(scripts.DeadGateways(
                keys.GATEWAYS, keys.GRACE, keys.PULSE, self._now_ms(), self._lease_ms).call()))
            dead = [_text(gw) for gw in expired]
            reaped = []
            for gw in dead:
                if gw == self._gateway_id:
                    continue
                if not self._redis.set(keys.gateway_reaper(gw), self._gateway_id, nx=True,
                                       px=self._lease_ms):
                    continue
                if self._drop_gateway(gw, force=False):
                    logger.info("reaped dead gateway %s", gw)
                    reaped.append(gw)
        return reaped

    def holdings(self) -> Holdings:
        """What Redis says this gateway holds (``chat:gw:<id>:members`` and ``:names``)."""
        with self._guard("holdings"):
            pipe = self._redis.pipeline(transaction=False)
            pipe.hkeys(keys.gateway_members(self._gateway_id))
            pipe.smembers(keys.gateway_names(self._gateway_id))
            fields, names = pipe.execute()
        memberships = []
        for raw in fields:
            try:
                memberships.append(keys.parse_membership(_text(raw)))
            except ValueError:
                logger.warning("ignoring malformed membership %r", raw)
        return Holdings(tuple(sorted(memberships)), tuple(sorted(_text(n) for n in names)))

    def release_gateway(self) -> None:
        """Graceful shutdown: leave every room (publishing ``left``), free every name,
        and stop counting as a gateway. Best effort: logs, never raises."""
        try:
            with self._guard("release gateway"):
                self._drop_gateway(self._gateway_id, force=True)
        except BrokerUnavailable as exc:
            logger.warning("could not release this gateway's state: %s", exc)
        except redis.RedisError:
            logger.exception("could not release this gateway's state")

    def _drop_gateway(self, gw: str, *, force: bool) -> bool:
        """Drop a gateway's memberships and names in chunks; False if it came back to life."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.hkeys(keys.gateway_members(gw))
        pipe.smembers(keys.gateway_names(gw))
        fields, names = pipe.execute()
        memberships = []
        for raw in fields:
            try:
                memberships.append(keys.parse_membership(_text(raw)))
            except ValueError:
                logger.warning("ignoring malformed membership %r of gateway %s", raw, gw)
        lowers = sorted(_text(n) for n in names)
        chunks = max(1, -(-len(memberships) // REAP_CHUNK), -(-len(lowers) // REAP_CHUNK))
        for i in range(chunks):
            part_m = memberships[i * REAP_CHUNK:(i + 1) * REAP_CHUNK]
            part_n = lowers[i * REAP_CHUNK:(i + 1) * REAP_CHUNK]
            if not self._reap_chunk(gw, part_m, part_n, force=force, final=i == chunks - 1):
                return False
        return True

    def _reap_chunk(self, gw: str, memberships: Sequence[tuple[str, str]],
                    lowers: Sequence[str], *, force: bool, final: bool) -> bool:
        """One chunk of a gateway's state dropped; False when the gateway was alive after all."""
        reply = scripts.ReapReply.read(self._run(scripts.Reap(
            keys.GATEWAYS, keys.GRACE, keys.PULSE, keys.gateway_members(gw),
            keys.gateway_names(gw), keys.gateway_reaper(gw),
            gw=gw, now_ms=self._now_ms(), lease_ms=self._lease_ms, force=force, final=final,
            me=self._gateway_id, room_ttl_ms=self._room_ttl_ms,
            memberships=tuple(scripts.ReapMembership(
                keys.room_members(room), keys.user_rooms(lower), keys.room_seq(room),
                keys.room_epoch(room), keys.room_log(room), lower,
                keys.membership(room, lower), keys.room_channel(room), *_left_parts(room), room)
                for room, lower in memberships),
            names=tuple(scripts.ReapName(keys.user(lower), lower) for lower in lowers)).call()))
        return not reply.alive


__all__ = [
    "Broker",
    "BrokerUnavailable",
    "DEFAULT_ROOM_TTL_MS",
    "DmSent",
    "HistoryBatch",
    "Holdings",
    "InstanceClaim",
    "NameClaim",
    "Pending",
    "PublishBatch",
    "Published",
    "token_hash",
    "window_for_timeout",
]
