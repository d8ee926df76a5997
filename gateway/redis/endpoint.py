"""How the gateway reaches Redis for a target: the pooled client, and the address of the
primary for the links that speak RESP themselves (publisher, pub/sub).

For one Redis the address never changes. Under Sentinel, every call of
``address()`` asks the sentinels for the current primary, and the pooled
client is redis-py's ``Sentinel.master_for``, which does the same on every
reconnect: so after a promotion each link that loses its connection finds the
new primary on its own. On Redis Cluster the pooled client is redis-py's
``RedisCluster`` (it routes each command by its key's slot and follows
``MOVED``/``ASK`` itself), made on first use, since its constructor needs a
node that answers (``_LazyCluster``); the links instead ask ``slots`` (a
``SlotMap``) which master owns a slot and connect there (``node_address``).
``check()`` is the start-up diagnosis: a topology that does not match the URL
raises ``TopologyError`` with one line for the operator.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, cast

import redis
from redis._parsers.encoders import Encoder
from redis.cluster import ClusterNode, RedisCluster
from redis.commands.core import Script
from redis.exceptions import RedisClusterException
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError, Sentinel

from gateway.redis.slotmap import Node, SlotMap
from gateway.redis.target import (
    ClusterTarget,
    RedisTarget,
    SentinelTarget,
    SingleTarget,
    redacted,
)
from gateway.redis.wire import RedisAddress, RedisWire

log = logging.getLogger(__name__)


class TopologyError(RuntimeError):
    """Redis is not what the URL says (a cluster URL at a plain Redis, an unknown master)."""


class RedisEndpoint:
    """The target's connections; see the module docstring."""

    def __init__(self, target: RedisTarget, *, timeout_s: float, retry: Retry,
                 health_check_interval: int = 5, pool_size: int = 64,
                 pool_wait_s: float = 10.0) -> None:
        self.target = target
        self._timeout_s = timeout_s
        self._sentinel: Sentinel | None = None
        self.slots: SlotMap | None = None
        """Redis Cluster only: which master owns each slot, for the links."""
        common: dict[str, Any] = {
            "socket_connect_timeout": timeout_s, "socket_timeout": timeout_s, "retry": retry,
            "health_check_interval": health_check_interval, "decode_responses": False}
        if isinstance(target, SingleTarget):
            pool = redis.BlockingConnectionPool.from_url(
                target.url, max_connections=pool_size, timeout=pool_wait_s, **common)
            client = redis.Redis(connection_pool=pool)
            client.auto_close_connection_pool = True  # close() releases the pool's sockets
            self._single = RedisAddress.from_url(target.url)
        elif isinstance(target, SentinelTarget):
            tls = target.tls.redis_kwargs() if target.tls else {}
            sentinel_kwargs: dict[str, Any] = {
                "socket_connect_timeout": timeout_s, "socket_timeout": timeout_s, **tls}
            if target.sentinel_password:
                sentinel_kwargs["password"] = target.sentinel_password
            self._sentinel = Sentinel(
                [(s.host, s.port) for s in target.sentinels], sentinel_kwargs=sentinel_kwargs,
                username=target.auth.username, password=target.auth.password, db=target.db,
                **tls)
            client = self._sentinel.master_for(target.master, **common)
            client.auto_close_connection_pool = True
        else:
            tls = target.tls.redis_kwargs() if target.tls else {}
            cluster_kwargs: dict[str, Any] = {
                "startup_nodes": [ClusterNode(s.host, s.port)  # type: ignore[no-untyped-call]
                                  for s in target.seeds],
                "username": target.auth.username, "password": target.auth.password,
                "socket_connect_timeout": timeout_s, "socket_timeout": timeout_s,
                "decode_responses": False, "retry": retry,
                # as for one Redis: a thread waits for a free connection rather than
                # failing at once past the pool's size (a login storm)
                "connection_pool_class": redis.BlockingConnectionPool,
                "max_connections": pool_size, "timeout": pool_wait_s, **tls}
            # typed as the single client the broker is written against: RedisCluster has
            # the same commands, routed by slot
            client = cast(redis.Redis, _LazyCluster(
                lambda: RedisCluster(**cluster_kwargs),
                {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s}))
            self.slots = SlotMap([Node(s.host, s.port) for s in target.seeds],
                                 self.connect_node, tls=target.tls is not None)
        self.client: redis.Redis = client

    @property
    def sharded(self) -> bool:
        """Redis Cluster: keys live on several masters, room channels use sharded pub/sub."""
        return self.slots is not None

    def node_address(self, node: Node) -> RedisAddress:
        """How to reach one cluster node: its address, with the URL's user, password, TLS."""
        target = self.target
        assert isinstance(target, ClusterTarget)
        tls = target.tls
        return RedisAddress(
            host=node.host, port=node.port, username=target.auth.username,
            password=target.auth.password, tls=tls is not None,
            ca_file=tls.ca_certs if tls else None,
            verify=(tls.cert_reqs.lower() not in ("none", "cert_none")) if tls else True)

    def connect_node(self, node: Node) -> RedisWire:
        """A fresh bare connection to a cluster node (the slot map's reads)."""
        return RedisWire(self.node_address(node), timeout=self._timeout_s)

    def address(self) -> RedisAddress:
        """Where the primary is now (asks the sentinels under Sentinel)."""
        target = self.target
        if isinstance(target, ClusterTarget):
            raise TypeError("a cluster has no one primary: route by slot (slots, node_address)")
        if not isinstance(target, SentinelTarget):
            return self._single
        assert self._sentinel is not None
        try:
            host, port = self._sentinel.discover_master(target.master)
        except redis.RedisError as exc:  # no sentinel answers, or none knows a primary
            raise OSError(f"no primary for {target.master!r}: {exc}") from exc
        tls = target.tls
        return RedisAddress(
            host=str(host), port=int(port), username=target.auth.username,
            password=target.auth.password, tls=tls is not None,
            ca_file=tls.ca_certs if tls else None,
            verify=(tls.cert_reqs.lower() not in ("none", "cert_none")) if tls else True,
            db=target.db)

    def check(self) -> None:
        """Raise ``TopologyError`` when Redis does not match the URL; Redis being out of
        reach is not a mismatch (the gateway starts unhealthy and keeps trying)."""
        target = self.target
        if isinstance(target, ClusterTarget):
            _check_cluster(target, self._timeout_s)
            return
        if isinstance(target, SentinelTarget):
            assert self._sentinel is not None
            modes = _modes(self._sentinel)
            if not modes:
                return  # no sentinel answers: an outage, not a mismatch
            if "sentinel" not in modes:
                raise TopologyError(
                    f"{', '.join(map(str, target.sentinels))} is not a Redis Sentinel "
                    f"(it runs in {sorted(modes)[0]} mode): a redis+sentinel:// URL names "
                    "sentinels")
            try:
                self._sentinel.discover_master(target.master)
            except MasterNotFoundError as exc:
                raise TopologyError(
                    f"the sentinels at {', '.join(map(str, target.sentinels))} know no "
                    f"master named {target.master!r} (or none is reachable): {exc}") from None
            return
        if isinstance(target, SingleTarget):
            try:
                info = self.client.info("server")
            except redis.RedisError:
                return
            if info.get("redis_mode") == "sentinel":
                raise TopologyError(
                    f"{redacted(target.url)} is a Redis Sentinel: use "
                    "redis+sentinel://host:port/MASTER_NAME")


