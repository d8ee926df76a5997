"""Group commit on Redis Cluster: one ``Publisher`` per master, each request routed to the
master that owns its slot.

On one Redis (or Sentinel) the broker's publisher is one ``Publisher`` on one
``WireLink``; on a cluster it is a ``ShardRouter`` in front of several of them.
``submit_all`` (a session's thread) splits the calls by the owner of each
call's first key (a script touches one slot only: every key of a call shares
its hash tag) and hands each part to that master's own ``Publisher``: its own
thread, pipelined link, retries and, with ``min_replicas``, its own ``WAIT``,
so a master that fails over stalls only the requests it owns. The parts are
joined back into one future (``_Join``), in the caller's order.

A part's reply may say the request went to the wrong master: ``MOVED`` (the
slot moved: the map is corrected, the request goes to the new owner), ``ASK``
(the slot is being migrated and the key is already on the target: the request
goes there once, after ``ASKING``), ``TRYAGAIN`` (the keys are half migrated:
the request is written again shortly) or a lost link / ``CLUSTERDOWN`` (a
failover: the map is read again and the request goes wherever the slot is
now). Only those requests are sent again, and that is safe as for any retry:
every script the publisher runs carries a dedup key and a deadline. A request
follows at most ``max_redirects`` redirections and is never sent again once its
publish window has passed (its script would write nothing): it then fails with
its last error.

Threads: session threads call ``submit``/``submit_all`` (routing by the slot
map is a table lookup, no I/O); each master's ``Publisher`` thread completes
its parts and queues what must be routed again; the router's own thread
(``redirects``) reads the slot map again when needed and routes those. ``_lock``
guards the publishers and the stop flag; ``_Join._lock`` one request's outcomes;
neither is held across I/O.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import hiredis
import redis
from redis.retry import Retry

from gateway.redis.publisher import (
    BatchLost,
    Link,
    Publisher,
    PublisherStopped,
    Wait,
    WireLink,
    complete,
    pack_call,
    read_wait,
    reply_value,
    short_of_replicas,
)
from gateway.redis.scripts import ScriptCall
from gateway.redis.slotmap import Node, Redirect, SlotMap, SlotMapError, key_slot

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
"""How many more times one request may be sent after a redirection or a lost master."""

TRYAGAIN_DELAY_S = 0.02
"""How long a request whose keys are half migrated waits before it is written again."""

FAILOVER_DELAY_S = 0.1
"""How long a request whose master was lost waits before the map is read again."""

REFRESH_EVERY_S = 0.05
"""The slot map is read again at most this often (a burst of redirections reads it once)."""

_ASKING = hiredis.pack_command(("ASKING",))

_START: list[Any] = []
"""Queued by ``start``: the router's thread reads the slot map at once."""


@dataclass(frozen=True, slots=True)
class Asking(ScriptCall):
    """A script call to send once with ``ASKING`` before it (an ``ASK`` redirection)."""

    @classmethod
    def of(cls, call: ScriptCall) -> Asking:
        return cls(call.script, call.keys, call.args)


class ShardLink(WireLink):
    """A master's pipelined link: ``WireLink`` itself, but for a batch holding ``Asking``
    calls, which are written after ``ASKING`` (every call of such a batch by its text: a
    rare batch, it skips the ``NOSCRIPT`` round)."""

    def run(self, calls: Sequence[ScriptCall], wait: Wait | None = None) -> list[Any]:
        if not any(type(call) is Asking for call in calls):
            return super().run(calls, wait)
        replies: list[Any] = []
        acked = 0
        try:
            wire = self._connected()
            wire.send(b"".join([
                (_ASKING if type(call) is Asking else b"") + pack_call(call, by_text=True)
                for call in calls]) + (wait.commands() if wait is not None else b""))
            for call in calls:
                if type(call) is Asking:
                    wire.read_one()  # +OK
                replies.append(wire.read_one())
            acked = read_wait(wire, wait)
        except OSError as exc:
            self.close()
            raise BatchLost([] if wait is not None else [reply_value(r) for r in replies],
                            exc) from exc
        values = [reply_value(r) for r in replies]
        return short_of_replicas(values, wait, acked)


