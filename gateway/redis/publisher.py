"""Group commit: every ``send`` and ``dm`` of a gateway reaches Redis through one link.

A session thread no longer talks to Redis for a message on its own: ``Broker``
hands the script calls of a read to the ``Publisher`` together (``run_all``:
one queue entry) and waits on one ``concurrent.futures.Future`` for all of
them. The thread writing (below) takes every request queued at that moment, writes them
as one pipelined batch on a link of its own (``WireLink``: hand-packed RESP,
hiredis replies) and completes each future from the replies, in order. So a
batch costs one round trip and one pair of system calls however many requests
it holds, and requests that arrive during a round trip make the next batch.

Each request keeps its own outcome: a script that fails (a Redis error reply)
fails only its own future. When the link is lost, the requests whose replies
did arrive are completed and the rest are written again on a fresh connection,
as redis-py's ``Retry`` does for one command (the same ``Retry``/backoff
objects drive it; tests inject a backoff that never sleeps). That is safe
because every script the publisher runs carries a dedup key and a deadline
(docs/architecture.md, "Deadlines"): a second run of a script that did
run is a repeat, one that reaches Redis after its deadline writes nothing.
When the retries run out, a request that was never written fails with the
connection error, which the broker answers ``unavailable``: it was not
carried out. A request that was written and whose reply was lost is *in
doubt*: its script may have run. It is not answered ``unavailable`` (which
promises "not carried out") while Redis may still come back: it is set aside
("parked") and sent again, with backoff, until Redis answers it or
``settle_s`` (``SETTLE_S``) has passed since it was first in doubt. Redis's
answer to that resend is authoritative: ``repeat`` (it ran: its id),
``too_late`` (it never ran and never will) or a first run within its
deadline. Parked requests hold no lock and not the link: other batches are
written (or fail) meanwhile as usual, and the publisher's thread writes the
parked ones, oldest first, ahead of whatever is queued when their backoff is
over. Only a request still unanswered after ``settle_s`` fails (the one
escape left, docs/reliability.md, "Known limits"). A session waits for
all its requests before it submits more, so parking one of them reorders
nothing of that session's; the rest of a parked request's group is parked
with it. With ``min_replicas`` each
batch ends with ``WAIT`` (``Wait``): its requests count only once that many
replicas have them.

A caller about to wait for its outcome anyway (``run_all``) that finds the link
idle writes the batch itself, with whatever was queued before it: at a moderate
rate almost every batch is one request, and handing it to the publisher's thread
and back cost two thread wake-ups on the way of every message, each a wait for a
core on a busy machine (docs/benchmarks.md, "the fan-out path"). What queues
while a caller writes is handed to the publisher's thread when it is done, so a
session never writes other sessions' batches for long, and batching under load
is as before.

Threads: ``submit`` is called by any thread. One thread at a time touches the
link: the one that set ``_busy`` (the publisher's thread, or a ``run_all``
caller); it writes every queued request older than its own, oldest first, so
the requests of one thread reach Redis in the order they were submitted.
``Publisher._lock`` guards ``_busy``, the queue, the parked requests and starting
and stopping (never held across I/O, nor across a pause before a resend);
``_wake`` (a condition on it) wakes the publisher's thread, with a timeout when
parked requests are due.
"""

from __future__ import annotations

import logging
import select
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol, cast

import hiredis
import redis
from redis.backoff import AbstractBackoff, ExponentialBackoff, NoBackoff
from redis.retry import Retry

from gateway.redis.scripts import Script, ScriptCall
from gateway.redis.wire import RedisAddress, RedisWire, RedisWireError

log = logging.getLogger(__name__)

MAX_BATCH = 1024
"""Requests written in one round trip at most; the rest make the next batch."""

SETTLE_S = 10.0
"""How long a request in doubt (written, its reply lost) is sent again before it is answered
``unavailable``: long enough for a Redis restart or a short outage, short enough that a
waiting client is not left hanging (it waits for its ``ack`` that much longer)."""

