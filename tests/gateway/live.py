"""Helpers for tests against live gateways: log in, read Redis state, count threads."""

from __future__ import annotations

import threading
from typing import Any

import redis

from tests.support.waiting import wait_for
from tests.support.wire import WireClient


def login(client: WireClient, name: str, rooms: tuple[str, ...] | list[str] = ("lobby",),
          **extra: Any) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``hello``, then the ``welcome`` and one ``history`` per room; returns both."""
    welcome = client.hello(name, rooms=list(rooms), **extra)
    assert welcome["rooms"] == list(rooms)
    histories = {room: client.recv_type("history", room=room) for room in rooms}
    return welcome, histories


def error(client: WireClient, code: str, timeout: float | None = None,
          **match: Any) -> dict[str, Any]:
    """The next ``error`` frame, which must carry ``code``."""
    frame = client.recv_type("error", timeout=timeout, **match)
    assert frame["code"] == code, frame
    assert isinstance(frame["message"], str) and frame["message"]
    return frame


def ids(frames: list[dict[str, Any]], room: str | None = None) -> list[int]:
    """Message ids in ``frames``, from live messages and history batches, in order."""
    out: list[int] = []
    for f in frames:
        if f["type"] == "message" and (room is None or f["room"] == room):
            out.append(f["id"])
        elif f["type"] == "history" and (room is None or f["room"] == room):
            out.extend(m["id"] for m in f["messages"])
    return out


def read_messages(client: WireClient, room: str, until_id: int,
                  timeout: float = 10.0) -> list[dict[str, Any]]:
    """Every frame up to and including the message of ``room`` with id ``until_id``."""
    got: list[dict[str, Any]] = []
    while True:
        frame = client.recv(timeout)
        got.append(frame)
        if until_id in ids([frame], room):
            return got


def frames_until(client: WireClient, kind: str, timeout: float = 10.0,
                 **match: Any) -> list[dict[str, Any]]:
    """Every frame up to and including the first ``kind`` frame matching ``match``."""
    got: list[dict[str, Any]] = []
    while True:
        frame = client.recv(timeout)
        got.append(frame)
        if frame["type"] == kind and all(frame.get(k) == v for k, v in match.items()):
            return got


def redis_state(client: redis.Redis) -> dict[bytes, Any]:
    """Every room and user key with its value (gateway bookkeeping excluded: liveness, each
    gateway's own keys, the new-room buckets)."""
    state: dict[bytes, Any] = {}
    for key in client.scan_iter(count=1000):
        if key.startswith((b"chat:", b"{liveness}", b"{gw:")):
            continue
        kind = client.type(key)
        if kind == b"string":
            state[key] = client.get(key)
        elif kind == b"list":
            state[key] = client.lrange(key, 0, -1)
        elif kind == b"hash":
            state[key] = client.hgetall(key)
        elif kind == b"set":
            state[key] = client.smembers(key)
        elif kind == b"zset":
            state[key] = client.zrange(key, 0, -1, withscores=True)
    return state


def send_ok(client: WireClient, room: str, text: str, ref: str) -> int:
    """Send a message and return its id from the ``ack``."""
    client.send(type="send", room=room, text=text, ref=ref)
    return int(client.recv_type("ack", ref=ref)["id"])


def wait_closed_with_bye(client: WireClient, reason: str, timeout: float = 10.0
                         ) -> list[dict[str, Any]]:
    """The server closes the connection, and its last frame is ``bye`` with ``reason``."""
    frames = client.wait_closed(timeout)
    assert frames, "closed without a bye"
    assert frames[-1] == {"type": "bye", "reason": reason}, frames[-3:]
    return frames


def wait_threads(baseline: int, timeout: float = 10.0) -> None:
    import threading

    wait_for(lambda: threading.active_count() <= baseline, timeout,
             what=f"thread count back to {baseline} (now {threading.active_count()}: "
             f"{sorted(t.name for t in threading.enumerate())})")


class Collector:
    """Reads one client's frames on a thread, so it keeps up while the test does other things."""

    def __init__(self, client: WireClient) -> None:
        self.client = client
        self.frames: list[dict[str, Any]] = []
        self._seen = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="collector")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame = self.client.recv(0.2)
            except AssertionError:
                if self.client.closed:
                    return
                continue
            with self._seen:
                self.frames.append(frame)
                self._seen.notify_all()

    def snapshot(self) -> list[dict[str, Any]]:
        with self._seen:
            return list(self.frames)

    def ids(self, room: str = "lobby") -> list[int]:
        return ids(self.snapshot(), room)

    def wait_id(self, room: str, target: int, timeout: float = 15.0) -> list[int]:
        """Wait until the message ``target`` of ``room`` arrived; returns the room's ids."""
        def arrived() -> bool:
            return any(f["type"] == "message" and f["room"] == room and f["id"] >= target
                       for f in reversed(self.frames[-50:])) or target in ids(self.frames, room)

        with self._seen:
            if not self._seen.wait_for(arrived, timeout):
                raise AssertionError(f"id {target} in {room} did not arrive")
        return self.ids(room)

    def stop(self) -> list[dict[str, Any]]:
        self._stop.set()
        self._thread.join(5)
        return self.snapshot()
