"""A local Redis Sentinel topology: one primary, two replicas, three sentinels.

Started from Debian's ``redis-server`` (``--sentinel`` for the sentinels),
each a child process of this one (``local_cluster._Child``: its own session,
SIGKILLed if this process dies). ``url`` is the ``redis+sentinel://`` URL the
gateways take. Failover is quick (a primary silent for 1 s is down), so
tests and ``chat-cluster --redis sentinel`` see a promotion within a few
seconds. One thread owns a ``LocalSentinel``; it has no lock.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import redis

from deploy.local_cluster import ClusterError, _Child, free_ports, redis_server_binary

logger = logging.getLogger(__name__)

MASTER_NAME = "chat"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000


class LocalSentinel:
    """Primary, replicas and sentinels on loopback; see the module docstring."""

    def __init__(self, data_dir: str | Path, *, host: str = "127.0.0.1", replicas: int = 2,
                 sentinels: int = 3, startup_timeout: float = 30.0) -> None:
        self.host = host
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
            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
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

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(host=self.host, port=port, socket_timeout=5.0)


__all__ = ["MASTER_NAME", "LocalSentinel"]
