"""A client that stops reading is cut off and never slows the others down.

Twenty clients and the sender read a steady stream in one room; the delivery
latency of each message (sender's clock to reader's clock, one process) is
measured first with everyone reading, then while one client has stopped
reading (small ``--max-outbound``). That client must be disconnected
(``bye``/``slow_consumer`` or a reset) and the others' p99 must stay within
3x the baseline plus 20 ms, with every message delivered in order.
"""

from __future__ import annotations

import json
import selectors
import socket
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from protocol.codec import LineReader
from protocol.limits import MAX_SERVER_LINE
from tests.load.conftest import StartGateways
from tests.support.gateways import GatewayProcess
from tests.support.waiting import wait_for

ROOM = "feed"
READERS = 20
RATE = 200.0
"""Messages per second from the sender."""
PHASE = 400
"""Messages sent in each phase (two seconds at ``RATE``)."""
MAX_MESSAGES = PHASE * 8
PAD = "x" * 1500
MAX_OUTBOUND = 65536


@dataclass(slots=True)
class Reader:
    """One logged-in client whose messages the reader thread times."""

    name: str
    sock: socket.socket
    lines: LineReader = field(default_factory=lambda: LineReader(MAX_SERVER_LINE))
    last_id: int = 0
    latencies: dict[int, float] = field(default_factory=dict)
    """seq -> seconds from send to receipt."""
    out_of_order: list[tuple[int, int]] = field(default_factory=list)


def open_reader(address: tuple[str, int], name: str, rcvbuf: int | None = None) -> Reader:
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect: the window
    sock.settimeout(10)
    sock.connect(address)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    reader = Reader(name, sock)
    sock.sendall(json.dumps({"type": "hello", "name": name, "rooms": [ROOM]}).encode() + b"\n")
    kinds = []
    while "history" not in kinds:
        data = sock.recv(65536)
        assert data, f"{name} was closed while logging in"
        kinds += [json.loads(line)["type"] for line in reader.lines.feed(data)]
    assert kinds[0] == "welcome", kinds
    sock.setblocking(False)
    return reader


class ReadLoop:
    """One thread reading every registered client; ``pause`` stops reading one."""

    def __init__(self, readers: list[Reader]) -> None:
        self._selector = selectors.DefaultSelector()
        for reader in readers:
            self._selector.register(reader.sock, selectors.EVENT_READ, reader)
        self._pause: list[Reader] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="read-loop")
        self._thread.start()

    def pause(self, reader: Reader) -> None:
        with self._lock:
            self._pause.append(reader)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._selector.close()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                with self._lock:
                    paused, self._pause = self._pause, []
                for reader in paused:
                    self._selector.unregister(reader.sock)
                for key, _ in self._selector.select(0.05):
                    self._read(key.data)
        except BaseException as exc:  # reported by the test thread
            self.failure = exc

    def _read(self, reader: Reader) -> None:
        data = reader.sock.recv(1 << 18)
        now = time.perf_counter()
        if not data:
            raise AssertionError(f"{reader.name} was disconnected")
        for line in reader.lines.feed(data):
            frame = json.loads(line)
            if frame["type"] != "message":
                continue
            if frame["id"] != reader.last_id + 1:
                reader.out_of_order.append((reader.last_id, frame["id"]))
            reader.last_id = frame["id"]
            seq, sent, _ = frame["text"].split(" ", 2)
            reader.latencies[int(seq)] = now - float(sent)


def slow_consumers(gw: GatewayProcess) -> float:
    """The gateway's ``chat_slow_consumers_total`` counter."""
    url = f"http://127.0.0.1:{gw.health_port}/metrics"
    with urllib.request.urlopen(url, timeout=2) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("chat_slow_consumers_total "):
                return float(line.split()[1])
    return 0.0


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def final_frames(sock: socket.socket) -> tuple[list[dict[str, Any]], bool]:
    """Everything left to read on a socket the gateway closed; and whether it was reset."""
    sock.setblocking(True)
    sock.settimeout(10)
    lines = LineReader(MAX_SERVER_LINE)
    frames: list[dict[str, Any]] = []
    while True:
        try:
            data = sock.recv(1 << 20)
        except ConnectionResetError:
            return frames, True
        if not data:
            return frames, False
        frames += [json.loads(line) for line in lines.feed(data)]


