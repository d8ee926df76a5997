"""The gateway's timekeeper: heartbeat, reaping dead peers, and the end-to-end probe.

A subscriber can go quiet without any error (Redis dropped it for a full
output buffer, a proxy half-closed it): so every ``probe_interval`` this
thread publishes a nonce to the gateway's own channel and the subscriber
reports it back. A probe unanswered for ``probe_timeout`` marks the gateway
unhealthy and makes the subscriber rebuild its connection and fill every
room. Timing uses an ``Event`` wait, so ``stop()`` is immediate.

Dead peers are reaped only once our own heartbeats have succeeded for a full
lease: while Redis was out of reach no gateway could beat, so right after an
outage every peer's heartbeat is stale without the peer being dead. A stall
counts as an outage too: while Redis is stopped (SIGSTOP, a long fsync) a
heartbeat blocks in redis-py's retries and then succeeds, so two successful
beats more than half a lease apart also start the run afresh.

After every successful heartbeat the gateway reconciles what Redis says it
holds with its live sessions (``gateway.reconcile``), so a cleanup that failed
during a Redis blip is done on the first beat after Redis is back.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable

from gateway.metrics import GatewayMetrics
from gateway.redis.broker import Broker, BrokerUnavailable
from gateway.subscriber import Subscriber

log = logging.getLogger(__name__)


class Housekeeper:
    def __init__(self, broker: Broker, subscriber: Subscriber, metrics: GatewayMetrics, *,
                 heartbeat_s: float, probe_interval_s: float, probe_timeout_s: float,
                 lease_s: float = 0.0,
                 on_forgotten: Callable[[], None] = lambda: None,
                 reconcile: Callable[[], object] = lambda: None) -> None:
        self._broker = broker
        self._on_forgotten = on_forgotten
        self._reconcile = reconcile
        self._subscriber = subscriber
        self._metrics = metrics
        self._heartbeat_s = heartbeat_s
        self._probe_interval_s = probe_interval_s
        self._probe_timeout_s = probe_timeout_s
        self._lease_s = lease_s
        self._beating_since: float | None = None
        """When the current run of successful heartbeats began (monotonic); None after a
        failed one."""
        self._last_beat = 0.0
        """When the last successful heartbeat returned (monotonic)."""
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._probes: dict[str, float] = {}
        self._last_probe_back = time.monotonic()
        self._redis_ok = False
        self._beaten = False
        self._restore_pending = False
        self._thread = threading.Thread(target=self._run, name="housekeeper")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    @property
    def healthy(self) -> bool:
        """Redis answers, the subscriber is connected, and probes come back."""
        with self._lock:
            fresh = time.monotonic() - self._last_probe_back < self._probe_timeout_s
        return self._redis_ok and self._subscriber.connected and fresh

    def probe_returned(self, nonce: str) -> None:
        """Called by the subscriber thread when a probe comes back through Redis."""
        now = time.monotonic()
        with self._lock:
            sent = self._probes.pop(nonce, None)
            if sent is None:
                return
            self._last_probe_back = now
            self._probes = {n: t for n, t in self._probes.items() if t > sent}
        self._metrics.probe_rtt.set(now - sent)

    def _run(self) -> None:
        next_beat = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_beat:
                self._beat()
                next_beat = now + self._heartbeat_s
            self._probe(now)
            self._metrics.healthy.set(1 if self.healthy else 0)
            self._stop.wait(min(self._probe_interval_s, max(0.0, next_beat - time.monotonic())))

    def _beat(self) -> None:
        try:
            if self._broker.heartbeat() and self._beaten:
                # Redis did not know us: it lost its data, or peers reaped us while we
                # were paused. Put our sessions' names and memberships back.
                log.warning("event=presence_lost action=restore")
                self._restore_pending = True
            self._beaten = True
            if self._restore_pending:
                self._on_forgotten()  # raises BrokerUnavailable: tried again next beat
                self._restore_pending = False
            now = time.monotonic()
            if self._beating_since is None or now - self._last_beat > self._lease_s / 2:
                self._beating_since = now  # first beat, or the first after an outage or stall
            self._last_beat = now
            if now - self._beating_since >= self._lease_s:  # see the module docstring
                reaped = self._broker.reap_dead()
                if reaped:
                    log.info("event=reaped gateways=%s", ",".join(reaped))
            self._redis_ok = True
        except BrokerUnavailable as exc:
            self._beating_since = None
            if self._redis_ok:
                log.warning("event=redis_unavailable error=%r", exc)
            self._redis_ok = False
            return
        try:
            self._reconcile()
        except BrokerUnavailable as exc:
            log.info("event=reconcile_deferred error=%r", exc)  # tried again next beat

    def _probe(self, now: float) -> None:
        with self._lock:
            overdue = now - self._last_probe_back > self._probe_timeout_s and bool(self._probes)
            if overdue:
                self._probes.clear()
                self._last_probe_back = now  # give the rebuilt link a full timeout
        if overdue and self._subscriber.connected:
            log.warning("event=probe_timeout action=rebuild_subscription")
            self._subscriber.request_rebuild()
        if not self._subscriber.connected:
            return
        nonce = uuid.uuid4().hex[:12]
        with self._lock:
            self._probes[nonce] = now
        try:
            self._broker.publish_probe(nonce)
            self._redis_ok = True
        except BrokerUnavailable:
            self._redis_ok = False