SETTLE_BACKOFF = ExponentialBackoff(cap=0.5, base=0.05)
"""The pause before each resend of parked requests (each resend has the retries of any
batch too): at most 0.5 s, so a Redis back again is noticed within about that."""

_GIVE_UP_S = 120.0
"""How long a ``run_all`` caller waits for the link at most (``pending.GIVE_UP_S``: only a
bug could hold it that long)."""


class BatchLost(redis.ConnectionError):
    """The link failed during a batch; ``received`` are the replies that came first.

    A ``redis.ConnectionError``, so redis-py's ``Retry`` retries it. ``written``: the
    calls past ``received`` may have reached Redis (they are in doubt); False only when
    the link failed before a byte of them was sent (connecting), so they did not run.
    """

    def __init__(self, received: list[Any], cause: BaseException, *,
                 written: bool = True) -> None:
        super().__init__(f"redis link lost: {cause!r}")
        self.received = received
        self.written = written


class Link(Protocol):
    """Where a batch goes: one reply per call, in order, each the script's reply or the
    ``redis.ResponseError`` it raised; ``BatchLost`` when the connection fails."""

    def run(self, calls: Sequence[ScriptCall], wait: Wait | None = None) -> list[Any]: ...

    def connect(self) -> None:
        """Open the connection now, if it is not open; raises what opening it raises."""

    def close(self) -> None: ...


def pack_call(call: ScriptCall, *, by_text: bool = False) -> bytes:
    """``EVALSHA sha numkeys keys... args...`` (or ``EVAL`` with the text) in RESP."""
    head = (b"EVAL", call.script.source) if by_text else (b"EVALSHA", call.script.sha)
    # hiredis's stub types its argument as a 1-tuple; any tuple of them is what it packs
    packed: bytes = hiredis.pack_command(cast(Any, (*head, len(call.keys), *call.keys,
                                                    *call.args)))
    return packed


def _no_script(reply: Any) -> bool:
    return isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT")


def _value(reply: Any) -> Any:
    """A hiredis reply as redis-py gives it: an error reply becomes a ``ResponseError``."""
    return redis.ResponseError(str(reply)) if isinstance(reply, hiredis.ReplyError) else reply


@dataclass(frozen=True, slots=True)
class Wait:
    """``WAIT replicas timeout`` after a batch: its writes count only once on ``replicas``
    replicas. ``key`` (one of this gateway's) is written first, so that the connection's
    replication offset covers a batch of repeats too (a script that writes nothing leaves it
    behind, and a fresh connection's is 0)."""

    replicas: int
    timeout_ms: int
    key: str

    def commands(self) -> bytes:
        packed: bytes = (
            hiredis.pack_command(cast(Any, (b"SET", self.key, b"1", b"PX", b"60000")))
            + hiredis.pack_command(cast(Any, (b"WAIT", self.replicas, max(1, self.timeout_ms)))))
        return packed


