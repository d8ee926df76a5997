"""How the gateway reaches Redis for a target: the pooled client, and the address of the
primary for the links that speak RESP themselves (publisher, pub/sub).

For one Redis the address never changes. Under Sentinel, every call of
``address()`` asks the sentinels for the current primary, and the pooled
client is redis-py's ``Sentinel.master_for``, which does the same on every
reconnect: so after a promotion each link that loses its connection finds the
new primary on its own. ``check()`` is the start-up diagnosis: a topology that
does not match the URL raises ``TopologyError`` with one line for the operator.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError, Sentinel

from gateway.redis.target import (
    ClusterTarget,
    RedisTarget,
    SentinelTarget,
    SingleTarget,
    redacted,
)
from gateway.redis.wire import RedisAddress

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
        common: dict[str, Any] = {
            "socket_connect_timeout": timeout_s, "socket_timeout": timeout_s, "retry": retry,
            "health_check_interval": health_check_interval, "decode_responses": False}
        if isinstance(target, SingleTarget):
            pool = redis.BlockingConnectionPool.from_url(
                target.url, max_connections=pool_size, timeout=pool_wait_s, **common)
            client = redis.Redis(connection_pool=pool)
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
        else:
            _refuse_cluster(target, timeout_s)
        client.auto_close_connection_pool = True  # close() releases the pool's sockets too
        self.client: redis.Redis = client

    def address(self) -> RedisAddress:
        """Where the primary is now (asks the sentinels under Sentinel)."""
        target = self.target
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


def _refuse_cluster(target: ClusterTarget, timeout_s: float) -> None:
    """Redis Cluster is not served yet: say so, or that the seeds are no cluster at all."""
    url = "redis+cluster://" + ",".join(map(str, target.seeds))
    for seed in target.seeds:
        node = redis.Redis(host=seed.host, port=seed.port, username=target.auth.username,
                           password=target.auth.password, socket_timeout=timeout_s,
                           socket_connect_timeout=timeout_s,
                           **(target.tls.redis_kwargs() if target.tls else {}))
        try:
            enabled = node.info("cluster").get("cluster_enabled")
        except redis.RedisError:
            continue
        finally:
            node.close()
        if not enabled:
            raise TopologyError(f"{seed} is not a Redis Cluster node (cluster_enabled:0): "
                                f"use redis://{seed} for one Redis, not {url}")
        break
    raise TopologyError(f"Redis Cluster ({url}) is not supported by this gateway yet: use a "
                        "redis://, rediss:// or redis+sentinel:// URL")


__all__ = ["RedisEndpoint", "TopologyError"]
