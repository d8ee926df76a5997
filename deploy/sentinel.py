"""A local Redis Sentinel topology: one primary, two replicas, three sentinels.

Started from Debian's ``redis-server`` (``--sentinel`` for the sentinels),
each a child process of this one (``local_cluster._Child``: its own session,
SIGKILLed if this process dies). ``url`` is the ``redis+sentinel://`` URL the
gateways take. A primary silent for ``DOWN_AFTER_MS`` is down, so tests and
``chat-cluster --redis sentinel`` see a promotion within several seconds.
``events()`` reads the sentinels' failover events from their logs: what a
test prints when a failover went otherwise than planned. One thread owns a
``LocalSentinel``; it has no lock.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import redis

from deploy.local_cluster import ClusterError, _Child, free_ports, redis_server_binary

logger = logging.getLogger(__name__)

MASTER_NAME = "chat"
DOWN_AFTER_MS = 5000
"""How long a primary must not answer before a sentinel calls it down.

Not 1 s: a sentinel pings once a second, so with 1 s one late reply was
"down". On a loaded machine a primary just promoted (a fresh link from each
sentinel) missed that one reply, the sentinels still held each other's
"down" votes from the failover that had just ended, and a second failover
promoted the replica being re-pointed at it, while the gateways kept writing
to the first one over their open connections: split brain, and those writes
were thrown away when it was made a replica (rooms moved to a new epoch)."""
FAILOVER_TIMEOUT_MS = 5000

EVENT = re.compile(r"[+-](sdown|odown|try-failover|elected-leader|selected-slave|promoted-slave|"
                   r"failover-end|failover-abort\S*|switch-master|convert-to-slave|tilt|"
                   r"failover-state-reconf-slaves|slave-reconf-done|new-epoch)\b")
"""The sentinel log lines that tell a failover's story (``LocalSentinel.events``)."""


