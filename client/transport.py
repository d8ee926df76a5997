"""Gateway addresses and the byte stream to one gateway, plain TCP or TLS.

A ``Transport`` is read by one thread (the client's reader) and written by
others under a write lock. Plain TCP allows that as is. An OpenSSL ``SSL``
object does not allow a read and a write at the same time, so TLS runs
through ``ssl.MemoryBIO``: the raw socket is read without a lock, and every
use of the ``SSLObject`` (decrypting what was read, encrypting what is sent)
happens under one lock.
"""

from __future__ import annotations

import abc
import contextlib
import socket
import ssl
import threading

from protocol.address import Address
from protocol.errors import ConnectionLost

_CHUNK = 65536


class Transport(abc.ABC):
    """A connected byte stream: one reader thread, writers serialised by the caller."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    @abc.abstractmethod
    def recv(self) -> bytes:
        """Some bytes; ``b""`` at end of stream. ``TimeoutError`` when none came in time."""

    @abc.abstractmethod
    def sendall(self, data: bytes) -> None:
        """Send every byte or raise ``OSError``."""

    def settimeout(self, seconds: float) -> None:
        """Bound each ``recv`` and ``sendall``."""
        self._sock.settimeout(seconds)

    def shutdown(self) -> None:
        """Wake a blocked ``recv`` and stop both directions; safe to repeat."""
        with contextlib.suppress(OSError):  # already disconnected: nothing left to wake
            self._sock.shutdown(socket.SHUT_RDWR)

    def shutdown_write(self) -> None:
        """Send end-of-stream after what was written; reading goes on until the peer closes."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._sock.close()


class PlainTransport(Transport):
    def recv(self) -> bytes:
        return self._sock.recv(_CHUNK)

    def sendall(self, data: bytes) -> None:
        self._sock.sendall(data)


class TlsTransport(Transport):
    """TLS through memory BIOs, so that reading and writing threads never overlap in OpenSSL."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, server_hostname: str) -> None:
        super().__init__(sock)
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing,
                                     server_hostname=server_hostname)
        self._lock = threading.Lock()  # guards _tls and both BIOs; orders raw writes
        self._eof = False

    def handshake(self) -> None:
        """Complete the TLS handshake; called before the transport is shared."""
        while True:
            try:
                with self._lock:
                    self._tls.do_handshake()
                    self._flush()
                return
            except ssl.SSLWantReadError:
                with self._lock:
                    self._flush()
                data = self._sock.recv(_CHUNK)
                if not data:
                    raise ConnectionLost("connection closed during the TLS handshake") from None
                with self._lock:
                    self._incoming.write(data)

    def recv(self) -> bytes:
        while True:
            with self._lock:
                plain = self._decrypt()
            if plain or self._eof:
                return plain
            data = self._sock.recv(_CHUNK)
            if not data:
                return b""
            with self._lock:
                self._incoming.write(data)
                plain = self._decrypt()
                self._flush()  # a read can produce protocol output (key update)
            if plain or self._eof:
                return plain

    def sendall(self, data: bytes) -> None:
        with self._lock:
            self._tls.write(data)
            self._flush()

    def _decrypt(self) -> bytes:
        chunks: list[bytes] = []
        while not self._eof:
            try:
                chunk = self._tls.read(_CHUNK)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self._eof = True
                break
            if not chunk:
                self._eof = True
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def _flush(self) -> None:
        pending = self._outgoing.read()
        if pending:
            self._sock.sendall(pending)


def open_transport(address: Address, timeout: float,
                   tls_context: ssl.SSLContext | None = None) -> Transport:
    """Connect to ``address`` within ``timeout`` s, TLS if the address or a context asks for it.

    Raises ``OSError`` (refused, unreachable, timed out, TLS failure) or
    ``ConnectionLost``.
    """
    sock = socket.create_connection((address.host, address.port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not (address.tls or tls_context is not None):
            return PlainTransport(sock)
        context = tls_context or ssl.create_default_context()
        transport = TlsTransport(sock, context, address.host)
        transport.handshake()
        return transport
    except BaseException:
        sock.close()
        raise