class WireLink:
    """The publisher's own connection: RESP packed by hand, replies parsed by hiredis.

    Connects when the publisher's thread starts (``connect``) and again at the next
    batch after a loss, to ``address`` (a callable is asked at every connect: under
    Sentinel it finds the current primary); its socket
    timeout bounds every round trip. A ``READONLY`` reply (the primary was
    demoted) drops the connection, so the next batch finds the new one.
    """

    def __init__(self, address: RedisAddress | Callable[[], RedisAddress],
                 timeout: float) -> None:
        self._address = address
        self._timeout = timeout
        self._wire: RedisWire | None = None
        self._poll = select.poll()

    def _connected(self) -> RedisWire:
        if self._wire is None:
            address = self._address if isinstance(self._address, RedisAddress) \
                else self._address()
            self._wire = RedisWire(address, timeout=self._timeout)
            self._poll = select.poll()
            self._poll.register(self._wire.fileno(), select.POLLIN)
        return self._wire

    def _closed_by_peer(self) -> bool:
        """The idle connection has something to read before anything was written on it:
        Redis closed it (a restart, a kill, ``CLIENT KILL``), so what is written now can
        never run there, and a failure is no doubt (one ``poll``, no wait).

        Readable is not yet closed under TLS: a TLS 1.3 server sends its session tickets
        after the handshake, records with no data for us. A non-blocking read takes them
        (``SSLWantReadError``: nothing more, the link is fine); an end of stream, or
        bytes Redis never sends unasked, mean the link is no use."""
        if not self._poll.poll(0):
            return False
        assert self._wire is not None
        sock = self._wire.sock
        try:
            sock.setblocking(False)
            try:
                sock.recv(1)
            finally:
                sock.settimeout(self._timeout)
        except (ssl.SSLWantReadError, BlockingIOError):
            return False
        except OSError:
            return True
        return True

    def connect(self) -> None:
        self._connected()

    def run(self, calls: Sequence[ScriptCall], wait: Wait | None = None) -> list[Any]:
        replies: list[Any] = []
        missing: list[int] = []
        acked = 0
        tail = wait.commands() if wait is not None else b""
        written = False
        try:
            wire = self._connected()
            if self._closed_by_peer():
                raise RedisWireError("Redis closed the idle connection")
            written = True  # from here on any byte may have reached Redis
            wire.send(b"".join([pack_call(call) for call in calls]) + tail)
            wire.read_into(replies, len(calls))
            acked = _read_wait(wire, wait)
            missing = [i for i, reply in enumerate(replies) if _no_script(reply)]
            if missing:  # SCRIPT FLUSH or a restarted Redis: those did not run, send the text
                wire.send(b"".join([pack_call(calls[i], by_text=True) for i in missing]) + tail)
                again: list[Any] = []
                wire.read_into(again, len(missing))
                acked = _read_wait(wire, wait)
                for i, reply in zip(missing, again, strict=True):
                    replies[i] = reply
        except OSError as exc:
            self.close()
            # under WAIT nothing counts before its reply; else what came before the loss
            settled = [] if wait is not None else replies[:missing[0]] if missing else replies
            raise BatchLost([_value(r) for r in settled], exc, written=written) from exc
        values = [_value(r) for r in replies]
        if any(isinstance(v, redis.ResponseError) and str(v).startswith("READONLY")
               for v in values):
            self.close()
        return short_of_replicas(values, wait, acked)

    def close(self) -> None:
        if self._wire is not None:
            self._wire.close()
            self._wire = None


def short_of_replicas(values: list[Any], wait: Wait | None, acked: int) -> list[Any]:
    """A batch's replies, each success turned into ``NOREPLICAS`` when its ``WAIT`` saw
    fewer replicas than asked: those writes count only once replicas have them."""
    if wait is None or acked >= wait.replicas:
        return values
    short = redis.ResponseError(
        f"NOREPLICAS {acked} of {wait.replicas} replicas acknowledged the batch "
        f"within {wait.timeout_ms} ms")
    return [v if isinstance(v, Exception) else short for v in values]


def _read_wait(wire: RedisWire, wait: Wait | None) -> int:
    """The replies of ``Wait.commands``: how many replicas acknowledged (0 on an error)."""
    if wait is None:
        return 0
    replies: list[Any] = []
    wire.read_into(replies, 2)
    return replies[1] if isinstance(replies[1], int) else 0


read_wait = _read_wait
reply_value = _value
"""For the cluster's links (``gateway.redis.router``), which read replies the same way."""