class _Join:
    """One submission's outcomes, gathered from the masters' parts: one future for all."""

    __slots__ = ("_lock", "future", "outcomes", "remaining", "single", "submitted")

    def __init__(self, size: int, single: bool) -> None:
        self._lock = threading.Lock()
        self.future: Future[Any] = Future()
        self.outcomes: list[Any] = [None] * size
        self.remaining = size
        self.single = single
        self.submitted = time.monotonic()

    def settle(self, index: int, outcome: Any) -> None:
        with self._lock:  # the masters' publisher threads answer parts at once
            self.outcomes[index] = outcome
            self.remaining -= 1
            if self.remaining:
                return
        complete(self.future, self.single, self.outcomes)


@dataclass(slots=True)
class _Request:
    """One call of a submission on its way: where it goes and how often it went."""

    join: _Join
    index: int
    call: ScriptCall
    sent: int = 0
    """Times it was written already."""
    redirects: int = 0
    """``MOVED``/``ASK`` replies it got (a bound: a map that keeps changing is a fault)."""
    outcome: Any = None
    """Its last reply or error (what it fails with when it may not go again)."""
    ask: Node | None = None
    """An ``ASK`` redirection: the node to send it to once, after ``ASKING``."""
    doubt_until: float = 0.0
    """Once written and its reply lost (its master died mid-batch): until when it is sent
    again, past its window, for the answer that settles it (``repeat`` or ``too_late``)."""


def _slot(call: ScriptCall) -> int:
    """Where a call runs: its first key's slot (all its keys share it; 0 for none)."""
    return key_slot(call.keys[0]) if call.keys else 0


def _reroute(outcome: Any) -> str | None:
    """Why a request must be sent again ("moved", "ask", "tryagain", "failover"), or None
    when ``outcome`` is its answer."""
    if isinstance(outcome, redis.ResponseError):
        text = str(outcome)
        if text.startswith("MOVED "):
            return "moved"
        if text.startswith("ASK "):
            return "ask"
        if text.startswith("TRYAGAIN"):
            return "tryagain"
        if text.startswith(("CLUSTERDOWN", "READONLY", "MASTERDOWN")):
            return "failover"
        return None
    if isinstance(outcome, PublisherStopped):
        return None  # shutting down: never sent, never sent again
    if isinstance(outcome, (redis.ConnectionError, redis.TimeoutError)):
        return "failover"
    return None