def test_slow_consumer_is_cut_off_without_slowing_the_others(
        start_gateways: StartGateways) -> None:
    (gw,) = start_gateways(1, "--log-level", "INFO", "--max-outbound", str(MAX_OUTBOUND),
                           "--rate-per-s", "1000", "--burst", "1000")
    readers = [open_reader(gw.address, f"r{i}") for i in range(READERS)]
    sender = open_reader(gw.address, "sender")  # a member, so it reads the stream too
    slow = open_reader(gw.address, "slow", rcvbuf=4096)
    loop = ReadLoop([*readers, sender, slow])
    everyone = [*readers, sender]
    try:
        started = time.perf_counter()
        seq = 0

        def send_next() -> None:
            nonlocal seq
            time.sleep(max(0.0, started + seq / RATE - time.perf_counter()))  # pacing
            text = f"{seq} {time.perf_counter():.6f} {PAD}"
            sender.sock.sendall(json.dumps({"type": "send", "room": ROOM, "text": text}
                                           ).encode() + b"\n")
            seq += 1

        while seq < PHASE:
            send_next()
        loop.pause(slow)  # from here on the slow client reads nothing
        kicked_at = None
        while seq < 2 * PHASE or (kicked_at is None and seq < MAX_MESSAGES):
            send_next()
            if kicked_at is None and seq % 20 == 0 and slow_consumers(gw) >= 1:
                kicked_at = seq
        print("kicked seen at", kicked_at)
        assert slow_consumers(gw) == 1, f"no slow consumer after {seq} messages"
        total = seq
        wait_for(lambda: all(r.last_id >= total for r in everyone) or loop.failure,
                 timeout=15, what="every message at every reader")
    finally:
        loop.stop()
    assert loop.failure is None, repr(loop.failure)

    for reader in everyone:
        assert not reader.out_of_order, (reader.name, reader.out_of_order[:5])
        assert sorted(reader.latencies) == list(range(total)), reader.name
    before = [r.latencies[s] for r in everyone for s in range(PHASE)]
    during = [r.latencies[s] for r in everyone for s in range(PHASE, total)]
    p99_before, p99_during = p99(before), p99(during)
    frames, reset = final_frames(slow.sock)
    print(f"\nLOAD slow consumer: delivery p99 {p99_before * 1000:.1f} ms before, "
          f"{p99_during * 1000:.1f} ms while one client stopped reading "
          f"({READERS + 1} readers, {RATE:.0f} msg/s of {len(PAD)} B, --max-outbound "
          f"{MAX_OUTBOUND}); cut off after {total - PHASE} messages, "
          f"{'reset' if reset else frames[-1] if frames else 'closed'}")
    assert reset or frames[-1] == {"type": "bye", "reason": "slow_consumer"}, frames[-2:]
    import statistics
    sent_at = {}
    for r in everyone:
        for sq, lat in r.latencies.items():
            if lat > 0.03:
                sent_at.setdefault(sq, []).append(round(lat*1000))
    off = time.time() - time.perf_counter()
    for sq in sorted(sent_at)[:60]:
        print(sq, len(sent_at[sq]), max(sent_at[sq]), time.strftime("%H:%M:%S", time.localtime(started + off + sq / RATE)), f"{(started + off + sq / RATE) % 1:.3f}")
    print("\n".join(l for l in gw.stderr_tail(200000).splitlines() if "slow" in l or "sid" in l and "user=slow" in l))
    for lo in range(0, total, 200):
        chunk = [r.latencies[s] for r in everyone for s in range(lo, min(total, lo + 200))]
        print(lo, f"{max(chunk)*1000:.1f} {statistics.median(chunk)*1000:.1f}")
    assert p99_during <= 3 * p99_before + 0.020, (p99_before, p99_during)
    for reader in [*everyone, slow]:
        reader.sock.close()
