"""CPU per message: what taking one message in and fanning it out costs each side.

The gateways' CPU comes from ``/proc/<pid>/stat`` of their processes (so only
gateways on this machine whose pid is known: started by the bench, or found
listening on a loopback port). Redis's comes from its own ``INFO cpu``
(``used_cpu_user`` + ``used_cpu_sys``, the server process and its threads),
so it is known wherever the bench can reach Redis: the local cluster's, or
the one ``--redis-url`` names. A ``CostMeter`` is started at the beginning of
a window and read at its end with the number of messages the window took in.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis

from bench.procstat import cpu_times

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


def redis_cpu(client: redis.Redis | None) -> CpuTimes | None:
    """Redis's own CPU from ``INFO cpu``; None (and a warning) if it cannot be asked."""
    if client is None:
        return None
    try:
        info = client.info("cpu")
        return CpuTimes(float(info["used_cpu_user"]), float(info["used_cpu_sys"]))
    except (redis.RedisError, OSError, KeyError, ValueError) as exc:
        log.warning("cannot read Redis INFO cpu: %s", exc)
        return None


def redis_client(url: str | None) -> redis.Redis | None:
    """A client for ``INFO`` only (short timeouts, no retries); None without a URL."""
    if not url:
        return None
    return redis.Redis.from_url(url, socket_timeout=INFO_TIMEOUT_S,
                                socket_connect_timeout=INFO_TIMEOUT_S)


class CostMeter:
    """Starts a window when made; ``read`` ends it (and may be called again for a longer one).

    Owned by one task; its reads are two short blocking calls (``/proc`` and
    one ``INFO``), done only at the edges of a window.
    """

    def __init__(self, gateway_pids: Sequence[int], client: redis.Redis | None) -> None:
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
