"""A Redis stall longer than the lease must not make the gateways reap each other.

While Redis is stopped (SIGSTOP) no gateway can heartbeat, so when it runs
again every heartbeat in ``{liveness}:gateways`` looks older than the lease. A
gateway that reaped its peers then would publish ``left`` for every member of
the cluster, delete their name records (any name briefly claimable without
its token), and the victims would restore everything a heartbeat later: a
cluster-wide presence flap although nobody left. Found by the chaos test
(1200 ``left`` + 1200 ``joined`` after its 5 s pause).

A stall longer than the broker's retries (about 8 s) is answered with
``unavailable``, which docs/protocol.md defines as "not carried out"; but the
script the gateway sent is still in the stopped Redis's socket buffer and
runs when Redis resumes. Its deadline (gateway.redis.broker, "Deadlines") makes
that late run write nothing: the last test proves it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.redis import keys
from gateway.server import Gateway
from tests.gateway.live import login
from tests.support.gateways import gateways
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_for
from tests.support.wire import WireClient

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(60)]

LEASE_S = 2.0  # tests.support.gateways.FAST


@pytest.fixture
def cluster(redis_server: RedisServer) -> Iterator[list[Gateway]]:
    with gateways(redis_server.url, 3) as gws:
        yield gws


def beaten_since(redis_server: RedisServer, since_ms: int) -> bool:
    """Every gateway's heartbeat in Redis is from after ``since_ms``."""
    admin = redis_server.client()
    try:
        beats: list[tuple[bytes, float]] = admin.zrange(  # type: ignore[assignment]
            keys.GATEWAYS, 0, -1, withscores=True)
    finally:
        admin.close()
    return len(beats) == 3 and all(score >= since_ms for _, score in beats)


@pytest.mark.parametrize("attempt", range(2))
@pytest.mark.slow
def test_a_redis_stall_longer_than_the_lease_shows_nobody_leaving(
        redis_server: RedisServer, cluster: list[Gateway], caplog: pytest.LogCaptureFixture,
        attempt: int) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    users = [WireClient(gw.address) for gw in cluster]
    try:
        for i, user in enumerate(users):
            login(user, f"user{i}")
        for i, user in enumerate(users):  # everyone has seen those after it join
            for later in range(i, 3):
                user.recv_type("joined", name=f"user{later}")
        redis_server.pause()
        threading.Event().wait(LEASE_S + 1.5)  # the fault: a stall longer than the lease
        redis_server.resume()
        resumed_ms = int(time.time() * 1000)
        # Once every gateway has beaten after the stall none can look dead any more:
        # whatever reaping the stall caused has happened by then.
        wait_for(lambda: beaten_since(redis_server, resumed_ms), 15,
                 what="a fresh heartbeat from every gateway")
        users[0].send(type="send", room="lobby", text="after the stall", ref="mark")
        for user in users:
            frames: list[dict[str, Any]] = []
            while not any(f["type"] == "message" and f["text"] == "after the stall"
                          for f in frames):
                frames.append(user.recv(timeout=15))
            assert [f for f in frames if f["type"] == "left"] == []
        users[0].send(type="who", room="lobby")
        assert users[0].recv_type("who")["names"] == ["user0", "user1", "user2"]
        assert [r.getMessage() for r in caplog.records if "reaped" in r.getMessage()] == []
    finally:
        for user in users:
            user.close()


@pytest.mark.slow
def test_a_send_answered_unavailable_during_a_stall_is_never_published(
        redis_server: RedisServer) -> None:
    with gateways(redis_server.url, 1) as (gw,):
        alice = WireClient(gw.address, timeout=30)
        try:
            login(alice, "alice")
            alice.send(type="send", room="lobby", text="before", ref="r1")
            alice.recv_type("ack", ref="r1")  # the publish script is cached in Redis now
            redis_server.pause()
            try:
                alice.send(type="send", room="lobby", text="during the stall", ref="r2")
                assert alice.recv_type("error", ref="r2", timeout=30)["code"] == "unavailable"
            finally:
                redis_server.resume()
            alice.send(type="send", room="lobby", text="after", ref="r3")
            # Redis ran whatever was buffered before r3, and alice hears a room's messages
            # in order: had the stalled send been published, she has it by now.
            seen: list[dict[str, Any]] = []
            while not (any(f["type"] == "ack" and f["ref"] == "r3" for f in seen)
                       and any(f["type"] == "message" and f["text"] == "after" for f in seen)):
                seen.append(alice.recv(timeout=15))
            assert not [f for f in seen if f.get("text") == "during the stall"], seen
            admin = redis_server.client()
            lines: list[bytes] = admin.lrange(keys.room_log("lobby"), 0, -1)  # type: ignore[assignment]
            stored = [line.decode() for line in lines]
            admin.close()
            assert not [line for line in stored if "during the stall" in line], stored
        finally:
            alice.close()
