"""Measure the abuse attacks of issue 9 against a real gateway: not a test, a report.

    python -m tests.security.abuse_figures

Starts a private redis-server and one ``python -m gateway`` process (default
flags) on loopback, then runs each attack while a bystander pings at 15 a
second, and prints: the gateway's peak RSS and threads, the bystander's ping
p50/p99 before and during, and the time until the attacker was cut off.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import socket
import statistics
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from bench.procstat import cpu_seconds, rss_kib
from gateway.redis.broker import Broker
from tests.support.gateways import GatewayProcess
from tests.support.redis_server import RedisServer

TEXT = "x" * 3900
MESSAGES = 1000


def threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"^Threads:\s+(\d+)", f.read(), re.M).group(1))  # type: ignore[union-attr]


def metric(gw: GatewayProcess, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{gw.health_port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


def connect(gw: GatewayProcess, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect(gw.address)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def login(sock: socket.socket, name: str, rooms: list[str]) -> None:
    sock.sendall(json.dumps({"type": "hello", "name": name, "rooms": rooms}).encode() + b"\n")
    buf = b""
    while sum(line.startswith(b'{"type":"history"') for line in buf.split(b"\n")[:-1]) < len(
            rooms):
        buf += sock.recv(1 << 20)


class Pinger:
    """A bystander that pings 15 times a second and keeps every round trip."""

    def __init__(self, gw: GatewayProcess) -> None:
        self.sock = connect(gw)
        login(self.sock, "bystander", ["lobby"])
        self.rtts: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        reader = self.sock.makefile("rb")
        n = 0
        while not self._stop.is_set():
            n += 1
            sent = time.perf_counter()
            self.sock.sendall(b'{"type":"ping","ref":"p%d"}\n' % n)
            while b'"p%d"' % n not in reader.readline():
                pass
            self.rtts.append(time.perf_counter() - sent)
            self._stop.wait(1 / 15)

    def window(self) -> Callable[[], tuple[float, float]]:
        start = len(self.rtts)

        def done() -> tuple[float, float]:
            sample = sorted(self.rtts[start:]) or [float("nan")]
            return (statistics.median(sample) * 1000,
                    sample[min(len(sample) - 1, int(len(sample) * 0.99))] * 1000)
        return done

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@dataclass
class Figure:
    attack: str
    cut_s: float | None
    peak_rss_mib: float
    peak_threads: int
    ping_p50_ms: float
    ping_p99_ms: float
    note: str = ""


@contextlib.contextmanager
def sampling(pid: int) -> Iterator[dict[str, float]]:
    peak = {"rss": 0.0, "threads": 0.0}
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            peak["rss"] = max(peak["rss"], (rss_kib(pid) or 0) / 1024)
            peak["threads"] = max(peak["threads"], threads(pid))
            stop.wait(0.05)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join(5)


def history_attack(gw: GatewayProcess, pinger: Pinger) -> Figure:
    """A client that never reads asks for 200 messages of ~4 KB 19 times a second."""
    sock = connect(gw, rcvbuf=4096)
    login(sock, "hoarder", ["big"])
    before = metric(gw, "chat_slow_consumers_total")
    window = pinger.window()
    started = time.monotonic()
    cut = None
    with sampling(gw.proc.pid) as peak:
        while time.monotonic() - started < 30:
            with contextlib.suppress(OSError):
                sock.sendall(b'{"type":"history","room":"big","limit":200}\n')
            if metric(gw, "chat_slow_consumers_total") > before:
                cut = time.monotonic() - started
                break
            time.sleep(1 / 19)
    sock.close()
    p50, p99 = window()
    return Figure("history, never reading", cut, peak["rss"], int(peak["threads"]), p50, p99)


def junk_attack(gw: GatewayProcess, pinger: Pinger) -> Figure:
    """A client that writes invalid lines as fast as it can, reading its answers."""
    sock = connect(gw)
    login(sock, "junk", ["lobby"])
    window = pinger.window()
    started = time.monotonic()
    cpu0 = cpu_seconds(gw.proc.pid) or 0.0
    ended: list[float] = []

    def read() -> None:
        buf = b""
        with contextlib.suppress(OSError):
            while data := sock.recv(1 << 16):
                buf = (buf + data)[-200:]
        ended.append(time.monotonic())
        reader_tail.append(buf)

    reader_tail: list[bytes] = []
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    with sampling(gw.proc.pid) as peak:
        with contextlib.suppress(OSError):
            while not ended and time.monotonic() - started < 30:
                sock.sendall(b"\x00junk\n" * 1000)
        reader.join(10)
    sock.close()
    p50, p99 = window()
    cpu = (cpu_seconds(gw.proc.pid) or 0.0) - cpu0
    last = reader_tail[0].strip().split(b"\n")[-1].decode() if reader_tail else "?"
    return Figure("junk lines", ended[0] - started if ended else None, peak["rss"],
                  int(peak["threads"]), p50, p99, f"last line {last}; gateway CPU {cpu:.2f} s")


def health_attack(gw: GatewayProcess, pinger: Pinger) -> Figure:
    """300 idle connections to the health port."""
    window = pinger.window()
    with sampling(gw.proc.pid) as peak:
        idle = [socket.create_connection(("127.0.0.1", gw.health_port), timeout=5)
                for _ in range(300)]
        time.sleep(2)
        started = time.perf_counter()
        status = gw.health()
        probe_ms = (time.perf_counter() - started) * 1000
        for sock in idle:
            sock.close()
    p50, p99 = window()
    return Figure("300 idle health connections", None, peak["rss"], int(peak["threads"]),
                  p50, p99, f"/healthz meanwhile: {status} in {probe_ms:.1f} ms")


def descriptor_attack(gw: GatewayProcess, pinger: Pinger) -> Figure:
    """The file limit lowered to what is in use plus 8, then 50 connections."""
    pid = gw.proc.pid
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (len(os.listdir(f"/proc/{pid}/fd")) + 8, hard))
    window = pinger.window()
    cpu0 = cpu_seconds(pid) or 0.0
    with sampling(pid) as peak:
        socks = [connect(gw) for _ in range(50)]
        started = time.perf_counter()
        late = connect(gw)
        answer = late.recv(200)
        answered_ms = (time.perf_counter() - started) * 1000
        time.sleep(3)
    cpu = (cpu_seconds(pid) or 0.0) - cpu0
    for sock in [*socks, late]:
        sock.close()
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
    lines = gw.stderr_tail(1 << 20).count("event=accept_failed")
    p50, p99 = window()
    return Figure("out of file descriptors", None, peak["rss"], int(peak["threads"]), p50, p99,
                  f"late client told {answer.decode().strip()!r} in {answered_ms:.1f} ms; "
                  f"gateway CPU {cpu:.2f} s in 3 s; {lines} log lines")


def main() -> None:
    redis_server = RedisServer(persist=False)
    redis_server.start()
    gw = GatewayProcess(redis_server.url, "gw-abuse")
    try:
        broker = Broker.from_url(redis_server.url, "filler", history=1000, lease_ms=8000)
        for _ in range(MESSAGES):
            broker.publish_message("big", "filler", TEXT, time.time(), None)
        broker.close()
        pinger = Pinger(gw)
        time.sleep(3)
        baseline = pinger.window()
        time.sleep(3)
        p50, p99 = baseline()
        print(f"gateway at rest: RSS {(rss_kib(gw.proc.pid) or 0) / 1024:.0f} MiB, "
              f"{threads(gw.proc.pid)} threads; bystander ping p50 {p50:.2f} ms, p99 {p99:.2f} ms")
        for attack in (history_attack, junk_attack, health_attack, descriptor_attack):
            f = attack(gw, pinger)
            cut = f"{f.cut_s:.2f} s" if f.cut_s is not None else "-"
            print(f"{f.attack}: cut off after {cut}; peak RSS {f.peak_rss_mib:.0f} MiB, "
                  f"{f.peak_threads} threads; bystander ping p50 {f.ping_p50_ms:.2f} ms, "
                  f"p99 {f.ping_p99_ms:.2f} ms {('; ' + f.note) if f.note else ''}")
        pinger.stop()
    finally:
        gw.close()
        redis_server.close()


if __name__ == "__main__":
    main()
