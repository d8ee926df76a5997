"""Thousands of raw protocol connections held by one thread, for load tests.

A thread per test connection would cost the test process as much as the
gateway it measures; instead ``Swarm`` drives non-blocking sockets through one
``selectors`` loop: connect, send ``hello``, read the first answer, then keep
the socket open and idle. Each connection ends with an ``Outcome``: the
welcome, an error code (and whether the gateway then closed the connection),
or how the connection failed.
"""

from __future__ import annotations

import errno
import json
import selectors
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from protocol.codec import LineReader
from protocol.limits import MAX_SERVER_LINE

Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Target:
    """One connection to open: where, as whom, and from which source address."""

    address: Address
    name: str
    source: str | None = None
    rooms: tuple[str, ...] = ()


@dataclass(slots=True)
class Conn:
    target: Target
    sock: socket.socket
    reader: LineReader = field(default_factory=lambda: LineReader(MAX_SERVER_LINE))
    first: dict[str, Any] | None = None
    """The gateway's first frame (``welcome`` or ``error``)."""
    failure: str | None = None
    """Set when the connection failed before an answer: ``connect:<errno>``, ``reset``, ``eof``."""
    closed_by_peer: bool = False
    hello_sent: bool = False
    started: float = 0.0
    answered: float = 0.0

    @property
    def outcome(self) -> str:
        """``welcome``, an error code, or the failure."""
        if self.first is not None:
            return "welcome" if self.first["type"] == "welcome" else str(self.first.get("code"))
        return self.failure or "pending"

    @property
    def done(self) -> bool:
        """Answered and, after a refusal, closed by the gateway (or failed)."""
        if self.failure is not None:
            return True
        if self.first is None:
            return False
        return self.first["type"] == "welcome" or self.closed_by_peer


class Swarm:
    """Opens and holds many connections; ``close()`` drops them all."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self.conns: list[Conn] = []

    def __enter__(self) -> Swarm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def login(self, targets: Sequence[Target], *, per_second: float | None = None,
              window: int = 256, timeout: float = 60.0) -> list[Conn]:
        """Connect each target and send its ``hello``; return once every one has an outcome.

        At most ``window`` connections wait for an answer at a time; with
        ``per_second`` the connects are also spread evenly at that rate (a storm).
        """
        todo = list(targets)
        todo.reverse()
        batch: list[Conn] = []
        waiting = 0
        started = time.monotonic()
        deadline = started + timeout
        while todo or waiting:
            now = time.monotonic()
            if now > deadline:
                raise AssertionError(
                    f"{waiting} connections unanswered after {timeout}s "
                    f"({len(todo)} not even started)")
            while todo and waiting < window and (
                    per_second is None or now >= started + len(batch) / per_second):
                batch.append(self._open(todo.pop()))
                waiting += 1
            pause = 0.05 if per_second is None or not todo else max(
                0.0, started + len(batch) / per_second - time.monotonic())
            for key, _ in self._selector.select(pause):
                conn: Conn = key.data
                if self._step(conn):
                    waiting -= 1
        return batch

    def _open(self, target: Target) -> Conn:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        if target.source is not None:
            sock.bind((target.source, 0))
        conn = Conn(target, sock, started=time.monotonic())
        self.conns.append(conn)
        code = sock.connect_ex(target.address)
        if code not in (0, errno.EINPROGRESS):
            conn.failure = f"connect:{errno.errorcode.get(code, code)}"
            # still counted as waiting by the caller: answer through _step at once
        self._selector.register(sock, selectors.EVENT_WRITE, conn)
        return conn

    def _step(self, conn: Conn) -> bool:
        """Advance one connection; True when it reached its outcome."""
        if conn.failure is not None:
            return self._finish(conn)
        if not conn.hello_sent:
            code = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                conn.failure = f"connect:{errno.errorcode.get(code, code)}"
                return self._finish(conn)
            hello = {"type": "hello", "name": conn.target.name, "rooms": list(conn.target.rooms)}
            conn.sock.send(json.dumps(hello).encode() + b"\n")  # tiny: fits an empty buffer
            conn.hello_sent = True
            self._selector.modify(conn.sock, selectors.EVENT_READ, conn)
            return False
        try:
            data = conn.sock.recv(65536)
        except BlockingIOError:
            return False
        except ConnectionResetError:
            if conn.first is None:
                conn.failure = "reset"
            conn.closed_by_peer = True
            return self._finish(conn)
        if not data:
            if conn.first is None:
                conn.failure = "eof"
            conn.closed_by_peer = True
            return self._finish(conn)
        for line in conn.reader.feed(data):
            if conn.first is None:
                conn.first = json.loads(line)
                conn.answered = time.monotonic()
        return self._finish(conn) if conn.done else False

    def _finish(self, conn: Conn) -> bool:
        self._selector.unregister(conn.sock)
        return True

    def close(self) -> None:
        for conn in self.conns:
            conn.sock.close()
        self.conns.clear()
        self._selector.close()


def outcomes(conns: Sequence[Conn]) -> dict[str, int]:
    """How many connections ended each way."""
    counts: dict[str, int] = {}
    for conn in conns:
        counts[conn.outcome] = counts.get(conn.outcome, 0) + 1
    return counts


def vm_status(pid: int) -> dict[str, int]:
    """``VmRSS``, ``VmSize`` (kB) and ``Threads`` of a process, from /proc."""
    wanted = {"VmRSS", "VmSize", "Threads"}
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in wanted:
                out[key] = int(value.split()[0])
    return out


def nofile_soft_limit(pid: int) -> int:
    """The soft ``Max open files`` of a process, from /proc."""
    with open(f"/proc/{pid}/limits") as limits:
        for line in limits:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    raise AssertionError(f"no open-files limit for pid {pid}")
