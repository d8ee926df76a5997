"""CPU per message: what taking one message in and fanning it out costs each side.

The gateways' CPU comes from ``/proc/<pid>/stat`` of their processes (so only
gateways on this machine whose pid is known: started by the bench, or found
listening on a loopback port). Redis's comes from its own ``INFO cpu``
(``used_cpu_user`` + ``used_cpu_sys``, the server process and its threads),
so it is known wherever the bench can reach Redis: the local cluster's, or
the one ``--redis-url`` names. Behind a Sentinel or Cluster URL it is summed
over every data node (``RedisNodes``: the primary and its replicas, or every
master and replica), since replication and sharding spread the work over all
of them; sentinels themselves are left out. A ``CostMeter`` is started at the beginning of
a window and read at its end with the number of messages the window took in.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from bench.procstat import cpu_times
from gateway.redis.target import (
    ClusterTarget,
    HostPort,
    SentinelTarget,
    SingleTarget,
    TargetError,
    parse_target,
)

log = logging.getLogger(__name__)

US_PER_S = 1_000_000
INFO_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class CpuTimes:
    """CPU seconds, split as the kernel accounts them."""

    user_s: float
    system_s: float

    @property
    def total_s(self) -> float:
        return self.user_s + self.system_s

    def __sub__(self, other: CpuTimes) -> CpuTimes:
        return CpuTimes(self.user_s - other.user_s, self.system_s - other.system_s)


@dataclass(frozen=True, slots=True)
class PerMessage:
    """Microseconds of CPU per message, in total and split user / system."""

    us: float
    user_us: float
    system_us: float

    @classmethod
    def of(cls, used: CpuTimes, messages: int) -> PerMessage | None:
        if messages <= 0:
            return None
        scale = US_PER_S / messages
        return cls(used.total_s * scale, used.user_s * scale, used.system_s * scale)


@dataclass(frozen=True, slots=True)
class MessageCost:
    """CPU the gateways and Redis used over one window, and per message taken in."""

    messages: int
    """Messages accepted (acked) in the window."""
    wall_s: float
    gateway_cpu: CpuTimes | None
    """Summed over the gateways whose pid is known; None when none is."""
    gateways_measured: int
    redis_cpu: CpuTimes | None
    gateway: PerMessage | None
    redis: PerMessage | None


def gateways_cpu(pids: Sequence[int]) -> CpuTimes | None:
    """CPU of ``pids`` summed; None if any cannot be read (a partial sum would mislead)."""
    user = system = 0.0
    for pid in pids:
        times = cpu_times(pid)
        if times is None:
            return None
        user += times[0]
        system += times[1]
    return CpuTimes(user, system)


class RedisNodes:
    """The data nodes behind one Redis URL, asked ``INFO cpu`` as one: their CPU summed.

    Found once, when made: a failover or a new node during the window is not
    followed (its figure would then be off, as for a restarted Redis).
    """

    def __init__(self, clients: Sequence[redis.Redis]) -> None:
        self.clients = tuple(clients)

    @classmethod
    def from_url(cls, url: str) -> RedisNodes:
        target = parse_target(url)
        if isinstance(target, SingleTarget):
            return cls([_info_client(target.url)])
        if isinstance(target, SentinelTarget):
            return cls(_sentinel_nodes(target))
        assert isinstance(target, ClusterTarget)
        return cls(_cluster_nodes(target))

    def info(self, section: str) -> dict[str, Any]:
        """``INFO cpu`` summed over the nodes (the only section asked)."""
        if section != "cpu":
            raise ValueError("RedisNodes sums INFO cpu only")
        user = system = 0.0
        for client in self.clients:
            info = client.info("cpu")
            user += float(info["used_cpu_user"])
            system += float(info["used_cpu_sys"])
        return {"used_cpu_user": user, "used_cpu_sys": system}

    def close(self) -> None:
        for client in self.clients:
            client.close()


def _info_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=INFO_TIMEOUT_S,
                                socket_connect_timeout=INFO_TIMEOUT_S)


def _node(node: HostPort, target: SentinelTarget | ClusterTarget) -> redis.Redis:
    return redis.Redis(host=node.host, port=node.port, username=target.auth.username,
                       password=target.auth.password, socket_timeout=INFO_TIMEOUT_S,
                       socket_connect_timeout=INFO_TIMEOUT_S,
                       **(target.tls.redis_kwargs() if target.tls else {}))


def _sentinel_nodes(target: SentinelTarget) -> list[redis.Redis]:
    """The primary and its replicas, as the first sentinel that answers names them."""
    for sentinel in target.sentinels:
        client = redis.Redis(host=sentinel.host, port=sentinel.port,
                             password=target.sentinel_password,
                             socket_timeout=INFO_TIMEOUT_S, socket_connect_timeout=INFO_TIMEOUT_S,
                             **(target.tls.redis_kwargs() if target.tls else {}))
        try:
            primary: Any = client.sentinel_master(target.master)
            replicas: Any = client.sentinel_slaves(target.master)
        except redis.RedisError:
            continue
        finally:
            client.close()
        nodes = [HostPort(str(primary["ip"]), int(primary["port"]))]
        nodes += [HostPort(str(r["ip"]), int(r["port"])) for r in replicas
                  if "s_down" not in str(r.get("flags", ""))]
        return [_node(node, target) for node in nodes]
    raise redis.ConnectionError(f"no sentinel of {target.master!r} answers")


def _cluster_nodes(target: ClusterTarget) -> list[redis.Redis]:
    """Every master and replica that is not failed, as the first seed that answers says."""
    for seed in target.seeds:
        client = _node(seed, target)
        try:
            text = client.execute_command("CLUSTER", "NODES")  # type: ignore[no-untyped-call]
        except redis.RedisError:
            continue
        finally:
            client.close()
        nodes = []
        for line in (text.decode() if isinstance(text, bytes) else str(text)).splitlines():
            fields = line.split()
            if len(fields) < 8 or "fail" in fields[2] or "noaddr" in fields[2]:
                continue
            address = fields[1].split("@", 1)[0].split(",", 1)[0]
            host, _, port = address.rpartition(":")
            nodes.append(HostPort(host or seed.host, int(port)))
        return [_node(node, target) for node in nodes]
    raise redis.ConnectionError("no seed of the cluster answers")


def redis_cpu(client: redis.Redis | RedisNodes | None) -> CpuTimes | None:
    """Redis's own CPU from ``INFO cpu``; None (and a warning) if it cannot be asked."""
    if client is None:
        return None
    try:
        info = client.info("cpu")
        return CpuTimes(float(info["used_cpu_user"]), float(info["used_cpu_sys"]))
    except (redis.RedisError, OSError, KeyError, ValueError) as exc:
        log.warning("cannot read Redis INFO cpu: %s", exc)
        return None


