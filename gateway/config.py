"""Gateway settings from flags, each also readable from a ``CHAT_*`` variable.

Precedence: command-line flag, then environment, then default; so a container
sets ``CHAT_REDIS_URL`` and a person overrides it with ``--redis-url``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from gateway.accounts.passwords import HashParams
from protocol.limits import Limits


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    host: str = "0.0.0.0"
    port: int = 5050
    redis_url: str = "redis://localhost:6379/0"
    redis_min_replicas: int | None = None
    """Replicas a send or dm must reach before its ack (``WAIT``); None: 1 for a sentinel
    or cluster URL, 0 for one Redis."""
    gateway_id: str = ""
    health_host: str | None = None
    """Where /healthz and /metrics listen; None means the same host as chat."""
    health_port: int | None = 8050
    """None disables the HTTP endpoint (tests); 0 picks a free port."""
    ports_file: str | None = None
    """Once listening, ``python -m gateway`` writes the ports it holds here (JSON:
    ``{"port": ..., "health_port": ...}``): how whoever started it with port 0 learns
    them, with no window for another process to take a port probed in advance."""
    history: int = 1000
    limits: Limits = field(default_factory=Limits)
    log_level: str = "INFO"
    heartbeat_s: float = 2.0
    lease_ms: int = 8000
    probe_interval_s: float = 1.0
    probe_timeout_s: float = 5.0
    max_connections: int = 10000
    max_per_address: int = 0
    """0: no per-address cap."""
    socket_sndbuf: int = 256 * 1024
    """Kernel send buffer per client socket (0: the kernel's autotuning, up to 4 MiB
    on loopback). With it, ``max_outbound`` plus this bounds a slow client's cost."""
    tls_cert: str | None = None
    tls_key: str | None = None
    thread_stack_kib: int = 256
    switch_interval_ms: float = 1000.0
    """CPython's GIL switch interval. Thousands of I/O-bound threads waking at once
    (a ping round) thrash on the default 5 ms: each waiter wakes every interval
    to demand the GIL. Every thread here blocks in a system call (which hands
    the GIL over at once) within microseconds, so a long interval costs no
    latency: measured in docs/benchmarks.md."""
    shutdown_timeout_s: float = 4.0
    guests: str = "allow"
    """``allow``: anyone may log in as a guest and ``register``; ``deny``: only accounts
    log in, and accounts are created by the operator (``chat-admin``)."""
    room_ttl_s: float = 30 * 86400.0
    """A room with no member and no new message for this long leaves Redis (0: never)."""
    new_rooms_per_min: float = 10.0
    """Rooms a user may create (join while they do not exist) a minute, cluster-wide (0: no
    limit); ``new_rooms_burst`` at once."""
    new_rooms_burst: int = 60
    connect_rate_per_address: float = 0.0
    """New connections a second from one source address (0: no limit); a burst of five
    seconds' worth (at least 1). Behind NAT or a load balancer keep it 0 or generous."""
    password_hash: HashParams = field(default_factory=HashParams)
    """argon2id cost of the accounts' password hashes (no flag: tests pass
    ``gateway.accounts.passwords.FAST_PARAMS``; production keeps the default)."""

    def __post_init__(self) -> None:
        if not self.gateway_id:
            object.__setattr__(self, "gateway_id", f"{socket.gethostname()}:{self.port}")
        if self.history < 1:
            raise ValueError("history must keep at least one message")
        if self.guests not in ("allow", "deny"):
            raise ValueError("--guests is allow or deny")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("--tls-cert and --tls-key go together")


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``15m``, ``12h`` or ``30d``."""
    text = text.strip().lower()
    scale = _UNITS.get(text[-1:])
    try:
        value = float(text[:-1] if scale is not None else text) * (scale or 1.0)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"not a duration: {text!r} (say 90, 15m, 12h or 30d)") from exc
    if value < 0:
        raise argparse.ArgumentTypeError(f"a duration cannot be negative: {text!r}")
    return value


def _env(environ: Mapping[str, str], name: str, default: str | None) -> str | None:
    return environ.get(f"CHAT_{name}", default)


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    d = GatewayConfig(gateway_id="-")
    lim = d.limits

    def env(name: str, default: object) -> str | None:
        return _env(environ, name, None if default is None else str(default))

    p = argparse.ArgumentParser(
        prog="chat-gateway", allow_abbrev=False,
        description="ChatService gateway: a TCP chat server clustered through Redis. "
        "Every flag can also be set as the CHAT_<NAME> environment variable.",
    )
    p.add_argument("--version", action="version",
                   version=f"%(prog)s {importlib.metadata.version('chatservice')}")
    p.add_argument("--host", default=env("HOST", d.host), help="address to listen on")
    p.add_argument("--port", type=int, default=env("PORT", d.port), help="chat TCP port")
    p.add_argument("--redis-url", default=env("REDIS_URL", d.redis_url),
                   help="redis://, rediss://, redis+sentinel://[[user]:password@]host:port"
                   "[,host:port...]/MASTER_NAME[/DB] (or rediss+sentinel://) URL, password "
                   "included if any")
    p.add_argument("--redis-min-replicas", type=int,
                   default=env("REDIS_MIN_REPLICAS", None),
                   help="replicas a send or dm must reach before it is acknowledged "
                   "(default: 1 with Sentinel, 0 with one Redis)")
    p.add_argument("--id", dest="gateway_id", default=env("GATEWAY_ID", ""),
                   help="gateway id (default: host name and port)")
    p.add_argument("--health-host", default=env("HEALTH_HOST", None),
                   help="address of the HTTP /healthz and /metrics endpoint (default: --host)")
    p.add_argument("--health-port", type=int, default=env("HEALTH_PORT", d.health_port),
                   help="HTTP port of /healthz and /metrics (-1 disables)")
    p.add_argument("--ports-file", default=env("PORTS_FILE", None),
                   help="once listening, write the chat and health ports as JSON to this file "
                   "(for --port 0 and --health-port 0: the ports the system picked)")
    p.add_argument("--history", type=int, default=env("HISTORY", d.history),
                   help="messages kept per room")
    p.add_argument("--max-frame", type=int, default=env("MAX_FRAME", lim.max_frame))
    p.add_argument("--max-text", type=int, default=env("MAX_TEXT", lim.max_text))
    p.add_argument("--rate-per-s", type=float, default=env("RATE_PER_S", lim.rate_per_s))
    p.add_argument("--burst", type=int, default=env("BURST", lim.burst))
    p.add_argument("--idle-timeout", type=float, default=env("IDLE_TIMEOUT", lim.idle_timeout_s))
    p.add_argument("--login-timeout", type=float,
                   default=env("LOGIN_TIMEOUT", lim.login_timeout_s))
    p.add_argument("--max-outbound", type=int, default=env("MAX_OUTBOUND", lim.max_outbound),
                   help="bytes of unsent output before a client is a slow consumer")
    p.add_argument("--max-rooms", type=int, default=env("MAX_ROOMS", lim.max_rooms))
    p.add_argument("--max-refused", type=int, default=env("MAX_REFUSED", lim.max_refused),
                   help="refused frames a client may send (refilled at --rate-per-s) "
                   "before bye/abuse")
    p.add_argument("--send-timeout", type=float,
                   default=env("SEND_TIMEOUT", lim.send_timeout_s),
                   help="seconds output may wait with no byte reaching the client "
                   "before bye/slow_consumer")
    p.add_argument("--history-bytes-per-s", type=float,
                   default=env("HISTORY_BYTES_PER_S", lim.history_bytes_per_s),
                   help="bytes of history answers a client may draw per second")
    p.add_argument("--history-burst-bytes", type=int,
                   default=env("HISTORY_BURST_BYTES", lim.history_burst_bytes),
                   help="bytes of history answers a client may draw at once")
    p.add_argument("--max-connections", type=int,
                   default=env("MAX_CONNECTIONS", d.max_connections))
    p.add_argument("--max-per-address", type=int,
                   default=env("MAX_PER_ADDRESS", d.max_per_address),
                   help="connections from one source address (0: no cap)")
    p.add_argument("--socket-sndbuf", type=int, default=env("SOCKET_SNDBUF", d.socket_sndbuf),
                   help="kernel send buffer per client socket in bytes (0: kernel default)")
    p.add_argument("--tls-cert", default=env("TLS_CERT", None))
    p.add_argument("--tls-key", default=env("TLS_KEY", None))
    p.add_argument("--thread-stack-kib", type=int,
                   default=env("THREAD_STACK_KIB", d.thread_stack_kib))
    p.add_argument("--switch-interval-ms", type=float,
                   default=env("SWITCH_INTERVAL_MS", d.switch_interval_ms),
                   help="CPython GIL switch interval for this process")
    p.add_argument("--heartbeat", type=float, default=env("HEARTBEAT", d.heartbeat_s),
                   help="seconds between heartbeats (and dead-peer checks)")
    p.add_argument("--lease-ms", type=int, default=env("LEASE_MS", d.lease_ms),
                   help="a gateway silent this long is dead: its names and memberships go")
    p.add_argument("--probe-interval", type=float,
                   default=env("PROBE_INTERVAL", d.probe_interval_s))
    p.add_argument("--probe-timeout", type=float, default=env("PROBE_TIMEOUT", d.probe_timeout_s))
    p.add_argument("--guests", default=env("GUESTS", d.guests), choices=["allow", "deny"],
                   help="allow: guests may log in and register accounts; deny: accounts only, "
                   "created by the operator with chat-admin")
    p.add_argument("--log-level", default=env("LOG_LEVEL", d.log_level),
                   choices=["DEBUG", "INFO", "WARNING", "ERROR"], type=str.upper)
    # Abuse and operations (docs/reliability.md): room lifetime, room creation, churn.
    p.add_argument("--room-ttl", type=duration, default=env("ROOM_TTL", d.room_ttl_s),
                   help="a room with no member and no new message for this long is deleted "
                   "from Redis (seconds, or 15m, 12h, 30d; 0: never; default 30d)")
    p.add_argument("--new-rooms-per-min", type=float,
                   default=env("NEW_ROOMS_PER_MIN", d.new_rooms_per_min),
                   help="rooms one user may create a minute, cluster-wide (0: no limit)")
    p.add_argument("--new-rooms-burst", type=int,
                   default=env("NEW_ROOMS_BURST", d.new_rooms_burst),
                   help="rooms one user may create at once")
    p.add_argument("--connect-rate-per-address", type=float,
                   default=env("CONNECT_RATE_PER_ADDRESS", d.connect_rate_per_address),
                   help="new connections a second from one source address (0: no limit; "
                   "behind NAT or a load balancer keep 0 or generous)")
    return p


def parse_config(argv: Sequence[str] | None = None,
                 environ: Mapping[str, str] | None = None) -> GatewayConfig:
    environ = os.environ if environ is None else environ
    a = build_parser(environ).parse_args(argv)
    limits = Limits(
        max_frame=a.max_frame, max_text=a.max_text, rate_per_s=a.rate_per_s, burst=a.burst,
        idle_timeout_s=a.idle_timeout, login_timeout_s=a.login_timeout,
        max_outbound=a.max_outbound, max_rooms=a.max_rooms, max_refused=a.max_refused,
        send_timeout_s=a.send_timeout, history_bytes_per_s=a.history_bytes_per_s,
        history_burst_bytes=a.history_burst_bytes,
    )
    return GatewayConfig(
        host=a.host, port=a.port, redis_url=a.redis_url, gateway_id=a.gateway_id,
        redis_min_replicas=a.redis_min_replicas,
        health_host=a.health_host, health_port=None if a.health_port < 0 else a.health_port,
        ports_file=a.ports_file,
        history=a.history, limits=limits, log_level=a.log_level,
        max_connections=a.max_connections, max_per_address=a.max_per_address,
        socket_sndbuf=a.socket_sndbuf,
        tls_cert=a.tls_cert, tls_key=a.tls_key, thread_stack_kib=a.thread_stack_kib,
        switch_interval_ms=a.switch_interval_ms,
        heartbeat_s=a.heartbeat, lease_ms=a.lease_ms, probe_interval_s=a.probe_interval,
        probe_timeout_s=a.probe_timeout, guests=a.guests,
        room_ttl_s=a.room_ttl, new_rooms_per_min=a.new_rooms_per_min,
        new_rooms_burst=a.new_rooms_burst, connect_rate_per_address=a.connect_rate_per_address,
    )
