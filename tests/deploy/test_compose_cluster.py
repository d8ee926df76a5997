"""deploy/compose.cluster.yml on top of docker-compose.yml: Redis Cluster under the gateways.

Validated by the real Compose CLI (``config``), like the Sentinel override in
test_compose.py. The one-shot init script is also run for real by /bin/sh,
with real redis-cli and six real cluster-enabled redis-servers on loopback:
only the names Docker's DNS would resolve are stood in for (``getent`` and a
``redis-cli`` wrapper that maps service names and their IPs to local ports).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from deploy.redis_cluster import LocalRedisCluster, redis_cli_binary
from gateway.config import parse_config
from gateway.redis.target import ClusterTarget, parse_target
from tests.conftest import require_redis_cluster
from tests.deploy.test_compose import run_compose_files, start_script
from tests.support.compose import COMPOSE_FILE, ROOT

CLUSTER_OVERRIDE = ROOT / "deploy" / "compose.cluster.yml"
NODES = ("redis", "redis-node-2", "redis-node-3", "redis-node-4", "redis-node-5",
         "redis-node-6")
INIT = "redis-cluster-init"


@pytest.fixture(scope="module")
def cluster_resolved() -> dict[str, Any]:
    """docker-compose.yml plus the Cluster override, as Compose resolves the pair."""
    result = run_compose_files(COMPOSE_FILE, CLUSTER_OVERRIDE, args=("config", "--format", "json"))
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config


def test_compose_accepts_the_cluster_override() -> None:
    result = run_compose_files(COMPOSE_FILE, CLUSTER_OVERRIDE, args=("config", "--quiet"))
    assert result.returncode == 0, result.stderr


def test_compose_rejects_a_broken_cluster_override(tmp_path: Path) -> None:
    """The validator is real: a condition Compose does not know is refused."""
    broken = tmp_path / "compose.cluster.yml"
    broken.write_text(CLUSTER_OVERRIDE.read_text().replace(
        "condition: service_completed_successfully", "condition: service_finished"))
    result = run_compose_files(COMPOSE_FILE, broken, args=("config", "--quiet"))
    assert result.returncode != 0
    assert "redis-cluster-init.condition" in result.stderr


def test_cluster_override_adds_five_nodes_and_an_init_service(
        cluster_resolved: dict[str, Any]) -> None:
    services = cluster_resolved["services"]
    assert set(services) == {*NODES, INIT, "gateway", "lb"}
    assert all(services[name]["image"] == "redis:7" for name in (*NODES, INIT))
    # The first node is docker-compose.yml's redis: same volume.
    assert [(v["source"], v["target"]) for v in services["redis"]["volumes"]] == [
        ("redis-data", "/data")]
    for name in NODES[1:]:
        assert [(v["source"], v["target"]) for v in services[name]["volumes"]] == [
            (f"{name}-data", "/data")]
        assert f"{name}-data" in cluster_resolved["volumes"]
    assert not any(svc.get("ports") for name, svc in services.items() if name != "lb")


def test_every_node_is_a_cluster_node_announcing_its_service_name(
        cluster_resolved: dict[str, Any]) -> None:
    for name in NODES:
        node = cluster_resolved["services"][name]
        assert node["environment"] == {"NODE_NAME": name}
        words = start_script(node).split()
        assert words[:3] == ["exec", "docker-entrypoint.sh", "redis-server"]

        def value(option: str, words: list[str] = words) -> str:
            return words[words.index(option) + 1].strip("'\"")

        assert value("--cluster-enabled") == "yes"
        assert value("--cluster-config-file") == "/data/nodes.conf"
        assert value("--cluster-announce-hostname") == "${NODE_NAME}"
        assert value("--cluster-preferred-endpoint-type") == "hostname"
        assert value("--cluster-require-full-coverage") == "no"
        assert value("--appendonly") == "yes"
        assert "redis-cli" in " ".join(node["healthcheck"]["test"])


def test_the_init_service_runs_once_after_every_node_is_healthy(
        cluster_resolved: dict[str, Any]) -> None:
    init = cluster_resolved["services"][INIT]
    assert {name: d["condition"] for name, d in init["depends_on"].items()} == {
        name: "service_healthy" for name in NODES}
    assert init.get("restart", "no") == "no"
    script = start_script(init)
    assert "--cluster-replicas 1" in script and "--cluster-yes" in script


def test_the_gateways_wait_for_the_init_and_take_a_cluster_url(
        cluster_resolved: dict[str, Any]) -> None:
    gateway = cluster_resolved["services"]["gateway"]
    url = gateway["environment"]["CHAT_REDIS_URL"]
    target = parse_target(url)
    assert isinstance(target, ClusterTarget)
    assert [(h.host, h.port) for h in target.seeds] == [(n, 6379) for n in NODES[:3]]
    assert parse_config([], {"CHAT_REDIS_URL": url}).redis_url == url
    assert gateway["depends_on"][INIT]["condition"] == "service_completed_successfully"
    assert gateway["deploy"]["replicas"] == 3


WRAPPER = """\
#!{python}
# redis-cli as the init script would run it inside the compose network: service
# names (-h NAME) and their IPs (IP:6379) become 127.0.0.1 and the node's port.
import os, sys
ports = dict(line.split() for line in open({ports!r}))
args, out = sys.argv[1:], []
i = 0
while i < len(args):
    arg = args[i]
    if arg == "-h" and args[i + 1] in ports:
        out += ["-h", "127.0.0.1", "-p", ports[args[i + 1]]]
        i += 2
        continue
    host, _, port = arg.rpartition(":")
    if port == "6379" and host in ports:
        arg = "127.0.0.1:" + ports[host]
    out.append(arg)
    i += 1
