"""A bare RESP connection for the subscriber: big reads, hiredis parsing, select-able.

redis-py's ``PubSub`` turns every message into a dict through several Python
calls and cannot be woken by another thread; the subscriber instead owns this
plain socket, feeds whole reads to ``hiredis.Reader`` and takes every reply it
holds at once, so a burst of publications costs one ``recv`` and one pass.
Settings (host, port, TLS, user, password) come from the same URL the broker
uses.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from dataclasses import dataclass
from typing import Any

import hiredis
from redis.connection import SSLConnection, parse_url

_READ_SIZE = 1 << 18


class RedisWireError(OSError):
    """The connection failed or Redis answered a command with an error."""


@dataclass(frozen=True, slots=True)
class RedisAddress:
    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool
    ca_file: str | None = None
    """``?ssl_ca_certs=`` of the URL: the CA that signed Redis's certificate."""
    verify: bool = True
    """False for ``?ssl_cert_reqs=none`` (a test setup, never production)."""
    db: int = 0
    """The URL's database (``/N``): selected on connect, for links that run commands."""

    @classmethod
    def from_url(cls, url: str) -> RedisAddress:
        """Settings from redis-py's own parsing of the URL, the one the broker's pool uses."""
        options = parse_url(url)  # type: ignore[no-untyped-call]
        reqs = str(options.get("ssl_cert_reqs") or "required").lower()
        return cls(
            host=str(options.get("host") or "localhost"),
            port=int(options.get("port") or 6379),
            username=options.get("username") or None,
            password=options.get("password") or None,
            tls=options.get("connection_class") is SSLConnection,
            ca_file=options.get("ssl_ca_certs"),
            verify=reqs not in ("none", "cert_none"),
            db=int(options.get("db") or 0),
        )

    def tls_context(self) -> ssl.SSLContext:
        """The same trust the broker's redis-py pool gets from the URL's options."""
        context = ssl.create_default_context(cafile=self.ca_file)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


def pack(*args: str | bytes) -> bytes:
    """One command in RESP."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class RedisWire:
    """One connection; used by one thread only."""

    def __init__(self, address: RedisAddress, timeout: float = 2.0,
                 tls_context: ssl.SSLContext | None = None) -> None:
        sock = socket.create_connection((address.host, address.port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            if address.tls:
                context = tls_context or address.tls_context()
                sock = context.wrap_socket(sock, server_hostname=address.host)
            self.sock = sock
            self._reader = hiredis.Reader()
            self._hello(address)
        except BaseException:
            sock.close()
            raise

    def _hello(self, address: RedisAddress) -> None:
        """AUTH and SELECT, as the URL asks."""
        if address.password is not None:
            auth = ("AUTH", address.username, address.password) if address.username else (
                "AUTH", address.password)
            self.send(pack(*auth))
            reply = self.read_one()
            if isinstance(reply, hiredis.ReplyError):
                raise RedisWireError(f"Redis refused AUTH: {reply}")
        if address.db:
            self.send(pack("SELECT", str(address.db)))
            reply = self.read_one()
            if isinstance(reply, hiredis.ReplyError):
                raise RedisWireError(f"Redis refused SELECT {address.db}: {reply}")

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_one(self) -> Any:
        """Block (up to the socket timeout) for the next reply."""
        while True:
            reply = self._reader.gets()
            if reply is not False:
                return reply
            self._fill()

    def read_into(self, out: list[Any], count: int) -> None:
        """Append the next ``count`` replies to ``out`` as they come (those read stay there
        if the connection fails half way)."""
        reader = self._reader
        while count:
            reply = reader.gets()
            if reply is False:
                self._fill()
                continue
            out.append(reply)
            count -= 1

    def read_available(self) -> list[Any]:
        """One read from the socket, then every complete reply it made."""
        self._fill()
        if isinstance(self.sock, ssl.SSLSocket):
            while self.sock.pending():
                self._fill()
        replies = []
        while (reply := self._reader.gets()) is not False:
            replies.append(reply)
        return replies

    def _fill(self) -> None:
        try:
            data = self.sock.recv(_READ_SIZE)
        except TimeoutError as exc:
            raise RedisWireError("Redis did not answer in time") from exc
        if not data:
            raise RedisWireError("Redis closed the connection")
        self._reader.feed(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