class LocalSentinel:
    """Primary, replicas and sentinels on loopback; see the module docstring."""

    def __init__(self, data_dir: str | Path, *, host: str = "127.0.0.1", replicas: int = 2,
                 sentinels: int = 3, startup_timeout: float = 30.0,
                 down_after_ms: int = DOWN_AFTER_MS) -> None:
        self.host = host
        self.down_after_ms = down_after_ms
        self.dir = Path(data_dir).resolve()
        self._startup_timeout = startup_timeout
        ports = free_ports(1 + replicas + sentinels, host)
        self.redis_ports = ports[: 1 + replicas]
        """Primary first, as started; after a failover any of them may be the primary."""
        self.sentinel_ports = ports[1 + replicas:]
        self._redis: dict[int, _Child] = {}
        self._sentinels: list[_Child] = []

    @property
    def url(self) -> str:
        hosts = ",".join(f"{self.host}:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{MASTER_NAME}"

    # ------------------------------------------------------------- lifecycle

    def start(self) -> Self:
        self.dir.mkdir(parents=True, exist_ok=True)
        primary, *replicas = self.redis_ports
        try:
            self._start_redis(primary, None)
            for port in replicas:
                self._start_redis(port, primary)
            for port in self.sentinel_ports:
                self._start_sentinel(port, primary)
            self._wait_ready(primary, len(replicas))
        except BaseException:
            self.stop()
            raise
        return self

    def _start_redis(self, port: int, primary: int | None) -> None:
        node_dir = self.dir / f"redis-{port}"
        node_dir.mkdir(exist_ok=True)
        args = [redis_server_binary(), "--port", str(port), "--bind", self.host,
                "--dir", str(node_dir), "--save", "", "--appendonly", "no",
                "--protected-mode", "no", "--repl-diskless-sync", "yes",
                "--repl-diskless-sync-delay", "0"]
        if primary is not None:
            args += ["--replicaof", self.host, str(primary)]
        self._redis[port] = _Child(f"redis {port}", args, self.dir / f"redis-{port}.log")

    def _start_sentinel(self, port: int, primary: int) -> None:
        conf = self.dir / f"sentinel-{port}.conf"
        conf.write_text(
            f"port {port}\nbind {self.host}\nprotected-mode no\ndir {self.dir}\n"
            f"sentinel monitor {MASTER_NAME} {self.host} {primary} 2\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {self.down_after_ms}\n"
            f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {MASTER_NAME} 2\n")
        self._sentinels.append(_Child(f"sentinel {port}", [redis_server_binary(), str(conf),
                                                           "--sentinel"],
                                      self.dir / f"sentinel-{port}.log"))

    def _wait_ready(self, primary: int, replicas: int) -> None:
        """Until every sentinel sees the primary, its replicas in sync and the other
        sentinels: only then can they agree on a failover."""
        deadline = time.monotonic() + self._startup_timeout
        while not self._ready(primary, replicas):
            for child in [*self._redis.values(), *self._sentinels]:
                child.check_running()
            if time.monotonic() > deadline:
                raise ClusterError(f"the sentinel topology in {self.dir} was not ready within "
                                   f"{self._startup_timeout} s")
            time.sleep(0.1)

    def _ready(self, primary: int, replicas: int) -> bool:
        for port in self.sentinel_ports:
            client = redis.Redis(host=self.host, port=port, socket_timeout=1.0)
            try:
                master: dict[str, Any] = client.sentinel_master(MASTER_NAME)  # type: ignore[assignment]
                if int(master["port"]) != primary:
                    return False
                if int(master.get("num-slaves", 0)) < replicas:
                    return False
                if int(master.get("num-other-sentinels", 0)) < len(self.sentinel_ports) - 1:
                    return False
                synced = [r for r in client.sentinel_slaves(MASTER_NAME)
                          if r.get("master-link-status") == "ok"
                          and not r.get("is_disconnected")]
                if len(synced) < replicas:
                    return False
            except (redis.RedisError, KeyError, ValueError):
                return False
            finally:
                client.close()
        return True

    def stop(self, timeout: float = 5.0) -> None:
        for child in self._sentinels:
            child.stop(timeout)
        for child in self._redis.values():
            child.stop(timeout)
        self._sentinels.clear()
        self._redis.clear()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # ------------------------------------------------------------- faults

    def primary_port(self) -> int:
        """The port of the primary, as the sentinels say now."""
        for port in self.sentinel_ports:
            client = redis.Redis(host=self.host, port=port, socket_timeout=1.0)
            try:
                address: Any = client.sentinel_get_master_addr_by_name(MASTER_NAME)
                return int(address[1])
            except (redis.RedisError, TypeError):
                continue
            finally:
                client.close()
        raise ClusterError("no sentinel answers")

    def node_pids(self) -> dict[int, int]:
        """Each running Redis (not sentinel) process's pid, by port."""
        return {port: child.pid for port, child in self._redis.items() if child.running}

    def kill(self, port: int) -> None:
        """SIGKILL the Redis on ``port`` (no shutdown, no save)."""
        self._redis[port].kill()

    def stall(self, port: int, seconds: float) -> None:
        """Freeze the Redis on ``port`` for ``seconds`` (SIGSTOP, SIGCONT), as a loaded host
        stalls it; returns once it runs again."""
        pid = self._redis[port].pid
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            os.kill(pid, signal.SIGCONT)

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(host=self.host, port=port, socket_timeout=5.0)

    # ------------------------------------------------------------- diagnosis

    def events(self) -> list[str]:
        """Every sentinel's failover events so far, oldest first: ``HH:MM:SS.mmm
        sentinel <port>: <event>`` (sdown, odown, votes, promotions, switch-master...)."""
        found: list[tuple[str, str]] = []
        for port in self.sentinel_ports:
            try:
                text = (self.dir / f"sentinel-{port}.log").read_text(errors="replace")
            except OSError:
                continue
            for line in text.splitlines():
                # "<pid>:X 05 Dec 2026 04:14:02.284 # +sdown master chat 127.0.0.1 38859"
                parts = line.split(" ", 5)
                if len(parts) == 6 and EVENT.search(parts[5]):
                    found.append((parts[4], f"sentinel {port}: {parts[5].lstrip('#* ')}"))
        return [f"{when} {what}" for when, what in sorted(found)]

    def switches(self) -> list[tuple[int, int]]:
        """The (old, new) primary ports of every ``+switch-master`` any sentinel logged,
        each once, in order: one entry after one clean failover."""
        seen: list[tuple[int, int]] = []
        for event in self.events():
            match = re.search(r"\+switch-master \S+ \S+ (\d+) \S+ (\d+)", event)
            if match:
                pair = (int(match[1]), int(match[2]))
                if pair not in seen:
                    seen.append(pair)
        return seen


__all__ = ["MASTER_NAME", "LocalSentinel"]
