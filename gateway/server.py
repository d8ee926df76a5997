"""The gateway server: accept loop, lifecycle and orderly shutdown.

``Gateway`` owns everything a running gateway has: its listening socket, the
registry of sessions, the broker link, the subscriber, the flusher, the
housekeeper and the health endpoint, and every thread. Nothing outlives
``shutdown()``, which is safe to call twice; tests write::

    with run_gateway(config) as gw:
        host, port = gw.address

The accept loop waits on the listening socket and a socketpair with a
selector, so shutdown wakes it at once (no polling). One non-daemon thread
serves each connection; it is registered before it starts so shutdown can
find and join it.
"""

from __future__ import annotations

import contextlib
import logging
import select
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

import redis
from redis.backoff import AbstractBackoff

from gateway.accept import OUT_OF_DESCRIPTORS, Backoff, FailureLog, SpareDescriptor
from gateway.account_requests import account_gate
from gateway.config import GatewayConfig
from gateway.context import Services
from gateway.health import HealthServer
from gateway.housekeeping import Housekeeper
from gateway.metrics import GatewayMetrics
from gateway.outbound import Flusher
from gateway.redis.broker import Broker, BrokerUnavailable
from gateway.redis.target import redacted
from gateway.registry import Registry
from gateway.session import Session
from gateway.subscriber import Subscriber
from protocol import codec
from protocol.errors import ErrorCode, ProtocolError
from protocol.frames import ByeReason

log = logging.getLogger(__name__)


