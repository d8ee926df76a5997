"""A TCP proxy in front of a real redis-server that can play a Redis restart at the worst
moment: it lets the next script through, swallows Redis's reply to it, drops every
connection and refuses new ones for a while (the chaos test's "restart redis (data kept)"
with a reply in flight, made deterministic)."""

from __future__ import annotations

import contextlib
import select
import socket
import threading


class RestartingProxy:
    """Forwards TCP to Redis; ``restart_after_next_script(down_s)`` arms the restart."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._listener: socket.socket | None = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._armed: float | None = None
        """The restart's down time, armed for the next script."""
        self._marker = b"EVALSHA"
        self._watched: int | None = None
        """The connection whose next reply is swallowed (the script's)."""
        self.restarted = threading.Event()
        self.up = threading.Event()
        self._stop = False
        self._closed = threading.Event()
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def restart_after_next_script(self, down_s: float, marker: bytes = b"EVALSHA") -> None:
        """Arm the restart for the next bytes to Redis holding ``marker`` (a script's
        argument picks the one script among a gateway's many)."""
        with self._lock:
            self._armed = down_s
            self._marker = marker

    def _accept(self, listener: socket.socket) -> None:
        while not self._stop:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            link = id(client)
            for args in ((client, upstream, link, True), (upstream, client, link, False)):
                threading.Thread(target=self._pump, args=args, daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, link: int, upward: bool) -> None:
        with contextlib.suppress(OSError):
            while not self._stop:
                if not select.select([src], [], [], 0.2)[0]:
                    continue
                data = src.recv(65536)
                if not data:
                    return
                with self._lock:
                    if upward and self._armed is not None and self._marker in data:
                        self._watched = link
                    swallow = not upward and link == self._watched
                if swallow:  # Redis ran the script and answered: the answer is lost
                    self._restart()
                    return
                dst.sendall(data)

    def _restart(self) -> None:
        with self._lock:
            down_s, self._armed, self._watched = self._armed or 0.0, None, None
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, []
        if listener is not None:
            _close_listener(listener)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self.restarted.set()
        threading.Thread(target=self._come_back, args=(down_s,), daemon=True).start()

    def _come_back(self, down_s: float) -> None:
        # the restart's length is the scenario, not a wait for an event; ``close`` ends it
        if self._closed.wait(down_s):
            return
        try:
            listener = socket.create_server(("127.0.0.1", self.port))
        except OSError:  # the port went to someone else: Redis stays away
            return
        with self._lock:
            if self._stop:
                listener.close()
                return
            self._listener = listener
        self.up.set()
        self._accept(listener)

    def close(self) -> None:
        self._stop = True
        self._closed.set()
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, []
        if listener is not None:
            _close_listener(listener)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()


def _close_listener(listener: socket.socket) -> None:
    """Stop listening now: a bare ``close`` leaves the socket listening while the accepting
    thread's ``accept`` still holds it (so a restart refused nothing)."""
    with contextlib.suppress(OSError):
        listener.shutdown(socket.SHUT_RDWR)
    listener.close()
