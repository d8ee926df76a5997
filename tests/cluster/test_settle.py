"""A send whose script ran while Redis restarted and whose reply was lost is settled, not
answered ``unavailable`` (which promises "not carried out").

Real parts: the broker as a gateway builds it (``Broker.from_url``: its retries and
backoff, the publisher's own link), a real redis-server, and between them a TCP proxy that
lets one script through, swallows Redis's reply and plays a restart longer than every retry
(``tests.support.restarting_proxy``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.redis import keys
from gateway.redis.broker import Broker, BrokerUnavailable
from tests.conftest import Connect, StartGateway
from tests.gateway.live import login, send_ok
from tests.support.redis_server import RedisServer
from tests.support.restarting_proxy import RestartingProxy

RETRIES_S = 0.35
"""What ``Broker.from_url``'s default retries wait in all (0.05 + 0.1 + 0.2)."""


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[RestartingProxy]:
    p = RestartingProxy((redis_server.host, redis_server.port))
    yield p
    p.close()


def test_a_send_whose_reply_a_restart_lost_gets_its_id_once_redis_is_back(
        proxy: RestartingProxy, redis_server: RedisServer) -> None:
    broker = Broker.from_url(proxy.url, "gw1")
    raw = redis_server.client()
    try:
        assert broker.publish_message("warm", "Bob", "loads the script", 1.0, "w").id == 1
        proxy.restart_after_next_script(down_s=4 * RETRIES_S)
        started = time.monotonic()
        pub = broker.publish_message("lobby", "Bob", "x", 1.0, "r1")
        took = time.monotonic() - started
        assert proxy.restarted.is_set() and proxy.up.is_set(), (pub, took)
        assert (pub.id, pub.duplicate) == (1, True)  # the run the lost reply was about
        assert took >= 4 * RETRIES_S  # it waited for Redis, past every retry
        assert raw.llen(keys.room_log("lobby")) == 1
        assert broker.publish_message("lobby", "Bob", "y", 1.0, "r2").id == 2
    finally:
        broker.close()
        raw.close()


def test_without_settling_the_same_restart_answers_unavailable_for_a_stored_send(
        proxy: RestartingProxy, redis_server: RedisServer) -> None:
    """The gap the settling closes, as the chaos test met it ("published although its
    send failed"): kept as the proof that the scenario above does lose the reply."""
    broker = Broker.from_url(proxy.url, "gw1", publish_settle_s=0.0)
    raw = redis_server.client()
    try:
        assert broker.publish_message("warm", "Bob", "loads the script", 1.0, "w").id == 1
        proxy.restart_after_next_script(down_s=4 * RETRIES_S)
        with pytest.raises(BrokerUnavailable):
            broker.publish_message("lobby", "Bob", "x", 1.0, "r1")
        assert raw.llen(keys.room_log("lobby")) == 1  # stored although "unavailable"
    finally:
        broker.close()
        raw.close()


def test_a_send_in_doubt_is_unavailable_when_redis_stays_away_past_the_settle_time(
        proxy: RestartingProxy, redis_server: RedisServer) -> None:
    broker = Broker.from_url(proxy.url, "gw1", publish_settle_s=1.0)
    try:
        assert broker.publish_message("warm", "Bob", "loads the script", 1.0, "w").id == 1
        proxy.restart_after_next_script(down_s=30.0)
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable):
            broker.publish_message("lobby", "Bob", "x", 1.0, "r1")
        assert 1.0 <= time.monotonic() - started < 5.0
    finally:
        broker.close()
    with redis_server.client() as raw:  # the one escape left: it ran, Redis stayed away
        assert raw.llen(keys.room_log("lobby")) == 1


def test_frames_sent_while_a_send_settles_are_answered_not_refused_as_a_burst(
        proxy: RestartingProxy, start_gateway: StartGateway, connect: Connect) -> None:
    """The session's reader waits for the send in doubt (2 s of "restart"); the client
    sends 50 pings meanwhile at 25 a second, about its rate of 20 with the 40 it had
    saved up. Read at once after the wait they are more than a burst, but the wait is
    credited to the session's bucket: every one gets its ``pong``, after the ``ack``."""
    gw = start_gateway(redis_url=proxy.url)
    client = connect(gw.address)
    login(client, "ann")
    assert send_ok(client, "lobby", "loads the script", "w") == 1
    proxy.restart_after_next_script(down_s=2.0, marker=b"settle-me")
    client.send(type="send", room="lobby", text="settle-me", ref="s1")
    for n in range(50):
        client.send(type="ping", ref=f"p{n}")
        time.sleep(0.04)  # the client's pace, not a wait for an event
    assert proxy.restarted.is_set()
    assert client.recv_type("ack", ref="s1", timeout=15)["id"] == 2
    answers: list[dict[str, Any]] = []
    while len(answers) < 50:  # live messages (the room's own two) may come between
        frame = client.recv(timeout=10)
        if frame["type"] in ("pong", "error"):
            answers.append(frame)
    assert [(a["type"], a["ref"]) for a in answers] == [("pong", f"p{n}") for n in range(50)]


def test_a_send_on_a_link_redis_closed_while_idle_is_no_doubt_and_fails_at_once(
        redis_server: RedisServer) -> None:
    """Redis killed while the link was idle: the link sees the close before it writes, so
    the send cannot have run and is ``unavailable`` after the retries, not the settle."""
    broker = Broker.from_url(redis_server.url, "gw1")
    try:
        assert broker.publish_message("lobby", "Bob", "x", 1.0, "r1").id == 1
        redis_server.kill()
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable):
            broker.publish_message("lobby", "Bob", "y", 1.0, "r2")
        assert time.monotonic() - started < 3.0  # the settle time is 10 s
    finally:
        broker.close()