class Gateway:
    def __init__(self, config: GatewayConfig, *, backoff: AbstractBackoff | None = None) -> None:
        self.config = config
        self.metrics = GatewayMetrics(config.gateway_id)
        self.registry = Registry()
        self.broker = Broker.from_url(
            config.redis_url, config.gateway_id, history=config.history, lease_ms=config.lease_ms,
            on_batch=self.metrics.publish_batch, min_replicas=config.redis_min_replicas)
        self.flusher = Flusher()
        self._housekeeper: Housekeeper | None = None
        self.subscriber = Subscriber(
            self.broker.endpoint.address if self.broker.endpoint else config.redis_url,
            config.gateway_id, self.registry, self.broker, self.metrics,
            backoff=backoff, on_probe=self._probe_returned)
        self._housekeeper = Housekeeper(
            self.broker, self.subscriber, self.metrics, heartbeat_s=config.heartbeat_s,
            probe_interval_s=config.probe_interval_s, probe_timeout_s=config.probe_timeout_s,
            lease_s=config.lease_ms / 1000, on_forgotten=self._restore_presence)
        self._tls = self._tls_context(config)
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        self._stopping = False
        self._stopped = threading.Event()
        self._listener: socket.socket | None = None
        self._health: HealthServer | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._spare = SpareDescriptor()
        self._accept_backoff = Backoff()
        self._accept_failures = FailureLog(log, "accept_failed")
        self._accept_thread = threading.Thread(target=self._accept_loop, name="accept")
        self.services = Services(
            config=config, broker=self.broker, registry=self.registry, subscriber=self.subscriber,
            flusher=self.flusher, metrics=self.metrics, stopping=lambda: self._stopping,
            accounts=account_gate(self.broker, config))
        self.metrics.track_backlog(lambda: sum(s.backlog for s in self.registry.sessions()))

    @staticmethod
    def _tls_context(config: GatewayConfig) -> ssl.SSLContext | None:
        if config.tls_cert is None or config.tls_key is None:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(config.tls_cert, config.tls_key)
        return context

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
        host, port = self._listener.getsockname()[:2]
        return str(host), int(port)

    @property
    def health_address(self) -> tuple[str, int] | None:
        return self._health.address if self._health else None

    @property
    def healthy(self) -> bool:
        return self._housekeeper is not None and self._housekeeper.healthy

    def start(self) -> Gateway:
        """Listen and serve; raises ``TopologyError`` (before anything started) when Redis
        is not what the URL says."""
        cfg = self.config
        if self.broker.endpoint is not None:
            self.broker.endpoint.check()
        listener = socket.create_server(
            (cfg.host, cfg.port), backlog=1024, reuse_port=False,
            family=socket.AF_INET6 if ":" in cfg.host else socket.AF_INET)
        listener.setblocking(False)
        self._listener = listener
        if cfg.health_port is not None:
            self._health = HealthServer(
                cfg.health_host or cfg.host, cfg.health_port, lambda: self.healthy,
                self.metrics.render)
            self._health.start()
        self.flusher.start()
        self.broker.start()
        try:
            # A gateway restarted under the same id (a container keeps its host name)
            # must not inherit the names and memberships of its crashed self.
            self.broker.release_gateway()
            self.broker.heartbeat()
        except BrokerUnavailable as exc:
            # Start anyway (unhealthy, answering ``unavailable``): Redis may be starting too.
            if isinstance(exc.__cause__, redis.AuthenticationError):
                log.error("event=redis_auth_failed redis=%s hint='Redis wants a password or "
                          "refused the one given: check --redis-url "
                          "(redis://:PASSWORD@host:port/db)'", self.redis_location())
            else:
                log.error("event=redis_unreachable redis=%s hint='is Redis running? For a local "
                          "Redis and gateways in one command run: chat-cluster'",
                          self.redis_location())
        self.subscriber.start()
        assert self._housekeeper is not None
        self._housekeeper.start()
        self._accept_thread.start()
        log.info("event=listening gateway=%s address=%s:%d health=%s", cfg.gateway_id,
                 *self.address, self.health_address)
        return self

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
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._accept_thread.is_alive():
            self._accept_thread.join(5)
        for session in self.registry.sessions():
            session.kick(ByeReason.SHUTDOWN)
        deadline = started + self.config.shutdown_timeout_s * 0.6
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.05, deadline - time.monotonic()))
        self.broker.release_gateway()
        if self._housekeeper is not None:
            self._housekeeper.stop()
        self.subscriber.stop()
        self.flusher.stop()
        if self._health is not None:
            self._health.stop()
        if self._listener is not None:
            self._listener.close()
        self._wake_r.close()
        self._wake_w.close()
        self._spare.close()
        self.broker.close()
        log.info("event=stopped gateway=%s seconds=%.2f", self.config.gateway_id,
                 time.monotonic() - started)
        self._stopped.set()

    # ------------------------------------------------------------------ accept

    def _accept_loop(self) -> None:
        assert self._listener is not None
        selector = selectors.DefaultSelector()
        selector.register(self._listener, selectors.EVENT_READ)
        selector.register(self._wake_r, selectors.EVENT_READ)
        try:
            while not self._stopping:
                delay = self._accept_backoff.delay
                if delay and select.select([self._wake_r], [], [], delay)[0]:
                    return  # woken for shutdown while backing off
                for key, _ in selector.select():
                    if key.fileobj is self._wake_r:
                        return
                    self._accept_ready()
        except Exception:
            log.exception("event=accept_loop_crashed")
        finally:
            selector.close()

    def _accept_ready(self) -> None:
        assert self._listener is not None
        while True:
            try:
                sock, peer = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._accept_failed(exc)
                return
            self._accept_backoff.succeeded()
            self._start_session(sock, peer)

    def _accept_failed(self, exc: OSError) -> None:
        """Out of descriptors (or another accept error): refuse what waits in the
        listen queue through the spare descriptor, with the same ``unavailable`` a
        full gateway gives, log once in a while with a count, and back off."""
        assert self._listener is not None
        refused = 0
        if exc.errno in OUT_OF_DESCRIPTORS:
            refused = self._spare.refuse_waiting(
                self._listener, b"" if self._tls is not None else self._full_line())
            self.metrics.accept_failures.inc(refused)
            self.metrics.errors.labels(ErrorCode.UNAVAILABLE.value).inc(refused)
        self._accept_failures.failed(exc, refused)
        self._accept_backoff.failed()

    @staticmethod
    def _full_line() -> bytes:
        return codec.encode_error(ProtocolError(
            ErrorCode.UNAVAILABLE, "this gateway is full; try another gateway"))

    def _start_session(self, sock: socket.socket, peer: tuple[str, int]) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.config.socket_sndbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.config.socket_sndbuf)
        sock.setblocking(False)
        if self._tls is not None:
            sock = self._tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        session = Session(sock, peer, self.services)
        cfg = self.config
        if not self.registry.admit(session, cfg.max_connections, cfg.max_per_address):
            self._refuse(sock, peer)
            return
        thread = threading.Thread(target=self._serve, args=(session,), name=f"s-{session.sid}")
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def _refuse(self, sock: socket.socket, peer: tuple[str, int]) -> None:
        log.warning("event=connection_refused peer=%s:%d reason=limit", *peer[:2])
        self.metrics.errors.labels(ErrorCode.UNAVAILABLE.value).inc()
        line = self._full_line()
        try:
            if not isinstance(sock, ssl.SSLSocket):
                sock.send(line)
        except OSError:
            pass
        sock.close()

    def _serve(self, session: Session) -> None:
        try:
            if isinstance(session.sock, ssl.SSLSocket) and not self._handshake(session):
                self.registry.remove(session)
                session.sock.close()
                return
            session.run()
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _handshake(self, session: Session) -> bool:
        sock = session.sock
        try:
            sock.settimeout(self.config.limits.login_timeout_s)
            sock.do_handshake()  # type: ignore[attr-defined]
            sock.setblocking(False)
            return True
        except (OSError, ssl.SSLError) as exc:
            log.info("event=tls_handshake_failed peer=%s error=%r", session.peer, exc)
            return False


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