class ShardRouter:
    """One ``Publisher`` per master behind one ``submit_all``; see the module docstring.

    ``link_for`` opens a master's link (lazily connecting), ``retry`` makes each
    publisher's ``Retry``; the other arguments are ``Publisher``'s, per master.
    """

    def __init__(self, slots: SlotMap, link_for: Callable[[Node], Link],
                 retry: Callable[[], Retry | None], *,
                 on_batch: Callable[[int, float], None] = lambda size, seconds: None,
                 name: str = "publisher", min_replicas: int = 0, window_ms: int = 1500,
                 wait_key: str = "", max_redirects: int = MAX_REDIRECTS,
                 settle_s: float = 0.0) -> None:
        self._slots = slots
        self._link_for = link_for
        self._retry = retry
        self._on_batch = on_batch
        self._name = name
        self._min_replicas = min_replicas
        self._window_ms = window_ms
        self._settle_s = settle_s
        self._wait_key = wait_key.replace("{", "").replace("}", "")
        self._max_redirects = max_redirects
        self._lock = threading.Lock()
        self._publishers: dict[Node, Publisher] = {}
        self._started = False
        self._stopped = False
        self._redirects: queue.SimpleQueue[list[_Request] | None] = queue.SimpleQueue()
        self._last_refresh = 0.0
        self._thread = threading.Thread(target=self._run, name=f"{name}-redirects",
                                        daemon=True)

    # ------------------------------------------------------------- the interface

    def start(self) -> None:
        with self._lock:
            if self._started or self._stopped:
                return
            self._started = True
            publishers = list(self._publishers.values())
        self._thread.start()
        self._redirects.put(_START)  # read the slot map now, before the first request
        for publisher in publishers:
            publisher.start()

    def submit(self, call: ScriptCall) -> Future[Any]:
        return self._submit(_Join(1, single=True), (call,))

    def submit_all(self, calls: Sequence[ScriptCall]) -> Future[list[Any]]:
        if not calls:
            done: Future[list[Any]] = Future()
            done.set_result([])
            return done
        return self._submit(_Join(len(calls), single=False), calls)

    def run_all(self, calls: Sequence[ScriptCall]) -> Future[list[Any]]:
        """``submit_all`` for a caller about to wait for the outcome: on a cluster its parts
        go to the masters' publishers as any other submission."""
        return self.submit_all(calls)

    def stop(self) -> None:
        """Write what is queued (a redirected request is answered with its last error),
        then end every thread."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            started = self._started
            publishers = list(self._publishers.values())
        for publisher in publishers:
            publisher.stop()
        self._redirects.put(None)
        if started:
            self._thread.join(30)

    # ---------------------------------------------------------------- routing

    def _submit(self, join: _Join, calls: Sequence[ScriptCall]) -> Future[Any]:
        self._start_lazily()
        self._route([_Request(join, i, call) for i, call in enumerate(calls)])
        return join.future

    def _start_lazily(self) -> None:
        if not self._started:
            self.start()

    def _route(self, requests: list[_Request]) -> None:
        """Hand each request to the publisher of its master (as the map says now); those
        whose slot has no known master go to the router's thread, which reads the map."""
        parts: dict[Node, list[_Request]] = {}
        unknown = []
        for request in requests:
            node = request.ask or self._owner(request.call)
            if node is not None:
                parts.setdefault(node, []).append(request)
            elif self._may_resend(request):
                request.outcome = redis.ConnectionError(
                    f"no master known for slot {_slot(request.call)}")
                unknown.append(request)
            else:
                request.join.settle(request.index, request.outcome)
        if unknown:
            with self._lock:  # queued before stop() queues its end, or answered here
                stopped = self._stopped
                if not stopped:
                    self._redirects.put(unknown)
            if stopped:
                for request in unknown:
                    request.join.settle(request.index, PublisherStopped("the router stopped"))
        for node, part in parts.items():
            publisher = self._publisher(node)
            if publisher is None:  # stopped
                for request in part:
                    request.join.settle(request.index, PublisherStopped("the router stopped"))
                continue
            calls = [Asking.of(r.call) if r.ask is not None else r.call for r in part]
            for request in part:
                request.sent += 1
                request.ask = None
            publisher.submit_all(calls).add_done_callback(
                lambda future, part=part: self._part_done(part, future))  # type: ignore[misc]

    def _owner(self, call: ScriptCall) -> Node | None:
        return self._slots.owner(_slot(call))

    def _publisher(self, node: Node) -> Publisher | None:
        """``node``'s publisher, made (and started) the first time; None once stopped."""
        with self._lock:
            stopped, publisher = self._stopped, self._publishers.get(node)
        if stopped or publisher is not None:
            return publisher
        made = Publisher(self._link_for(node), self._retry(), on_batch=self._on_batch,
                         name=f"{self._name}-{node}", min_replicas=self._min_replicas,
                         window_ms=self._window_ms, wait_key=self._wait_key_on(node))
        with self._lock:
            stopped, started = self._stopped, self._started
            if not stopped:
                publisher = self._publishers.setdefault(node, made)
        if publisher is not made:  # stopped, or another thread made one first
            made.stop()
        elif started:
            made.start()
        return publisher

    def _wait_key_on(self, node: Node) -> str:
        """The key written before each ``WAIT`` on ``node``: one in a slot it owns (a
        ``{n}`` tag found by trying), so the write is its own."""
        for n in range(65536):
            key = f"{self._wait_key}:{{{n}}}"
            if self._slots.owner(key_slot(key)) == node:
                return key
        return self._wait_key

    def _part_done(self, part: list[_Request], future: Future[list[Any]]) -> None:
        """A master answered a part (its publisher's thread): settle each request, or queue
        it for the router's thread when it must go elsewhere."""
        again = []
        for request, outcome in zip(part, future.result(), strict=True):
            request.outcome = outcome
            if _reroute(outcome) is not None and self._may_resend(request):
                again.append(request)
            else:
                request.join.settle(request.index, outcome)
        if again:
            self._redirects.put(again)

    def _may_resend(self, request: _Request) -> bool:
        """Within its window; or, once in doubt (``BatchLost.written``: it may have run on
        a master that died before answering), until ``settle_s`` has passed: its dedup key
        and deadline make the new master's answer final, as ``Publisher`` settles on one
        Redis. A request never written fails when its window ends (``unavailable`` is
        then true)."""
        if request.redirects >= self._max_redirects and _reroute(request.outcome) in (
                "moved", "ask"):
            return False
        now = time.monotonic()
        outcome = request.outcome
        if (not request.doubt_until and self._settle_s > 0
                and isinstance(outcome, BatchLost) and outcome.written):
            request.doubt_until = now + self._settle_s
        if request.doubt_until:
            return now < request.doubt_until
        return (now - request.join.submitted) * 1000 < self._window_ms

    # ------------------------------------------------------------------ thread

    def _run(self) -> None:
        """Route redirected requests again: at once after ``MOVED``/``ASK`` (the map
        corrected first), a little later after ``TRYAGAIN``, or after a lost master or a slot
        with no known master (the map read again first)."""
        delayed: list[tuple[float, int, _Request]] = []
        order = itertools.count()
        while True:
            timeout = max(0.0, delayed[0][0] - time.monotonic()) if delayed else None
            try:
                item = self._redirects.get(timeout=timeout)
            except queue.Empty:
                item = []
            if item is None:  # stopping: each waiting request fails with its last error
                for _, _, request in delayed:
                    request.join.settle(request.index, request.outcome)
                return
            now = time.monotonic()
            if item is _START:
                self._refresh()
            for request in item:
                reason = _reroute(request.outcome) or "failover"
                redirect = Redirect.parse(str(request.outcome))
                if reason == "ask" and redirect is not None:
                    request.ask = redirect.node
                    request.redirects += 1
                elif reason == "moved" and redirect is not None:
                    self._slots.moved(redirect)
                    request.redirects += 1
                delay = 0.0 if reason in ("moved", "ask") or request.sent == 0 else (
                    TRYAGAIN_DELAY_S if reason == "tryagain" else FAILOVER_DELAY_S)
                heapq.heappush(delayed, (now + delay, next(order), request))
            due = []
            while delayed and delayed[0][0] <= time.monotonic():
                due.append(heapq.heappop(delayed)[2])
            if any(_reroute(r.outcome) in ("failover", "moved") for r in due):
                self._refresh()
            if due:
                self._route(due)

    def _refresh(self) -> None:
        """Read the slot map again, at most every ``REFRESH_EVERY_S`` (a failed read leaves
        the old map: the requests go where it says, and fail there again)."""
        now = time.monotonic()
        if now - self._last_refresh < REFRESH_EVERY_S:
            return
        self._last_refresh = now
        try:
            self._slots.refresh()
        except SlotMapError as exc:
            log.warning("event=slot_map_unavailable error=%s", exc)


__all__ = ["Asking", "MAX_REDIRECTS", "ShardLink", "ShardRouter"]
