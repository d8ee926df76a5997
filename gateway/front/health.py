"""HTTP ``/healthz`` (200 or 503) and ``/metrics`` (Prometheus text) on the health port.

A small server of our own around ``http.server``'s request handler: one
accept thread waiting on the listening socket and a wake-up socketpair (so
``stop()`` returns at once, no polling), at most ``max_connections``
connections served at a time, each by its own thread and each with a
``timeout_s`` on every read and write. A connection past the cap gets
``503`` and is closed by the accept thread itself, without a thread.
Running out of descriptors backs the accept loop off instead of spinning.
Lock: ``_lock`` guards the set of open connections; it is never held
across socket I/O.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer

from prometheus_client import CONTENT_TYPE_LATEST

from gateway.front.accept import OUT_OF_DESCRIPTORS, Backoff, FailureLog, accept_loop
from gateway.wakeup import Waker

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 16
"""Probes and scrapers served at once; a few are expected, not hundreds."""
TIMEOUT_S = 5.0
"""Seconds a health connection may take to send its request (and to read the answer)."""
_BUSY = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
         b"Content-Length: 5\r\nConnection: close\r\n\r\nbusy\n")


class _Listener(HTTPServer):
    request_queue_size = 128
    """Room in the listen queue: connections past the cap are answered, not left to
    time out in a full queue (http.server's default is 5)."""


class HealthServer:
    def __init__(self, host: str, port: int, healthy: Callable[[], bool],
                 metrics: Callable[[], bytes], *, max_connections: int = MAX_CONNECTIONS,
                 timeout_s: float = TIMEOUT_S) -> None:
        class Handler(BaseHTTPRequestHandler):
            timeout = timeout_s  # StreamRequestHandler applies it to the socket

            def do_GET(self) -> None:  # http.server's naming
                if self.path == "/healthz":
                    ok = healthy()
                    body = b"ok\n" if ok else b"unavailable\n"
                    self._reply(200 if ok else 503, body, "text/plain")
                elif self.path == "/metrics":
                    self._reply(200, metrics(), CONTENT_TYPE_LATEST)
                else:
                    self._reply(404, b"not found\n", "text/plain")

            def _reply(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # http.server's naming
                log.debug("event=http " + format, *args)

        # HTTPServer for its bind and handler plumbing only; the loop is ours.
        self._server = _Listener((host, port), Handler)
        self._server.socket.setblocking(False)
        self._max = max_connections
        self._lock = threading.Lock()
        self._open: dict[socket.socket, threading.Thread] = {}
        self._stopping = False
        self._waker = Waker()
        self._backoff = Backoff()
        self._failures = FailureLog(log, "health_accept_failed")
        self._thread = threading.Thread(target=self._run, name="health")

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._open)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, cut the connections being served, join every thread."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            open_now = dict(self._open)
        self._waker.wake()
        if self._thread.is_alive():
            self._thread.join(5)
        for sock, thread in open_now.items():
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            thread.join(5)
        self._server.server_close()
        self._waker.close()

    def _run(self) -> None:
        try:
            accept_loop(self._server.socket, self._waker, self._backoff, self._accept_ready)
        except Exception:
            log.exception("event=health_crashed")

    def _accept_ready(self) -> None:
        while True:
            try:
                sock, peer = self._server.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._failures.failed(exc)
                self._backoff.failed()
                if exc.errno not in OUT_OF_DESCRIPTORS:
                    log.debug("event=health_accept_error error=%r", exc)
                return
            self._backoff.succeeded()
            with self._lock:
                busy = self._stopping or len(self._open) >= self._max
                if not busy:
                    thread = threading.Thread(target=self._serve, args=(sock, peer),
                                              name="health-conn")
                    self._open[sock] = thread
            if busy:
                with sock, contextlib.suppress(OSError):
                    sock.setblocking(False)
                    sock.send(_BUSY)  # best effort into an empty buffer: never waits
                continue
            thread.start()

    def _serve(self, sock: socket.socket, peer: tuple[str, int]) -> None:
        try:
            sock.setblocking(True)
            self._server.finish_request(sock, peer)
        except OSError as exc:
            log.debug("event=health_connection_failed error=%r", exc)
        except Exception:
            log.exception("event=health_handler_failed")
        finally:
            with self._lock:
                self._open.pop(sock, None)
            self._server.shutdown_request(sock)
