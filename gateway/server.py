"""The gateway server: its lifecycle and orderly shutdown.

``Gateway`` owns everything a running gateway has: its listening socket, the
registry of sessions, the broker link, the subscriber, the flusher, the
housekeeper and the health endpoint, and every thread. Nothing outlives
``shutdown()``, which is safe to call twice; tests write::

    with run_gateway(config) as gw:
        host, port = gw.address

The accept loop and the connections' threads are the front's ``Listener``
(``gateway.front.listener``): shutdown stops it accepting at once (no polling),
says ``bye`` to every session, then joins their threads.

One process per gateway id: ``start`` takes the id in Redis
(``{gw:<id>}:instance``, a nonce renewed by every heartbeat) and raises
``DuplicateGateway`` while another live process holds it. A process that
crashed holds it until its lease runs out, but hears nothing on its channel
and beats no more: ``start`` tells the two apart (``_take_id``).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

import redis
from redis.backoff import AbstractBackoff

from gateway.config import GatewayConfig
from gateway.context import Services
from gateway.front.account_requests import account_gate
from gateway.front.flusher import Flusher
from gateway.front.health import HealthServer
from gateway.front.listener import Listener, tls_context
from gateway.front.registry import Registry
from gateway.housekeeping import Housekeeper
from gateway.metrics import GatewayMetrics
from gateway.reconcile import Reconciler
from gateway.redis.broker import Broker, BrokerUnavailable, InstanceClaim
from gateway.redis.target import redacted
from gateway.sharded_subscriber import subscriber_for
from protocol.frames import ByeReason

log = logging.getLogger(__name__)


class DuplicateGateway(RuntimeError):
    """Another live process runs a gateway with this id: this one must not start."""


class Gateway:
    def __init__(self, config: GatewayConfig, *, backoff: AbstractBackoff | None = None) -> None:
        self.config = config
        self.metrics = GatewayMetrics(config.gateway_id)
        self.registry = Registry()
        self.broker = Broker.from_url(
            config.redis_url, config.gateway_id, history=config.history, lease_ms=config.lease_ms,
            on_batch=self.metrics.publish_batch, min_replicas=config.redis_min_replicas,
            room_ttl_ms=round(config.room_ttl_s * 1000),
            new_rooms_per_min=config.new_rooms_per_min, new_rooms_burst=config.new_rooms_burst)
        self.flusher = Flusher()
        self._housekeeper: Housekeeper | None = None
        self.subscriber = subscriber_for(
            self.broker, config.redis_url, config.gateway_id, self.registry, self.metrics,
            backoff=backoff, on_probe=self._probe_returned)
        self.reconciler = Reconciler(self.broker, self.registry, lambda: self._stopping)
        self._housekeeper = Housekeeper(
            self.broker, self.subscriber, self.metrics, heartbeat_s=config.heartbeat_s,
            probe_interval_s=config.probe_interval_s, probe_timeout_s=config.probe_timeout_s,
            lease_s=config.lease_ms / 1000, on_forgotten=self._restore_presence,
            reconcile=self.reconciler.run)
        self._tls = tls_context(config)  # a bad certificate fails here, before anything starts
        self._lock = threading.Lock()
        self._stopping = False
        self._stopped = threading.Event()
        self._listener: Listener | None = None
        self._health: HealthServer | None = None
        self.services = Services(
            config=config, broker=self.broker, registry=self.registry, subscriber=self.subscriber,
            flusher=self.flusher, metrics=self.metrics, stopping=lambda: self._stopping,
            accounts=account_gate(self.broker, config))
        self.metrics.track_backlog(lambda: sum(s.backlog for s in self.registry.sessions()))

    def _restore_presence(self) -> None:
        for session in self.registry.sessions():
            session.restore_presence()

    def _probe_returned(self, nonce: str) -> None:
        if self._housekeeper is not None:
            self._housekeeper.probe_returned(nonce)

    # --------------------------------------------------------------- lifecycle

    @property
    def address(self) -> tuple[str, int]:
        assert self._listener is not None, "gateway not started"
        return self._listener.address

    @property
    def health_address(self) -> tuple[str, int] | None:
        return self._health.address if self._health else None

    @property
    def healthy(self) -> bool:
        return self._housekeeper is not None and self._housekeeper.healthy

    def start(self) -> Gateway:
        """Take the id, listen, start every thread. Raises ``TopologyError`` when Redis is not
        what the URL says, ``DuplicateGateway`` while another live process has this id
        (either way nothing started, nothing changed in Redis)."""
        cfg = self.config
        if self.broker.endpoint is not None:
            self.broker.endpoint.check()
        try:
            self._take_id()
            self.broker.heartbeat()
        except DuplicateGateway:
            self._abandon()
            raise
        except BrokerUnavailable as exc:
            # Start anyway (unhealthy, answering ``unavailable``): Redis may be starting too.
            # The first heartbeat takes the id; reconciliation drops a crashed self's state.
            if isinstance(exc.__cause__, redis.AuthenticationError):
                log.error("event=redis_auth_failed redis=%s hint='Redis wants a password or "
                          "refused the one given: check --redis-url "
                          "(redis://:PASSWORD@host:port/db)'", self.redis_location())
            else:
                log.error("event=redis_unreachable redis=%s hint='is Redis running? For a local "
                          "Redis and gateways in one command run: chat-cluster'",
                          self.redis_location())
        listener = socket.create_server(
            (cfg.host, cfg.port), backlog=1024, reuse_port=False,
            family=socket.AF_INET6 if ":" in cfg.host else socket.AF_INET)
        listener.setblocking(False)
        self._listener = Listener(listener, self.services, self._tls)
        if cfg.health_port is not None:
            self._health = HealthServer(
                cfg.health_host or cfg.host, cfg.health_port, lambda: self.healthy,
                self.metrics.render)
            self._health.start()
        self.flusher.start()
        self.broker.start()
        self.subscriber.start()
        assert self._housekeeper is not None
        self._housekeeper.start()
        self._listener.start()
        log.info("event=listening gateway=%s address=%s:%d health=%s", cfg.gateway_id,
                 *self.address, self.health_address)
        return self

    def _take_id(self) -> None:
        """Make this process the gateway ``gateway_id``, or raise ``DuplicateGateway``.

        Another process's nonce in the instance key means a live gateway, or one that
        crashed less than a lease ago. A live one listens on its channel and beats every
        ``heartbeat_s``: if nobody listens and no beat comes for two heartbeats, it is
        taken for crashed. Then, as before, whatever a crashed self still held is dropped;
        but a predecessor that shut down gracefully left its users' names reserved for
        their tokens: those stay until the reservation ends (then reconciliation frees
        what nobody took back).
        """
        claim = self.broker.claim_instance()
        if not claim.ours:
            claim = self._outwait(claim)
        if claim.reserved_ms > 0:
            held = self.broker.holdings()
            lowers = set(held.names) | {lower for _, lower in held.memberships}
            self.reconciler.reserve(lowers, claim.reserved_ms / 1000)
            log.info("event=predecessor_reserved names=%d seconds=%.1f", len(lowers),
                     claim.reserved_ms / 1000)
        else:
            # A gateway restarted under the same id (a container keeps its host name)
            # must not inherit the names and memberships of its crashed self.
            self.broker.release_gateway()

    def _outwait(self, claim: InstanceClaim) -> InstanceClaim:
        cfg = self.config
        first_beat = claim.last_beat_ms
        deadline = time.monotonic() + min(cfg.lease_ms / 1000, 2 * cfg.heartbeat_s + 0.5)
        while True:
            listeners = self.broker.listeners()
            beat = self.broker.last_heartbeat_ms()
            if listeners > 0 or beat != first_beat:
                age = ("" if beat is None
                       else f", last heartbeat {time.time() * 1000 - beat:.0f} ms ago")
                raise DuplicateGateway(
                    f"gateway id {cfg.gateway_id!r} is in use by another running gateway "
                    f"(instance {claim.holder}{age}): give this one another --id, or stop "
                    "the other first")
            if time.monotonic() >= deadline:
                break
            time.sleep(cfg.heartbeat_s / 5)
        log.warning("event=stale_instance_replaced gateway=%s instance=%s reason='no beat, "
                    "nobody listening: it crashed'", cfg.gateway_id, claim.holder)
        return self.broker.claim_instance(force=True)

    def _abandon(self) -> None:
        """``start`` refused: release what ``__init__`` made; ``shutdown`` does nothing."""
        with self._lock:
            self._stopping = True
        self.broker.close()
        self._stopped.set()

    def redis_location(self) -> str:
        """The Redis URL without its credentials, for logs."""
        return redacted(self.config.redis_url)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the gateway has shut down."""
        return self._stopped.wait(timeout)

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.shutdown()

    def shutdown(self) -> None:
        """Stop accepting, say ``bye``/``shutdown`` to everyone, release names, stop threads."""
        with self._lock:
            if self._stopping:
                already = True
            else:
                already = False
                self._stopping = True
        if already:
            self._stopped.wait(10)
            return
        started = time.monotonic()
        if self._listener is not None:
            self._listener.stop_accepting()
        for session in self.registry.sessions():
            session.kick(ByeReason.SHUTDOWN)
        if self._listener is not None:
            self._listener.join_sessions(started + self.config.shutdown_timeout_s * 0.6)
        if self._housekeeper is not None:
            self._housekeeper.stop()
        # Names and memberships stay reserved for their token holders for a lease (quiet
        # takeover on any gateway), then peers reap them like a dead gateway's.
        self.broker.retire()
        self.subscriber.stop()
        self.flusher.stop()
        if self._health is not None:
            self._health.stop()
        if self._listener is not None:
            self._listener.close()
        self.broker.close()
        log.info("event=stopped gateway=%s seconds=%.2f", self.config.gateway_id,
                 time.monotonic() - started)
        self._stopped.set()


@contextmanager
def run_gateway(config: GatewayConfig, *, backoff: AbstractBackoff | None = None
                ) -> Iterator[Gateway]:
    """A started gateway that is shut down when the block ends."""
    gateway = Gateway(config, backoff=backoff)
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.shutdown()
