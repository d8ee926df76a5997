"""When Redis cannot serve a request: ``BrokerUnavailable``, and telling it from our own bugs."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from protocol.errors import ChatError, ErrorCode

logger = logging.getLogger(__name__)

_UNAVAILABLE_REPLY = re.compile(
    r"(?:^|: -)(?:OOM|READONLY|MASTERDOWN|MISCONF|NOREPLICAS|LOADING|TRYAGAIN|CLUSTERDOWN"
    r"|MOVED|ASK)\b"
)
"""Error replies meaning Redis cannot serve writes now, not a bug of ours. Inside a script
Redis 6 reports them as ``Error running script (...): @user_script: 14: -OOM ...``."""
_UNAVAILABLE_ERRORS = (
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
)
"""The same replies when redis-py maps them to classes (it strips the code from the text)."""
_CLUSTER_OUTAGES = (
    redis.exceptions.ClusterError,
    redis.exceptions.RedisClusterException,  # a slot with no master, no node answering
    redis.exceptions.AskError,  # MOVED and ASK
)
"""Redis Cluster in the middle of a failover or a slot migration: redis-py's cluster client
gave up following it (too many redirections, a slot with no master yet, no node answering),
or a redirection reached the broker after the publisher's own attempts."""


class BrokerUnavailable(ChatError):
    """Redis is out of reach (after retries) or cannot serve writes: ``unavailable``."""

    code = ErrorCode.UNAVAILABLE


@contextmanager
def guard(what: str) -> Iterator[None]:
    """Turn Redis being out of reach into ``BrokerUnavailable``; let our own bugs through."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise BrokerUnavailable(f"redis unavailable during {what}: {exc}") from exc
    except _CLUSTER_OUTAGES as exc:
        raise BrokerUnavailable(f"redis cluster unavailable during {what}: {exc}") from exc
    except redis.ResponseError as exc:
        if isinstance(exc, _UNAVAILABLE_ERRORS) or _UNAVAILABLE_REPLY.search(str(exc)):
            raise BrokerUnavailable(f"redis refused {what}: {exc}") from exc
        raise


def too_late(what: str) -> BrokerUnavailable:
    """What a request whose script ran past its deadline raises (docs/architecture.md,
    "Deadlines"): ``unavailable``, with a warning in the log."""
    logger.warning("redis ran a %s after its deadline: nothing done (a stalled or slow "
                   "redis, a long wait for a connection, or redis's clock ahead of ours)",
                   what)
    return BrokerUnavailable(f"redis ran the {what} after its deadline")


__all__ = ["BrokerUnavailable", "guard", "too_late"]