def _modes(sentinel: Sentinel) -> set[str]:
    """The ``redis_mode`` of every sentinel that answers (empty when none does)."""
    modes = set()
    for node in sentinel.sentinels:
        try:
            modes.add(str(node.info("server").get("redis_mode", "standalone")))
        except redis.RedisError:
            continue
    return modes


def _check_cluster(target: ClusterTarget, timeout_s: float) -> None:
    """The first seed that answers must be a cluster node (else one line saying to use a
    ``redis://`` URL); none answering is an outage, not a mismatch."""
    url = "redis+cluster://" + ",".join(map(str, target.seeds))
    for seed in target.seeds:
        node = redis.Redis(host=seed.host, port=seed.port, username=target.auth.username,
                           password=target.auth.password, socket_timeout=timeout_s,
                           socket_connect_timeout=timeout_s,
                           **(target.tls.redis_kwargs() if target.tls else {}))
        try:
            info = node.info("server")
            enabled = info.get("redis_mode") == "cluster"
        except redis.AuthenticationError as exc:
            raise TopologyError(f"{seed} refused the URL's credentials: {exc}") from None
        except redis.RedisError:
            continue
        finally:
            node.close()
        if info.get("redis_mode") == "sentinel":
            raise TopologyError(f"{seed} is a Redis Sentinel, not a cluster node: use "
                                f"redis+sentinel://{seed}/MASTER_NAME, not {url}")
        if not enabled:
            raise TopologyError(f"{seed} is not a Redis Cluster node (cluster_enabled:0): "
                                f"use redis://{seed} for one Redis, not {url}")
        version = str(info.get("redis_version", "0"))
        if _major(version) < 7:
            raise TopologyError(f"{seed} runs Redis {version}: a Redis Cluster needs Redis 7 or "
                                "newer (sharded pub/sub, SSUBSCRIBE)")
        return


def _major(version: str) -> int:
    try:
        return int(version.split(".", 1)[0])
    except ValueError:
        return 0


class _LazyCluster:
    """redis-py's ``RedisCluster``, made at its first use and again after a failed try.

    Its constructor reads the slot map and fails when no seed answers; the
    gateway must start anyway (unhealthy) and serve once the cluster is there,
    as it does with one Redis. While no node answers every command raises
    ``redis.ConnectionError`` (``unavailable``). Any thread may use it; ``_lock``
    guards only the swap of the made client (making it is I/O, done outside).
    """

    def __init__(self, make: Callable[[], RedisCluster],
                 connection_kwargs: dict[str, Any]) -> None:
        self._make = make
        self._connection_kwargs = connection_kwargs
        self._lock = threading.Lock()
        self._client: RedisCluster | None = None

    def get_connection_kwargs(self) -> dict[str, Any]:
        """What ``BrokerBase`` reads at construction (the socket timeout), without I/O."""
        return self._connection_kwargs

    def get_encoder(self) -> Encoder:
        """How strings become bytes (``RedisCluster``'s with ``decode_responses`` off)."""
        return Encoder("utf-8", "strict", False)  # type: ignore[no-untyped-call]

    def register_script(self, script: str | bytes) -> Script:
        """A script bound to this client, made without I/O (a store built at start)."""
        return Script(cast(redis.Redis, self), script)

    def _real(self) -> RedisCluster:
        client = self._client
        if client is not None:
            return client
        try:
            made: RedisCluster | None = self._make()
        except RedisClusterException as exc:
            raise redis.ConnectionError(f"Redis Cluster out of reach: {exc}") from exc
        with self._lock:
            if self._client is None:
                self._client, made = made, None
            client = self._client
        if made is not None:  # another thread made one first
            made.close()
        assert client is not None
        return client

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._real(), name)


__all__ = ["RedisEndpoint", "TopologyError"]
