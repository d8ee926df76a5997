"""Probes of a gateway's HTTP endpoint: ``/healthz`` and ``/metrics``.

The container HEALTHCHECK runs ``python -m deploy.healthcheck`` (exit 0 when
``/healthz`` answers 200), and chat-cluster reads the same two endpoints for
its status table. ``http.client`` rather than ``urllib``: a probe of a
loopback port must never go through an ``http_proxy`` from the environment.
"""

from __future__ import annotations

import enum
import http.client
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

CLIENTS_METRIC = "chat_sessions"
"""Gauge of the logged-in clients of a gateway (gateway/metrics.py)."""

_ANY_ADDRESS = frozenset({"", "0.0.0.0", "::", "[::]"})


class Health(enum.Enum):
    """What ``/healthz`` said: the gateway's view of its own Redis link."""

    OK = "ok"
    """200: the gateway answers and reaches Redis."""
    NO_REDIS = "no redis"
    """503: the gateway answers but Redis does not."""
    DOWN = "down"
    """No HTTP answer at all (refused, timed out, or another status)."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a gateway's HTTP endpoint listens."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def _get(endpoint: Endpoint, path: str, timeout: float) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def probe(endpoint: Endpoint, timeout: float = 2.0) -> Health:
    """GET ``/healthz`` once."""
    try:
        status, _ = _get(endpoint, "/healthz", timeout)
    except (OSError, http.client.HTTPException):
        return Health.DOWN
    if status == 200:
        return Health.OK
    if status == 503:
        return Health.NO_REDIS
    return Health.DOWN


def read_metrics(endpoint: Endpoint, timeout: float = 2.0) -> dict[str, float] | None:
    """Every sample of ``/metrics``, summed over its labels; None when unreachable."""
    try:
        status, body = _get(endpoint, "/metrics", timeout)
    except (OSError, http.client.HTTPException):
        return None
    if status != 200:
        return None
    return parse_metrics(body.decode("utf-8", "replace"))


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text -> sample name -> value, label sets added up."""
    values: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                values[sample.name] = values.get(sample.name, 0.0) + float(sample.value)
    except ValueError:
        return values
    return values


def local_endpoint(environ: Mapping[str, str]) -> Endpoint:
    """The endpoint of the gateway configured by ``CHAT_*`` variables, seen from its host."""
    host = environ.get("CHAT_HEALTH_HOST") or environ.get("CHAT_HOST") or ""
    if host in _ANY_ADDRESS:
        host = "127.0.0.1"
    return Endpoint(host.strip("[]"), int(environ.get("CHAT_HEALTH_PORT") or 8050))


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0 when the local gateway is healthy, 1 otherwise (Docker HEALTHCHECK)."""
    args = list(sys.argv[1:] if argv is None else argv)
    endpoint = local_endpoint(os.environ)
    if args:
        endpoint = Endpoint(endpoint.host, int(args[0]))
    health = probe(endpoint)
    sys.stdout.write(f"{endpoint}: {health.value}\n")
    return 0 if health is Health.OK else 1


if __name__ == "__main__":
    sys.exit(main())
