"""chat-cluster: a whole ChatService cluster on this machine, for development and demos.

Starts Redis (data in ``--data-dir``, or uses ``--redis-url``), ``--gateways``
gateways on consecutive ports and, with ``--haproxy``, HAProxy in front; then
prints a status table every ``--refresh`` seconds, when Enter is pressed or
on SIGUSR1. Ctrl-C, SIGTERM or ``q`` + Enter stop everything in order. The
supervision itself lives in ``deploy.local_cluster.LocalCluster``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import logging
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Sequence
from types import FrameType

from deploy.healthcheck import Health
from deploy.local_cluster import REDIS_MODES, ClusterError, GatewayStatus, LocalCluster

__all__ = ["LocalCluster", "build_parser", "format_table", "main"]


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="chat-cluster", allow_abbrev=False,
        description="Run Redis, several chat gateways and optionally HAProxy on this machine.",
    )
    p.add_argument("--version", action="version",
                   version=f"%(prog)s {importlib.metadata.version('chatservice')}")
    p.add_argument("--gateways", type=int, default=3, help="number of gateways (default 3)")
    p.add_argument("--host", default="127.0.0.1", help="address every part listens on")
    p.add_argument("--base-port", type=int, default=5050,
                   help="chat port of the first gateway; the others follow (0: free ports)")
    p.add_argument("--base-health-port", type=int, default=8050,
                   help="/healthz and /metrics port of the first gateway (0: free ports)")
    p.add_argument("--redis-url", default=None,
                   help="use this Redis instead of starting one")
    p.add_argument("--redis", dest="redis_mode", default="single",
                   choices=list(REDIS_MODES),
                   help="Redis topology to start: one redis-server (default), Sentinel "
                   "(a primary, 2 replicas, 3 sentinels; the gateways get its "
                   "redis+sentinel:// URL) or Cluster (3 masters with a replica each, "
                   "joined by redis-cli --cluster create; the gateways get its "
                   "redis+cluster:// URL)")
    p.add_argument("--redis-port", type=int, default=0,
                   help="port of the Redis started here (default: a free port)")
    p.add_argument("--data-dir", default=".chat-cluster",
                   help="Redis data, logs and generated configs (default ./.chat-cluster)")
    p.add_argument("--haproxy", action="store_true",
                   help="also start HAProxy in front of the gateways (needs haproxy on PATH)")
    p.add_argument("--haproxy-port", type=int, default=5000,
                   help="HAProxy's chat port (default 5000; 0: a free port)")
    p.add_argument("--refresh", type=float, default=10.0,
                   help="seconds between status tables (0: only on Enter or SIGUSR1)")
    p.add_argument("--log-level", default="INFO", type=str.upper,
                   choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="gateways' log level")
    p.add_argument("--startup-timeout", type=float, default=30.0,
                   help="seconds each part may take to answer")
    return p


def _redis_column(row: GatewayStatus) -> str:
    if row.exit_code is not None:
        return f"exited ({row.exit_code})"
    if row.pid is None:
        return "stopped"
    return {Health.OK: "ok", Health.NO_REDIS: "unreachable", Health.DOWN: "-"}[row.health]


def format_table(cluster: LocalCluster, rows: Sequence[GatewayStatus]) -> str:
    """The status table: one line per gateway, with a header naming Redis and HAProxy."""
    header = ["gateway", "address", "health", "pid", "clients", "redis"]
    with_lb = cluster.lb_address is not None
    if with_lb:
        header.append("lb")
    table = [header]
    for row in rows:
        cells = [
            row.gateway_id,
            str(row.address),
            str(row.health_address),
            str(row.pid) if row.pid is not None else "-",
            str(row.clients) if row.clients is not None else "-",
            _redis_column(row),
        ]
        if with_lb:
            cells.append(row.lb or "-")
        table.append(cells)
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = [
        time.strftime("%H:%M:%S")
        + f"  redis {cluster.redis_url}"
        + (f"  lb {cluster.lb_address}" if cluster.lb_address else "")
    ]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table]
    return "\n".join(lines)


def _watch(cluster: LocalCluster, refresh: float, wake: socket.socket) -> None:
    """Print the table now, then on every tick, Enter or SIGUSR1; return on ``q``."""
    stdin_fd: int | None = sys.stdin.fileno() if sys.stdin is not None else None
    timeout = refresh if refresh > 0 else None
    while True:
        _out(format_table(cluster, cluster.status()))
        while True:
            fds = [wake.fileno()] + ([stdin_fd] if stdin_fd is not None else [])
            ready, _, _ = select.select(fds, [], [], timeout)
            if not ready:
                break  # the periodic refresh
            if wake.fileno() in ready:
                with contextlib.suppress(BlockingIOError):
                    if signal.SIGUSR1 in wake.recv(64):
                        break
            if stdin_fd is not None and stdin_fd in ready:
                data = os.read(stdin_fd, 1024)
                if not data:
                    stdin_fd = None  # end of input: only the timer and signals remain
                    continue
                if data.strip().lower().startswith(b"q"):
                    return
                break


def _summary(cluster: LocalCluster) -> str:
    lines = [f"redis     {cluster.redis_url}"]
    if cluster.redis_cluster is not None:
        nodes = cluster.redis_cluster.nodes()
        masters = sorted(n.port for n in nodes if n.is_master)
        replicas = sorted(n.port for n in nodes if not n.is_master)
        logs = cluster.data_dir / "redis-cluster"
        lines.append(f"masters   {', '.join(map(str, masters))} (replicas "
                     f"{', '.join(map(str, replicas))}; logs in {logs})")
    if cluster.redis_data_dir is not None:
        lines.append(f"data      {cluster.redis_data_dir} (append-only file, fsync every second)")
    lines += [f"gateway   {address}" for address in cluster.gateway_addresses]
    if cluster.lb_address is not None:
        lines.append(f"haproxy   {cluster.lb_address}")
    lines.append(f"logs      {cluster.log_dir}")
    lines.append("Enter: refresh, q + Enter or Ctrl-C: stop")
    return "\n".join(lines)


def _on_usr1(signum: int, frame: FrameType | None) -> None:
    """Nothing to do here: the wake-up fd already carries the signal to the loop."""


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="chat-cluster: %(levelname)s %(message)s")
    if args.gateways < 1:
        _out("chat-cluster: --gateways must be at least 1")
        return 2
    wake, wake_w = socket.socketpair()
    wake.setblocking(False)
    wake_w.setblocking(False)
    old_wakeup = signal.set_wakeup_fd(wake_w.fileno())
    old_handlers = {
        signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler),
        signal.SIGTERM: signal.signal(signal.SIGTERM, signal.default_int_handler),
        signal.SIGUSR1: signal.signal(signal.SIGUSR1, _on_usr1),
    }
    code = 0
    cluster: LocalCluster | None = None
    try:
        cluster = LocalCluster(
            args.gateways, host=args.host, base_port=args.base_port,
            base_health_port=args.base_health_port, redis_url=args.redis_url,
            redis_port=args.redis_port, data_dir=args.data_dir, haproxy=args.haproxy,
            haproxy_port=args.haproxy_port, log_level=args.log_level,
            startup_timeout=args.startup_timeout, redis_mode=args.redis_mode,
        )
        cluster.check_ports()
        _out(f"chat-cluster: starting {args.gateways} gateways")
        cluster.start()
        _out(_summary(cluster))
        _watch(cluster, args.refresh, wake)
    except KeyboardInterrupt:
        pass
    except (ClusterError, OSError) as exc:
        _out(f"chat-cluster: {exc}")
        code = 1
    finally:
        # A second Ctrl-C must not cut the shutdown short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if cluster is not None:
            _out("chat-cluster: stopping")
            cluster.stop()
            _out("chat-cluster: stopped")
        signal.set_wakeup_fd(old_wakeup)
        for signum, handler in old_handlers.items():
            if handler is not None:
                signal.signal(signum, handler)
        wake.close()
        wake_w.close()
    return code


if __name__ == "__main__":
    sys.exit(main())
