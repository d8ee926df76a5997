"""The gateways a run loads: given addresses, or a local Redis and N gateways.

``Target`` is what scenarios see: addresses and, for processes the bench
started (or gateways found listening on a loopback port of this machine),
their pids (for CPU and memory), the Redis URL when known (for its ``INFO
cpu``), and a way to kill one gateway it started (resume). Local clusters
come from ``deploy.local_cluster.LocalCluster``
(Redis with its append-only file, as deployed, or a Sentinel or Cluster
topology, and N gateways), with the
gateways' rate limits raised so the bench measures capacity, not the
limiter; everything is stopped when the ``with`` block ends.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.procstat import listening_pid
from deploy.local_cluster import ClusterError, LocalCluster
from protocol.address import Address

__all__ = ["ClusterError", "GatewayProcess", "GatewaySettings", "Target", "open_target"]


@dataclass(frozen=True, slots=True)
class GatewayProcess:
    id: str
    """A short label for reports: gw1, gw2, ... locally, the address remotely."""
    address: Address
    pid: int | None
    """Known for gateways this process started, or found listening on loopback."""


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    """Flags every local gateway gets (limits raised for benchmarking)."""

    rate_per_s: float = 100000.0
    burst: int = 100000
    max_outbound: int | None = None
    max_connections: int = 100000

    def flags(self) -> list[str]:
        out = ["--rate-per-s", f"{self.rate_per_s:g}", "--burst", str(self.burst),
               "--max-connections", str(self.max_connections)]
        if self.max_outbound is not None:
            out += ["--max-outbound", str(self.max_outbound)]
        return out


class Target:
    """The gateways of one run, and the local cluster behind them if any."""

    def __init__(self, gateways: Sequence[GatewayProcess],
                 redis_pids: Mapping[str, int] | None = None,
                 cluster: LocalCluster | None = None, redis_url: str | None = None) -> None:
        """``redis_pids``: every local Redis process by name (``redis``, or ``redis:PORT``
        for each node of a Sentinel or Cluster topology), for their CPU."""
        if not gateways:
            raise ValueError("a target needs at least one gateway")
        self.gateways = tuple(gateways)
        self.redis_pids = dict(redis_pids or {})
        self.redis_url = redis_url
        """Where to ask Redis for ``INFO cpu``; None when unknown."""
        self._cluster = cluster

    @classmethod
    def remote(cls, addresses: Sequence[Address], redis_url: str | None = None) -> Target:
        """Given gateways; pids of those listening on this machine's loopback are looked up."""
        return cls([GatewayProcess(str(a), a, listening_pid(a.host, a.port)) for a in addresses],
                   redis_url=redis_url)

    @classmethod
    def of_cluster(cls, cluster: LocalCluster) -> Target:
        gateways = [
            GatewayProcess(f"gw{i + 1}", address, cluster.gateway_pid(i))
            for i, address in enumerate(cluster.gateway_addresses)
        ]
        return cls(gateways, cluster.redis_pids(), cluster, cluster.redis_url)

    @property
    def local(self) -> bool:
        return self._cluster is not None

    @property
    def addresses(self) -> tuple[Address, ...]:
        return tuple(g.address for g in self.gateways)

    def address_for(self, index: int) -> Address:
        """Round-robin placement of the ``index``-th client."""
        return self.gateways[index % len(self.gateways)].address

    @property
    def gateway_pids(self) -> tuple[int, ...]:
        """Pids of the gateways known on this machine (for CPU per message)."""
        return tuple(g.pid for g in self.gateways if g.pid is not None)

    def watched_pids(self) -> dict[str, int]:
        """Local processes whose CPU a run reports, by name."""
        pids = {g.id: g.pid for g in self.gateways if g.pid is not None}
        pids.update(self.redis_pids)
        return pids

    def kill_gateway(self, index: int) -> None:
        """SIGKILL a local gateway: no goodbye, as if its machine died."""
        if self._cluster is None:
            raise ClusterError("only gateways started by the bench can be killed")
        self._cluster.stop_gateway(index, kill=True)


@contextlib.contextmanager
def open_target(addresses: Sequence[Address], local: int, settings: GatewaySettings,
                cluster_dir: Path | None = None, redis_url: str | None = None,
                redis_mode: str = "single") -> Iterator[Target]:
    """The run's target: the given addresses, or a local cluster stopped on exit.

    A local cluster keeps its data and logs in ``cluster_dir`` if given, else
    in a temporary directory removed afterwards, and runs on ``redis_mode``
    (``LocalCluster``'s: single, sentinel or cluster). ``redis_url`` is the
    Redis behind given addresses (a local cluster's own is used otherwise).
    """
    if local <= 0:
        yield Target.remote(addresses, redis_url)
        return
    with contextlib.ExitStack() as stack:
        if cluster_dir is None:
            cluster_dir = Path(stack.enter_context(
                tempfile.TemporaryDirectory(prefix="chat-bench-")))
        cluster = LocalCluster(local, base_port=0, base_health_port=0, data_dir=cluster_dir,
                               log_level="WARNING", gateway_args=settings.flags(),
                               redis_mode=redis_mode)
        stack.enter_context(cluster)
        yield Target.of_cluster(cluster)