def redis_client(url: str | None) -> RedisNodes | None:
    """Clients for ``INFO`` only (short timeouts, no retries) of every data node behind
    ``url``; None without a URL, or (with a warning) when its nodes cannot be found."""
    if not url:
        return None
    try:
        return RedisNodes.from_url(url)
    except (TargetError, redis.RedisError, OSError, KeyError, ValueError) as exc:
        log.warning("cannot find the Redis nodes behind %s: %s", url, exc)
        return None


class CostMeter:
    """Starts a window when made; ``read`` ends it (and may be called again for a longer one).

    Owned by one task; its reads are two short blocking calls (``/proc`` and
    one ``INFO``), done only at the edges of a window.
    """

    def __init__(self, gateway_pids: Sequence[int],
                 client: redis.Redis | RedisNodes | None) -> None:
        self._pids = tuple(gateway_pids)
        self._client = client
        self._start = time.monotonic()
        self._gateways = gateways_cpu(self._pids) if self._pids else None
        self._redis = redis_cpu(client)

    def read(self, messages: int) -> MessageCost:
        """The window from the meter's start to now, for ``messages`` taken in."""
        gw_now = gateways_cpu(self._pids) if self._pids else None
        redis_now = redis_cpu(self._client)
        gw = None if gw_now is None or self._gateways is None else gw_now - self._gateways
        rd = None if redis_now is None or self._redis is None else redis_now - self._redis
        return MessageCost(
            messages=messages,
            wall_s=time.monotonic() - self._start,
            gateway_cpu=gw,
            gateways_measured=len(self._pids) if gw is not None else 0,
            redis_cpu=rd,
            gateway=PerMessage.of(gw, messages) if gw is not None else None,
            redis=PerMessage.of(rd, messages) if rd is not None else None,
        )