class ClientLink:
    """A batch through a redis-py client, one script call after another.

    For a broker built on a client rather than a URL (tests, on fakeredis):
    the client's own retries apply, so the publisher adds none.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    def run(self, calls: Sequence[ScriptCall], wait: Wait | None = None) -> list[Any]:
        replies: list[Any] = []
        for call in calls:
            try:
                replies.append(self.one(call))
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                raise BatchLost(replies, exc) from exc
            except redis.ResponseError as exc:
                replies.append(exc)
        if wait is not None:
            try:
                self._client.set(wait.key, b"1", px=60_000)
                acked = int(self._client.execute_command(  # type: ignore[no-untyped-call]
                    "WAIT", wait.replicas, max(1, wait.timeout_ms)))
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                raise BatchLost([], exc) from exc
            if acked < wait.replicas:
                short = redis.ResponseError(f"NOREPLICAS {acked} of {wait.replicas} replicas")
                replies = [r if isinstance(r, Exception) else short for r in replies]
        return replies

    def one(self, call: ScriptCall) -> Any:
        """Run one script on the client; its errors are raised."""
        sha = call.script.sha.decode()
        try:
            return self._client.evalsha(sha, len(call.keys), *call.keys, *call.args)
        except redis.exceptions.NoScriptError:  # load it and try again, as redis-py's Script
            self._client.script_load(call.script.source)
            return self._client.evalsha(sha, len(call.keys), *call.keys, *call.args)

    def connect(self) -> None:
        """The client's pool connects on its own."""

    def close(self) -> None:
        """The client belongs to the broker, which closes it."""


class _Group:
    """Calls submitted together, answered together: one future for all of them.

    Touched by the publisher's thread only once queued.
    """

    __slots__ = ("calls", "future", "outcomes", "remaining", "single", "submitted", "until",
                 "waits")

    def __init__(self, calls: Sequence[ScriptCall], single: bool) -> None:
        self.calls = calls
        self.future: Future[Any] = Future()
        self.outcomes: list[Any] = [None] * len(calls)
        self.remaining = len(calls)
        self.single = single
        self.submitted = time.monotonic()
        self.waits = False
        """Its caller waits in ``run_all`` and writes it when the link comes free."""
        self.until = [0.0] * len(calls)
        """Per call: 0 while it is not in doubt, else until when (monotonic) it is sent again."""

    def settle(self, index: int, outcome: Any) -> None:
        self.outcomes[index] = outcome
        self.remaining -= 1
        if not self.remaining:
            complete(self.future, self.single, self.outcomes)


def complete(future: Future[Any], single: bool, outcomes: list[Any]) -> None:
    """Answer a submission once every call has its outcome: the list (``submit_all``), or
    the one call's reply or error (``submit``)."""
    if not single:
        future.set_result(outcomes)
    elif isinstance(outcomes[0], BaseException):
        future.set_exception(outcomes[0])
    else:
        future.set_result(outcomes[0])


_Slot = tuple[_Group, int]


class Submitter(Protocol):
    """What the broker hands its messages and dms to: a ``Publisher`` (one Redis), or a
    ``gateway.redis.router.ShardRouter`` (a publisher per master of a cluster)."""

    def start(self) -> None: ...

    def submit(self, call: ScriptCall) -> Future[Any]: ...

    def submit_all(self, calls: Sequence[ScriptCall]) -> Future[list[Any]]: ...

    def run_all(self, calls: Sequence[ScriptCall]) -> Future[list[Any]]: ...

    def stop(self) -> None: ...


class PublisherStopped(redis.ConnectionError):
    """The gateway is shutting down: the request was never written."""