os.execv({cli!r}, [{cli!r}, *out])
"""


def stand_ins(tmp_path: Path, cluster: LocalRedisCluster) -> dict[str, str]:
    """A bin/ with getent (service name -> a made-up IP) and the redis-cli wrapper."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    ips = {name: f"10.9.0.{i + 2}" for i, name in enumerate(NODES)}
    ports = tmp_path / "ports"
    ports.write_text("".join(f"{name} {port}\n{ips[name]} {port}\n"
                             for name, port in zip(NODES, cluster.ports, strict=True)))
    getent = bin_dir / "getent"
    getent.write_text("#!/bin/sh\n" + "".join(
        f'[ "$2" = "{name}" ] && echo "{ip}       {name}" && exit 0\n'
        for name, ip in ips.items()) + "exit 2\n")
    cli = bin_dir / "redis-cli"
    real_cli = redis_cli_binary()
    cli.write_text(WRAPPER.format(python=sys.executable, ports=str(ports), cli=real_cli))
    for program in (getent, cli):
        program.chmod(0o755)
    return {"PATH": f"{bin_dir}:/usr/bin:/bin"}


@pytest.mark.slow
def test_the_init_script_creates_the_cluster_once_and_then_leaves_it_be(
        cluster_resolved: dict[str, Any], tmp_path: Path) -> None:
    require_redis_cluster()
    script = start_script(cluster_resolved["services"][INIT])
    with LocalRedisCluster(tmp_path / "nodes", create=False) as cluster:
        env = stand_ins(tmp_path, cluster)
        done = subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                              timeout=120, check=False, env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "[OK] All 16384 slots covered" in done.stdout
        assert done.stdout.rstrip().endswith("cluster ok")
        cluster.wait_ready(timeout=30)
        nodes = cluster.nodes()
        assert sum(n.is_master for n in nodes) == 3 and len(nodes) == 6
        # A second start (compose up again) finds the cluster and creates nothing.
        again = subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                               timeout=120, check=False, env=env)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "nothing to create" in again.stdout
        assert "Performing hash slots allocation" not in again.stdout
        assert {n.node_id for n in cluster.nodes()} == {n.node_id for n in nodes}


def test_the_init_script_fails_on_a_name_it_cannot_resolve(
        cluster_resolved: dict[str, Any], tmp_path: Path) -> None:
    """No silent half cluster: an unresolvable node stops the script before any MEET."""
    script = start_script(cluster_resolved["services"][INIT])
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "getent").write_text("#!/bin/sh\nexit 2\n")
    (bin_dir / "redis-cli").write_text(
        "#!/bin/sh\necho \"$@\" >> " + str(tmp_path / "calls") + "\n"
        "printf 'cluster_state:fail\\r\\ncluster_known_nodes:1\\r\\n'\n")
    for program in bin_dir.iterdir():
        program.chmod(0o755)
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30,
                          check=False, env={"PATH": f"{bin_dir}:/usr/bin:/bin"})
    assert done.returncode != 0
    assert "cannot resolve redis" in done.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls == ["-h redis cluster info"], "it went on after failing to resolve a name"
