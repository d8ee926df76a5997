"""The accept loop: one listening socket, one non-daemon thread per connection.

``Listener`` waits on the listening socket and its ``Waker`` with a selector, so
``stop_accepting`` wakes it at once (no polling). Each accepted connection gets
its socket options, TLS wrapping, the per-address churn limit and the
registry's connection caps; a ``Session`` thread is registered in
``_threads`` before it starts, so ``join_sessions`` finds and joins it. Out of
descriptors, the spare descriptor refuses what waits in the listen queue and
the loop backs off (``gateway.front.accept``).

Lock order: ``Listener._lock`` guards ``_threads`` and ``_stopping`` only and is
never held while calling anything else.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time

from gateway.config import GatewayConfig
from gateway.context import Services
from gateway.front.accept import (
    OUT_OF_DESCRIPTORS,
    Backoff,
    FailureLog,
    SpareDescriptor,
    accept_loop,
)
from gateway.front.ratelimit import AddressRate
from gateway.front.session import Session
from gateway.wakeup import Waker
from protocol import codec
from protocol.errors import ErrorCode, ProtocolError

log = logging.getLogger("gateway.server")


def tls_context(config: GatewayConfig) -> ssl.SSLContext | None:
    """The server's TLS context when a certificate and key are configured."""
    if config.tls_cert is None or config.tls_key is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(config.tls_cert, config.tls_key)
    return context


def _full_line() -> bytes:
    return codec.encode_error(ProtocolError(
        ErrorCode.UNAVAILABLE, "this gateway is full; try another gateway"))


class Listener:
    """Accepts connections on ``sock`` and runs a ``Session`` thread for each."""

    def __init__(self, sock: socket.socket, services: Services,
                 tls: ssl.SSLContext | None) -> None:
        config = services.config
        self._sock = sock
        self._svc = services
        self._config = config
        self._tls = tls
        self._churn = (AddressRate(config.connect_rate_per_address)
                       if config.connect_rate_per_address > 0 else None)
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        self._stopping = False
        self._waker = Waker()
        self._spare = SpareDescriptor()
        self._backoff = Backoff()
        self._failures = FailureLog(log, "accept_failed")
        self._thread = threading.Thread(target=self._accept_loop, name="accept")

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._sock.getsockname()[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread.start()

    def stop_accepting(self) -> None:
        """Stop the accept loop and join it; connections already accepted go on."""
        with self._lock:
            self._stopping = True
        self._waker.wake()
        if self._thread.is_alive():
            self._thread.join(5)

    def join_sessions(self, deadline: float) -> None:
        """Join every connection's thread, until ``deadline`` (``time.monotonic``) at most."""
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.05, deadline - time.monotonic()))

    def close(self) -> None:
        """Close the listening socket, the waker and the spare descriptor."""
        self._sock.close()
        self._waker.close()
        self._spare.close()

    def _accept_loop(self) -> None:
        try:
            accept_loop(self._sock, self._waker, self._backoff, self._accept_ready,
                        running=lambda: not self._stopping)
        except Exception:
            log.exception("event=accept_loop_crashed")

    def _accept_ready(self) -> None:
        while True:
            try:
                sock, peer = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._accept_failed(exc)
                return
            self._backoff.succeeded()
            self._start_session(sock, peer)

    def _accept_failed(self, exc: OSError) -> None:
        """Out of descriptors (or another accept error): refuse what waits in the
        listen queue through the spare descriptor, with the same ``unavailable`` a
        full gateway gives, log once in a while with a count, and back off."""
        refused = 0
        if exc.errno in OUT_OF_DESCRIPTORS:
            refused = self._spare.refuse_waiting(
                self._sock, b"" if self._tls is not None else _full_line())
            self._svc.metrics.accept_failures.inc(refused)
            self._svc.metrics.errors.labels(ErrorCode.UNAVAILABLE.value).inc(refused)
        self._failures.failed(exc, refused)
        self._backoff.failed()

    def _start_session(self, sock: socket.socket, peer: tuple[str, int]) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._config.socket_sndbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._config.socket_sndbuf)
        sock.setblocking(False)
        if self._tls is not None:
            sock = self._tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        if self._churn is not None and not self._churn.take(peer[0]):
            self._refuse(sock, peer, ErrorCode.RATE_LIMITED,
                         "too many new connections from your address; slow down", "churn")
            return
        session = Session(sock, peer, self._svc)
        cfg = self._config
        if not self._svc.registry.admit(session, cfg.max_connections, cfg.max_per_address):
            self._refuse(sock, peer)
            return
        thread = threading.Thread(target=self._serve, args=(session,), name=f"s-{session.sid}")
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def _refuse(self, sock: socket.socket, peer: tuple[str, int],
                code: ErrorCode = ErrorCode.UNAVAILABLE,
                message: str = "this gateway is full; try another gateway",
                reason: str = "limit") -> None:
        log.warning("event=connection_refused peer=%s:%d reason=%s", *peer[:2], reason)
        self._svc.metrics.errors.labels(code.value).inc()
        line = codec.encode_error(ProtocolError(code, message))
        try:
            if not isinstance(sock, ssl.SSLSocket):
                sock.send(line)
        except OSError:
            pass
        sock.close()

    def _serve(self, session: Session) -> None:
        try:
            if isinstance(session.sock, ssl.SSLSocket) and not self._handshake(session):
                self._svc.registry.remove(session)
                session.sock.close()
                return
            session.run()
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _handshake(self, session: Session) -> bool:
        sock = session.sock
        try:
            sock.settimeout(self._config.limits.login_timeout_s)
            sock.do_handshake()  # type: ignore[attr-defined]
            sock.setblocking(False)
            return True
        except (OSError, ssl.SSLError) as exc:
            log.info("event=tls_handshake_failed peer=%s error=%r", session.peer, exc)
            return False


__all__ = ["Listener", "tls_context"]
