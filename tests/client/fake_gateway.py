"""A scripted fake gateway: a real TCP (or TLS) listener on 127.0.0.1 port 0.

Each accepted connection runs the next script of the list on its own
thread; a script reads the client's frames (``expect``) and writes server
frames (``send``) in whatever order the test needs: duplicates, gaps, drops,
``bye``. Connections beyond the scripts are closed at once. Leaving the
``with`` block closes everything and re-raises the first script failure, so
an assertion inside a script fails the test.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import TypeVar

from protocol import frames as fr
from protocol.codec import LineReader, decode_client, encode
from protocol.limits import Limits
from tests.support.waiting import wait_for

T = TypeVar("T")
EPOCH = "e1"
READ_TIMEOUT = 5.0


class FakeConnection:
    """One client connection as a script sees it."""

    def __init__(self, sock: socket.socket, index: int, gateway_id: str) -> None:
        self.sock = sock
        self.index = index
        self.gateway_id = gateway_id
        self.answer_pings = True
        self.received: list[fr.ClientFrame] = []  # every frame read, pings included
        self.closed_by_client = threading.Event()
        self._closed = False
        self._reader = LineReader(1 << 20)
        self._lines: deque[bytes] = deque()
        sock.settimeout(READ_TIMEOUT)

    def recv(self) -> fr.ClientFrame | None:
        """The client's next frame; None once the connection is closed.

        Like a gateway, answers ``bye`` with ``bye``/``client`` and closes.
        """
        while not self._lines:
            if self._closed:
                return None
            try:
                data = self.sock.recv(65536)
            except ConnectionError:
                data = b""
            if not data:
                self.closed_by_client.set()
                self.drop()
                return None
            self._lines.extend(self._reader.feed(data))
        frame = decode_client(self._lines.popleft())
        self.received.append(frame)
        if isinstance(frame, fr.ByeRequest):
            self.bye(fr.ByeReason.CLIENT)
        return frame

    def expect(self, kind: type[T]) -> T:
        """The next frame that is not a ping or typing; it must be a ``kind``."""
        while True:
            frame = self.recv()
            if isinstance(frame, fr.Ping):
                if self.answer_pings:
                    self.send(fr.Pong(frame.ref))
                continue
            if isinstance(frame, fr.TypingRequest):
                continue
            assert isinstance(frame, kind), f"expected {kind.__name__}, got {frame!r}"
            return frame

    def serve(self) -> None:
        """Read (and answer pings) until the client closes: keeps the connection alive."""
        while True:
            frame = self.recv()
            if frame is None:
                return
            if isinstance(frame, fr.Ping) and self.answer_pings:
                self.send(fr.Pong(frame.ref))

    def send(self, *frames: fr.ServerFrame) -> None:
        self.sock.sendall(b"".join(encode(frame) for frame in frames))

    def welcome(self, hello: fr.Hello, token: str = "tok-1",
                rooms: tuple[str, ...] | None = None) -> None:
        self.send(fr.Welcome(hello.name, self.gateway_id, rooms or hello.rooms, token,
                             Limits().announced()))

    def login(self, token: str = "tok-1",
              histories: Mapping[str, fr.History] | None = None) -> fr.Hello:
        """Expect ``hello``, answer ``welcome`` and one ``history`` per room (empty by default)."""
        hello = self.expect(fr.Hello)
        self.welcome(hello, token)
        given = histories or {}
        self.send(*(given.get(room) or fr.History(room, EPOCH, (), True) for room in hello.rooms))
        return hello

    def bye(self, reason: fr.ByeReason) -> None:
        with contextlib.suppress(OSError):  # the client may have gone already
            self.send(fr.Bye(reason))
        self.drop()

    def drop(self) -> None:
        """Close at once, as a crashed gateway would."""
        self._closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            return
        finally:
            self.sock.close()


Script = Callable[[FakeConnection], None]


class FakeGateway:
    """Listens on 127.0.0.1:0; the i-th connection runs ``scripts[i]``."""

    def __init__(self, *scripts: Script, gateway_id: str = "fake-gw",
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.gateway_id = gateway_id
        self.connections: list[FakeConnection] = []
        self._scripts = scripts
        self._ssl_context = ssl_context
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._errors: list[BaseException] = []
        self.tls_failures: list[ssl.SSLError] = []
        self._accepts = 0
        self._acceptor = threading.Thread(target=self._accept_loop, name="fake-accept")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def accepted(self) -> int:
        return self._accepts

    def wait_connections(self, count: int, timeout: float = 10.0) -> FakeConnection:
        """Wait until ``count`` connections ran their script; the last one."""
        wait_for(lambda: len(self.connections) >= count, timeout, what=f"{count} connections")
        return self.connections[count - 1]

    def __enter__(self) -> FakeGateway:
        self._acceptor.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping.set()
        with socket.create_connection(("127.0.0.1", self.port)):
            pass  # wakes accept()
        self._acceptor.join(READ_TIMEOUT)
        self._listener.close()
        for conn in self.connections:
            conn.drop()
        for thread in self._threads:
            thread.join(READ_TIMEOUT)
        if self._errors:
            raise self._errors[0]

    def _accept_loop(self) -> None:
        while True:
            sock, _ = self._listener.accept()
            if self._stopping.is_set():
                sock.close()
                return
            index = self._accepts
            self._accepts += 1
            if index >= len(self._scripts):
                sock.close()
                continue
            thread = threading.Thread(target=self._run, args=(sock, index), name=f"fake-{index}")
            self._threads.append(thread)
            thread.start()

    def _run(self, sock: socket.socket, index: int) -> None:
        try:
            if self._ssl_context is not None:
                sock.settimeout(READ_TIMEOUT)
                try:
                    sock = self._ssl_context.wrap_socket(sock, server_side=True)
                except ssl.SSLError as exc:  # a test of a refused certificate expects it
                    self.tls_failures.append(exc)
                    sock.close()
                    return
            conn = FakeConnection(sock, index, self.gateway_id)
            self.connections.append(conn)
            self._scripts[index](conn)
        except BaseException as exc:  # reported when the test leaves the with block
            if not self._stopping.is_set():
                self._errors.append(exc)


def history(ids: range | list[int], room: str = "lobby", epoch: str = EPOCH,
            complete: bool = True, sender: str = "bob") -> fr.History:
    return fr.History(room, epoch, tuple(message(i, room, sender) for i in ids), complete)


def message(id_: int, room: str = "lobby", sender: str = "bob") -> fr.Message:
    return fr.Message(room, id_, sender, f"message {id_}", 1_700_000_000.0 + id_)
