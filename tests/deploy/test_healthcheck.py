"""deploy.healthcheck: the container HEALTHCHECK follows /healthz of a real gateway."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.healthcheck import (
    CLIENTS_METRIC,
    Endpoint,
    Health,
    local_endpoint,
    parse_metrics,
    probe,
    read_metrics,
)
from tests.support.gateways import GatewayProcess
from tests.support.redis_server import RedisServer, free_port
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]


def run_healthcheck(health_port: int) -> subprocess.CompletedProcess[str]:
    """`python -m deploy.healthcheck` as Docker runs it: configured by CHAT_* only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_")}
    env.update(CHAT_HOST="0.0.0.0", CHAT_HEALTH_PORT=str(health_port), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "deploy.healthcheck"], env=env,
                          capture_output=True, text=True, timeout=30, check=False)


def test_endpoint_from_the_gateway_environment() -> None:
    assert local_endpoint({}) == Endpoint("127.0.0.1", 8050)
    assert local_endpoint({"CHAT_HOST": "0.0.0.0", "CHAT_HEALTH_PORT": "9000"}) == Endpoint(
        "127.0.0.1", 9000)
    assert local_endpoint({"CHAT_HOST": "10.1.2.3", "CHAT_HEALTH_HOST": "::"}).host == "127.0.0.1"
    assert local_endpoint({"CHAT_HOST": "127.0.0.2"}).host == "127.0.0.2"


def test_metrics_are_summed_over_labels() -> None:
    text = (
        "# TYPE chat_sessions gauge\nchat_sessions 3.0\n"
        "# TYPE chat_errors counter\n"
        'chat_errors_total{code="bad_frame"} 2.0\nchat_errors_total{code="bad_text"} 1.0\n'
    )
    assert parse_metrics(text) == {"chat_sessions": 3.0, "chat_errors_total": 3.0}
    assert parse_metrics("not { prometheus") == {}


def test_nothing_listening_is_down() -> None:
    assert probe(Endpoint("127.0.0.1", free_port()), timeout=1) is Health.DOWN
    assert read_metrics(Endpoint("127.0.0.1", free_port()), timeout=1) is None


@pytest.mark.slow
def test_healthcheck_is_healthy_until_redis_goes(redis_server: RedisServer) -> None:
    gateway = GatewayProcess(redis_server.url, "gw-health")
    try:
        endpoint = Endpoint("127.0.0.1", gateway.health_port)
        assert probe(endpoint) is Health.OK
        metrics = read_metrics(endpoint)
        assert metrics is not None and metrics[CLIENTS_METRIC] == 0
        ok = run_healthcheck(gateway.health_port)
        assert ok.returncode == 0, ok.stdout + ok.stderr

        redis_server.kill()
        wait_for(lambda: probe(endpoint) is Health.NO_REDIS, timeout=15, interval=0.1,
                 what="/healthz to answer 503")
        failing = run_healthcheck(gateway.health_port)
        assert failing.returncode == 1
        assert "no redis" in failing.stdout
    finally:
        gateway.close()
    assert run_healthcheck(gateway.health_port).returncode == 1, "a dead gateway is unhealthy"
