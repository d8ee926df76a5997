"""Prometheus metrics of one gateway, in a registry of its own (no global state)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class GatewayMetrics:
    def __init__(self, gateway_id: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.connections = Gauge("chat_connections", "Open client connections", registry=r)
        self.logged_in = Gauge("chat_sessions", "Logged-in sessions", registry=r)
        self.frames_in = Counter("chat_frames_in", "Client frames received", ["type"], registry=r)
        self._frames_in: dict[str, Any] = {}
        self.frames_out = Counter("chat_frames_out", "Frames sent to clients", ["type"], registry=r)
        self.errors = Counter("chat_errors", "Error frames sent, by code", ["code"], registry=r)
        self.backlog = Gauge("chat_fanout_backlog_bytes", "Bytes queued for clients", registry=r)
        self.redis_reconnects = Counter(
            "chat_redis_reconnects", "Pub/sub connection rebuilds", registry=r
        )
        self.probe_rtt = Gauge(
            "chat_probe_rtt_seconds", "Round trip of the last pub/sub self-probe", registry=r
        )
        self.publish_seconds = Histogram(
            "chat_publish_seconds",
            "Round trip of one publisher batch (messages and dms stored and published)",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0), registry=r,
        )
        self.slow_consumers = Counter(
            "chat_slow_consumers", "Clients disconnected for a full backlog", registry=r
        )
        self.abusers = Counter(
            "chat_abusers", "Clients disconnected for repeated refused frames", registry=r
        )
        self.accept_failures = Counter(
            "chat_accept_failures", "Connections refused for want of file descriptors",
            registry=r
        )
        self.healthy = Gauge("chat_healthy", "1 when Redis and the subscriber work", registry=r)
        self.info = Gauge("chat_gateway_info", "Gateway identity", ["gateway"], registry=r)
        self.info.labels(gateway=gateway_id).set(1)

    def frame_in(self, kind: str) -> None:
        """Count one client frame of ``kind`` (the labelled child is looked up once: this
        runs for every frame)."""
        child = self._frames_in.get(kind)
        if child is None:
            child = self._frames_in.setdefault(kind, self.frames_in.labels(kind))
        child.inc()

    def publish_batch(self, size: int, seconds: float) -> None:
        """One publisher batch of ``size`` requests took ``seconds``: one sample per batch."""
        self.publish_seconds.observe(seconds)

    def track_backlog(self, total: Callable[[], float]) -> None:
        self.backlog.set_function(total)

    def render(self) -> bytes:
        return generate_latest(self.registry)