class Publisher:
    """One thread writing queued script calls in batches; see the module docstring."""

    def __init__(self, link: Link, retry: Retry | None = None, *,
                 on_batch: Callable[[int, float], None] = lambda size, seconds: None,
                 max_batch: int = MAX_BATCH, name: str = "publisher", min_replicas: int = 0,
                 window_ms: int = 1500, wait_key: str = "", settle_s: float = 0.0,
                 settle_backoff: AbstractBackoff = SETTLE_BACKOFF) -> None:
        """``retry`` re-sends a batch whose link failed (default: never); ``on_batch`` gets
        each batch's size and round-trip seconds (metrics, once per batch).

        ``settle_s`` > 0: a request in doubt once the retries ran out is parked and sent
        again after each ``settle_backoff`` pause, for up to ``settle_s`` (module docstring;
        the broker passes ``SETTLE_S``); 0: it fails with the others, as one never written.

        ``min_replicas`` > 0: each batch ends with ``WAIT`` (``Wait``, on ``wait_key``),
        for as long as the oldest request of the batch has left of its ``window_ms``; a
        batch fewer replicas acknowledged fails with ``NOREPLICAS`` (``unavailable``)."""
        self._link = link
        self._min_replicas = min_replicas
        self._window_ms = window_ms
        self._wait_key = wait_key
        self._retry = retry or Retry(NoBackoff(), 0)
        self._on_batch = on_batch
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queue: deque[_Group | None] = deque()
        """Groups waiting for the link, oldest first; None asks the thread to stop."""
        self._busy = False
        """A thread is writing to the link (see the module docstring)."""
        self._turn = threading.Condition(self._lock)
        """Wakes ``run_all`` callers when the link comes free (their batch may be written)."""
        self._callers = 0
        """``run_all`` callers waiting for their batch."""
        self._settle_s = settle_s
        self._settle_backoff = settle_backoff
        self._parked: list[_Slot] = []
        """Requests in doubt waiting to be sent again, oldest first (module docstring)."""
        self._parked_due = 0.0
        """When (monotonic) the parked requests are sent again."""
        self._parked_rounds = 0
        """Resends of parked requests in a row that left some parked (their backoff)."""
        self._stopped = False
        # A daemon only so that a broker nobody closed (a test) cannot keep the
        # interpreter alive; ``stop()`` ends and joins it.
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        """Start the thread now (else the first submission starts it); idempotent."""
        with self._lock:
            if self._thread.ident is None and not self._stopped:
                self._thread.start()

    def submit(self, call: ScriptCall) -> Future[Any]:
        """Queue ``call`` for the next batch; the future gets its reply or its error."""
        return self._queue_group(_Group((call,), single=True))

    def submit_all(self, calls: Sequence[ScriptCall]) -> Future[list[Any]]:
        """Queue ``calls``, in order, for the next batch: one future whose result lists each
        call's reply or the error it failed with (an exception instance), in order."""
        return self._queue_group(_Group(calls, single=False))

    def run_all(self, calls: Sequence[ScriptCall]) -> Future[list[Any]]:
        """``submit_all`` for a caller that waits for the outcome at once, written from this
        thread when the link is free (after what was queued before it; ``_write_own``):
        returns once the calls were written, their future done."""
        return self._queue_group(_Group(calls, single=False), inline=True)

    def _queue_group(self, group: _Group, inline: bool = False) -> Future[Any]:
        if not group.calls:
            group.future.set_result([])
            return group.future
        with self._lock:
            if self._stopped:
                stopped = PublisherStopped("the publisher has stopped")
                for index in range(len(group.calls)):
                    group.settle(index, stopped)
                return group.future
            if self._thread.ident is None:
                self._thread.start()
            self._queue.append(group)
            if not inline:
                if not self._busy:
                    self._wake.notify_all()
                return group.future
            group.waits = True
            self._callers += 1
            taken = None
            if not self._busy:  # in the same step as the append: no other thread takes it
                self._busy = True
                taken = self._take_batch()
        self._write_own(group, taken)
        return group.future

    def _write_own(self, group: _Group,
                   taken: tuple[list[_Slot], list[_Group]] | None) -> None:
        """A ``run_all`` caller: until ``group`` is written, wait for the link to be free and
        then write what is queued, oldest first (``group`` among it), as the publisher's
        thread would. The thread writing hands the link to the callers waiting when it is
        done, so the publisher's thread is woken only for requests nobody waits for.
        ``taken``: what the caller took with the link when it queued ``group``."""
        deadline = time.monotonic() + _GIVE_UP_S
        while True:
            if taken is not None:
                groups, taken = taken, None
            else:
                with self._lock:
                    while self._busy and not group.future.done():
                        if not self._turn.wait(deadline - time.monotonic()):
                            # a bug holds the link: the caller gives up (its wait times
                            # out); its group is left to the publisher's thread
                            self._callers -= 1
                            group.waits = False
                            return
                    # a parked group (no longer ``waits``) is the publisher's thread's
                    if (group.future.done() or not group.waits or not self._queue
                            or self._queue[0] is None):
                        self._callers -= 1
                        return
                    self._busy = True
                    groups = self._take_batch()
            try:
                self._write(*groups)
            finally:
                with self._lock:
                    self._released()

    def _released(self) -> None:
        """Under ``_lock``: the thread that wrote is done; who writes next. A caller waiting
        in ``run_all`` if one's batch is queued, else the publisher's thread if anything is
        (``stop()`` waits on ``_wake`` too)."""
        self._busy = False
        if self._callers:
            self._turn.notify_all()
        if self._parked or (
                self._queue and not any(g is not None and g.waits for g in self._queue)):
            self._wake.notify_all()

    def _take_batch(self) -> tuple[list[_Slot], list[_Group]]:
        """Under ``_lock``, by the thread taking the link: the parked requests if their pause
        is over (first: they are the oldest), then queued groups (``_take``)."""
        parked: list[_Slot] = []
        if self._parked and time.monotonic() >= self._parked_due:
            parked, self._parked = self._parked, []
        return parked, self._take(max(1, self._max_batch - len(parked)))

    def _take(self, limit: int) -> list[_Group]:
        """Under ``_lock``: queued groups, oldest first, up to ``limit`` calls (at least one
        group) and never past a stop request."""
        groups: list[_Group] = []
        size = 0
        while self._queue and (not groups or size < limit):
            group = self._queue[0]
            if group is None:
                break
            self._queue.popleft()
            groups.append(group)
            size += len(group.calls)
        return groups

    def _write(self, parked: list[_Slot], groups: list[_Group], final: bool = False) -> None:
        """Write ``parked``, then ``groups``, in batches of at most ``max_batch`` (the thread
        holding ``_busy``). The rest of a group with a request parked is parked with it
        unwritten, so that nothing of a group reaches Redis before its parked requests.
        ``final`` (stopping): nothing is parked, what is in doubt fails."""
        slots = parked + [(group, i) for group in groups for i in range(len(group.calls))]
        held: set[_Group] = set()
        parked_any = False
        for start in range(0, len(slots), self._max_batch):
            chunk = slots[start:start + self._max_batch]
            if held:
                self._park([slot for slot in chunk if slot[0] in held])
                chunk = [slot for slot in chunk if slot[0] not in held]
            if chunk:
                held |= self._commit(chunk, final)
            parked_any = parked_any or bool(held)
        if not parked_any:
            with self._lock:
                if not self._parked:
                    self._parked_rounds = 0

    def stop(self) -> None:
        """Write what is queued, then end the thread; later submissions fail at once."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            started = self._thread.ident is not None
            self._queue.append(None)
            self._wake.notify_all()
        if started:
            self._thread.join(30)
        with self._lock:  # a run_all caller may still be writing its batch
            self._wake.wait_for(lambda: not self._busy, 30)
        self._link.close()

    # ------------------------------------------------------------------ thread

    def _run(self) -> None:
        with self._lock:  # a session may already be writing on the link
            self._wake.wait_for(lambda: not self._busy)
            self._busy = True
        try:
            self._connect_early()
        finally:
            with self._lock:
                self._released()
        while True:
            final = False
            with self._lock:
                while self._busy or not (self._queue or (
                        self._parked and time.monotonic() >= self._parked_due)):
                    # parked requests wake it when their pause is over (when the link is
                    # busy, its release does: ``_released``)
                    self._wake.wait(None if self._busy or not self._parked
                                    else self._parked_due - time.monotonic())
                self._busy = True
                if self._queue and self._queue[0] is None:  # stopping: one last resend
                    taken: tuple[list[_Slot], list[_Group]] = (self._parked, [])
                    self._parked = []
                    final = True
                else:
                    taken = self._take_batch()
            try:
                self._write(*taken, final=final)
            finally:
                with self._lock:
                    self._released()
            if final:
                return

    def _connect_early(self) -> None:
        """Open the link as the thread starts, not at the first batch: a batch's requests
        must reach Redis within their deadline window (1.5 s by default), and opening a
        link can take longer than that (a name lookup whose answer was lost costs the
        resolver's 5 s retry; a Sentinel query). A failure here is only logged: the first
        batch tries again, as after any loss."""
        try:
            self._link.connect()
        except (OSError, redis.RedisError) as exc:
            log.warning("event=publisher_connect_failed error=%r", exc)

    def _commit(self, batch: list[_Slot], final: bool = False) -> set[_Group]:
        """Write ``batch`` with the retries; complete each request from its reply, or with
        the error once the retries ran out, or park it if it is in doubt (module
        docstring). Returns the groups of the requests parked."""
        started = time.perf_counter()
        pending = batch

        def attempt() -> None:
            nonlocal pending
            wait = None
            if self._min_replicas:
                # a resend's WAIT has the window of a fresh request: its run (or repeat)
                # counts once replicas have it, however late
                now = time.monotonic()
                fresh = [group.submitted for group, i in pending if not group.until[i]]
                left_ms = self._window_ms - (int((now - min(fresh)) * 1000) if fresh else 0)
                wait = Wait(self._min_replicas, left_ms, self._wait_key)
            replies = self._link.run([group.calls[i] for group, i in pending], wait)
            for (group, i), reply in zip(pending, replies, strict=True):
                group.settle(i, reply)
            pending = []

        doubtful: set[_Slot] = set()

        def failed(error: Exception) -> None:
            nonlocal pending
            if isinstance(error, BatchLost):
                for (group, i), reply in zip(pending, error.received, strict=False):
                    group.settle(i, reply)
                pending = pending[len(error.received):]
                if error.written:
                    doubtful.update(pending)
                if error.written and self._settle_s > 0:  # the rest may have run: in doubt
                    until = time.monotonic() + self._settle_s
                    for group, i in pending:
                        if not group.until[i]:
                            group.until[i] = until

        parked: list[_Slot] = []
        try:
            self._retry.call_with_retry(attempt, failed)
        except Exception as exc:
            if not isinstance(exc, redis.RedisError):
                log.exception("event=publisher_batch_failed size=%d", len(pending))
            now = time.monotonic()
            for group, i in pending:
                if not final and isinstance(exc, redis.RedisError) and group.until[i] > now:
                    parked.append((group, i))
                elif (group, i) in doubtful and not getattr(exc, "written", False):
                    # a later connect failed, but this one may have run: say so (the
                    # cluster's router settles it on the slot's next master)
                    group.settle(i, BatchLost([], exc, written=True))
                else:
                    group.settle(i, exc)
            if parked:
                log.warning("event=publisher_in_doubt parked=%d error=%r", len(parked), exc)
                self._park(parked)
        self._on_batch(len(batch), time.perf_counter() - started)
        return {group for group, _ in parked}

    def _park(self, slots: list[_Slot]) -> None:
        """Set ``slots`` aside to be sent again after the next pause (``settle_backoff``)."""
        if not slots:
            return
        with self._lock:
            self._parked.extend(slots)
            self._parked_rounds += 1
            self._parked_due = (time.monotonic()
                                + self._settle_backoff.compute(self._parked_rounds))
            for group, _ in slots:
                group.waits = False  # its run_all caller waits for its future only
            self._wake.notify_all()


__all__ = [
    "BatchLost",
    "ClientLink",
    "Link",
    "Publisher",
    "PublisherStopped",
    "SETTLE_BACKOFF",
    "SETTLE_S",
    "Submitter",
    "complete",
    "short_of_replicas",
    "Script",
    "ScriptCall",
    "Wait",
    "WireLink",
    "pack_call",
]
