"""Group commit on a real redis-server: batches, each request's own outcome, lost replies.

The publisher's link is the real one (hand-packed RESP, hiredis); failures are
made by wrapping it, so what reached Redis is exactly what the test says.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from typing import Any

import pytest
import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

from gateway.redis import keys
from gateway.redis.broker import Broker, BrokerUnavailable, Published
from gateway.redis.publisher import (
    BatchLost,
    Publisher,
    PublisherStopped,
    Script,
    ScriptCall,
    Wait,
    WireLink,
)
from gateway.redis.wire import RedisAddress
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_for

INCR = Script.of("incr", "return redis.call('INCR', KEYS[1])")


@pytest.fixture
def raw(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis_server.client()
    yield client
    client.close()


class GatedLink:
    """The real link, holding its first batch until ``release``: whatever is submitted
    meanwhile makes the next batch, all of it."""

    def __init__(self, url: str) -> None:
        self.inner = WireLink(RedisAddress.from_url(url), 2.0)
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.batches: list[int] = []

    def run(self, calls: Sequence[ScriptCall], wait: Wait | None = None) -> list[Any]:
        self.entered.set()
        self.gate.wait(10)
        self.batches.append(len(calls))
        return self.inner.run(calls, wait)

    def connect(self) -> None:
        self.inner.connect()

    def close(self) -> None:
        self.inner.close()


class LosesReplies:
    """The real link whose first ``losses`` batches run in Redis but lose every reply."""

    def __init__(self, url: str, losses: int) -> None:
        self.inner = WireLink(RedisAddress.from_url(url), 2.0)
        self.losses = losses

    def run(self, calls: Sequence[ScriptCall], wait: Wait | None = None) -> list[Any]:
        replies = self.inner.run(calls, wait)
        if self.losses:
            self.losses -= 1
            self.inner.close()
            raise BatchLost([], ConnectionResetError("reply lost"))
        return replies

    def connect(self) -> None:
        self.inner.connect()

    def close(self) -> None:
        self.inner.close()


def test_requests_queued_during_a_round_trip_go_as_one_batch_each_with_its_outcome(
        redis_server: RedisServer, raw: redis.Redis) -> None:
    raw.set("text", "not a number")
    link = GatedLink(redis_server.url)
    sizes: list[int] = []
    publisher = Publisher(link, on_batch=lambda size, seconds: sizes.append(size))
    first = publisher.submit(ScriptCall(INCR, ("n",), ()))
    assert link.entered.wait(5)
    rest: list[Future[Any]] = [
        publisher.submit(ScriptCall(INCR, (key,), ())) for key in ("n", "text", "n", "m")]
    link.gate.set()
    assert first.result(5) == 1
    assert rest[0].result(5) == 2
    with pytest.raises(redis.ResponseError, match="not an integer"):
        rest[1].result(5)  # fails alone
    assert (rest[2].result(5), rest[3].result(5)) == (3, 1)
    publisher.stop()
    assert link.batches == [1, 4] and sizes == [1, 4]
    with pytest.raises(PublisherStopped):
        publisher.submit(ScriptCall(INCR, ("n",), ())).result(5)


def test_a_script_redis_lacks_is_sent_by_its_text(redis_server: RedisServer,
                                                  raw: redis.Redis) -> None:
    publisher = Publisher(WireLink(RedisAddress.from_url(redis_server.url), 2.0))
    assert publisher.submit(ScriptCall(INCR, ("n",), ())).result(5) == 1
    raw.script_flush()
    assert publisher.submit(ScriptCall(INCR, ("n",), ())).result(5) == 2
    assert raw.script_exists(INCR.sha.decode()) == [True]
    publisher.stop()


def test_the_url_database_is_the_one_written(redis_server: RedisServer, raw: redis.Redis) -> None:
    url = redis_server.url.rsplit("/", 1)[0] + "/3"
    publisher = Publisher(WireLink(RedisAddress.from_url(url), 2.0))
    assert publisher.submit(ScriptCall(INCR, ("n",), ())).result(5) == 1
    publisher.stop()
    assert raw.get("n") is None
    assert redis.Redis(host=redis_server.host, port=redis_server.port, db=3).get("n") == b"1"


def broker_on(link: Any, url: str, retries: int) -> Broker:
    client = redis.Redis.from_url(url, socket_timeout=2.0)
    return Broker(client, "gw1", link=link, publish_retry=Retry(NoBackoff(), retries))


def test_a_lost_reply_is_sent_again_and_the_run_that_happened_counts_once(
        redis_server: RedisServer, raw: redis.Redis) -> None:
    broker = broker_on(LosesReplies(redis_server.url, 1), redis_server.url, retries=1)
    pub = broker.publish_message("lobby", "Bob", "x", 1.0, None)
    assert (pub.id, pub.duplicate) == (1, False)  # an internal ref meets only its own run
    assert raw.get(keys.room_seq("lobby")) == b"1"
    assert raw.llen(keys.room_log("lobby")) == 1
    broker.close()


class Restarting:
    """The real link to a Redis that restarts: the first ``lose`` batches reach Redis (and
    run there when ``runs``) but their replies are lost; then, until ``restart`` has been
    called and ``down_s`` has passed, every batch fails to connect (nothing written)."""

    def __init__(self, url: str, *, lose: int = 1, runs: bool = True) -> None:
        self.inner = WireLink(RedisAddress.from_url(url), 2.0)
        self.lose = lose
        self.runs = runs
        self.up_at = float("inf")
        self.refused = 0
        self.lost = threading.Event()

    def restart(self, down_s: float) -> None:
        self.up_at = time.monotonic() + down_s

    def run(self, calls: Sequence[ScriptCall], wait: Wait | None = None) -> list[Any]:
        if self.lose:
            self.lose -= 1
            if self.runs:
                self.inner.run(calls, wait)
            self.inner.close()
            self.lost.set()
            raise BatchLost([], ConnectionResetError("reply lost"))
        if time.monotonic() < self.up_at:
            self.refused += 1
            raise BatchLost([], ConnectionRefusedError("redis is restarting"), written=False)
        return self.inner.run(calls, wait)

    def connect(self) -> None:
        """Connects at the first batch."""

    def close(self) -> None:
        self.inner.close()


def settling_broker(link: Any, url: str, *, settle_s: float, window_ms: int = 1500) -> Broker:
    client = redis.Redis.from_url(url, socket_timeout=2.0)
    return Broker(client, "gw1", link=link, publish_retry=Retry(NoBackoff(), 3),
                  publish_settle_s=settle_s, publish_window_ms=window_ms)


def test_a_reply_lost_while_redis_restarts_past_the_retries_is_settled_not_unavailable(
        redis_server: RedisServer, raw: redis.Redis) -> None:
    """The chaos test's 'published although its send failed': the script ran, its reply
    was lost and Redis stayed away longer than the retries; the resend once it is back
    finds the run (``repeat``) and the sender gets its id."""
    link = Restarting(redis_server.url)
    link.restart(0.8)
    broker = settling_broker(link, redis_server.url, settle_s=5.0)
    try:
        pub = broker.publish_message("lobby", "Bob", "x", 1.0, "r1")
    finally:
        broker.close()
    assert link.refused > 3  # the retries ran out while it was away
    assert (pub.id, pub.duplicate) == (1, True)  # the lost run's id, nothing published twice
    assert raw.get(keys.room_seq("lobby")) == b"1" and raw.llen(keys.room_log("lobby")) == 1


def test_a_request_in_doubt_that_never_ran_runs_on_its_resend_within_its_deadline(
        redis_server: RedisServer, raw: redis.Redis) -> None:
    link = Restarting(redis_server.url, runs=False)
    link.restart(0.3)
    broker = settling_broker(link, redis_server.url, settle_s=5.0)
    try:
        pub = broker.publish_message("lobby", "Bob", "x", 1.0, "r1")
    finally:
        broker.close()
    assert link.refused > 3
    assert (pub.id, pub.duplicate) == (1, False)
    assert raw.llen(keys.room_log("lobby")) == 1


def test_a_request_in_doubt_that_never_ran_and_is_past_its_deadline_is_unavailable(
        redis_server: RedisServer, raw: redis.Redis) -> None:
    """Redis's ``too_late`` settles it: it never ran and never will, so ``unavailable``
    is the truth."""
    link = Restarting(redis_server.url, runs=False)
    link.restart(0.8)  # longer than the 300 ms window
    broker = settling_broker(link, redis_server.url, settle_s=5.0, window_ms=300)
    try:
        with pytest.raises(BrokerUnavailable, match="deadline"):
            broker.publish_message("lobby", "Bob", "x", 1.0, "r1")
    finally:
        broker.close()
    assert raw.get(keys.room_seq("lobby")) is None and raw.llen(keys.room_log("lobby")) == 0


def test_a_request_in_doubt_is_unavailable_once_the_settle_time_passed(
        redis_server: RedisServer, raw: redis.Redis) -> None:
    link = Restarting(redis_server.url)  # never restarted: away for good
    broker = settling_broker(link, redis_server.url, settle_s=0.6)
    started = time.monotonic()
    try:
        with pytest.raises(BrokerUnavailable, match="restarting"):
            broker.publish_message("lobby", "Bob", "x", 1.0, "r1")
    finally:
        broker.close()
    assert 0.6 <= time.monotonic() - started < 5.0
    assert link.refused > 4  # sent again, with pauses, until the bound
    assert raw.llen(keys.room_log("lobby")) == 1  # the one escape left: stored meanwhile


def test_requests_never_written_fail_at_once_while_one_in_doubt_settles(
        redis_server: RedisServer, raw: redis.Redis) -> None:
    """A parked request holds neither a lock nor the link: another session's send while
    Redis is away fails after the usual retries, not after the settle time, and one sent
    once Redis is back is acknowledged at once."""
    link = Restarting(redis_server.url)
    broker = settling_broker(link, redis_server.url, settle_s=10.0)
    outcome: list[Any] = []

    def first() -> None:
        outcome.append(broker.publish_message("lobby", "Bob", "first", 1.0, "r1"))

    session = threading.Thread(target=first)
    try:
        session.start()
        assert link.lost.wait(5)
        wait_for(lambda: link.refused > 3, timeout=5, what="the retries to run out")
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable, match="restarting"):
            broker.publish_message("lobby", "Ann", "second", 1.0, "r2")
        assert time.monotonic() - started < 2.0
        assert session.is_alive() and not outcome  # still settling
        link.restart(0.0)
        assert broker.publish_message("lobby", "Ann", "third", 1.0, "r3").id == 2
        session.join(5)
        assert [(pub.id, pub.duplicate) for pub in outcome] == [(1, True)]
    finally:
        link.restart(0.0)
        session.join(15)
        broker.close()
    assert raw.llen(keys.room_log("lobby")) == 2


def test_settling_off_a_reply_lost_for_good_is_unavailable_and_its_resend_is_a_repeat(
        redis_server: RedisServer, raw: redis.Redis) -> None:
    broker = settling_broker(Restarting(redis_server.url), redis_server.url, settle_s=0.0)
    with pytest.raises(BrokerUnavailable):
        broker.publish_message("lobby", "Bob", "x", 1.0, "r1")
    broker._publisher._link.restart(0.0)  # type: ignore[attr-defined]
    again = broker.publish_message("lobby", "Bob", "x", 1.0, "r1")
    assert again == Published(1, again.epoch, True)
    assert raw.get(keys.room_seq("lobby")) == b"1"
    broker.close()


def test_a_request_in_doubt_fails_as_in_doubt_though_the_last_try_never_connected(
        redis_server: RedisServer) -> None:
    """Written and its reply lost, then retries that could not connect: its outcome says
    it may have run (``BatchLost.written``), what the cluster's router settles it by."""
    link = Restarting(redis_server.url)
    link.restart(60.0)
    publisher = Publisher(link, Retry(NoBackoff(), 2))
    try:
        with pytest.raises(BatchLost) as lost:
            publisher.submit(ScriptCall(INCR, ("n",), ())).result(5)
    finally:
        publisher.stop()
    assert lost.value.written and link.refused == 2


def test_many_sessions_share_few_round_trips(redis_server: RedisServer) -> None:
    sizes: list[int] = []
    broker = Broker.from_url(redis_server.url, "gw1", backoff=NoBackoff(),
                             on_batch=lambda size, seconds: sizes.append(size))
    ids: list[int] = []
    lock = threading.Lock()

    def session(n: int) -> None:
        for i in range(50):
            got = broker.publish_message("busy", f"u{n}", f"{i}", 1.0, f"r{i}").id
            with lock:
                ids.append(got)

    threads = [threading.Thread(target=session, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    broker.close()
    assert sorted(ids) == list(range(1, 401))
    assert sum(sizes) == 400 and len(sizes) < 400  # some batches held several requests


class ThreadsSeen:
    """The real link, noting which thread wrote each batch and how many calls it held."""

    def __init__(self, url: str) -> None:
        self.inner = WireLink(RedisAddress.from_url(url), 2.0)
        self.batches: list[tuple[str, int]] = []

    def connect(self) -> None:
        self.inner.connect()

    def run(self, calls: Sequence[ScriptCall], wait: Wait | None = None) -> list[Any]:
        self.batches.append((threading.current_thread().name, len(calls)))
        return self.inner.run(calls, wait)

    def close(self) -> None:
        self.inner.close()


def test_a_caller_that_waits_writes_its_batch_itself_when_the_publisher_is_idle(
        redis_server: RedisServer) -> None:
    link = ThreadsSeen(redis_server.url)
    publisher = Publisher(link, name="the-publisher")
    done = publisher.run_all([ScriptCall(INCR, ("n",), ()), ScriptCall(INCR, ("n",), ())])
    assert done.done() and done.result(0) == [1, 2]  # no hand-over: done on return
    assert publisher.submit(ScriptCall(INCR, ("n",), ())).result(5) == 3
    publisher.stop()
    assert link.batches == [(threading.current_thread().name, 2), ("the-publisher", 1)]


def test_a_caller_that_waits_queues_behind_a_batch_in_flight_and_keeps_its_order(
        redis_server: RedisServer, raw: redis.Redis) -> None:
    link = GatedLink(redis_server.url)
    publisher = Publisher(link)
    first = publisher.submit(ScriptCall(INCR, ("n",), ()))
    assert link.entered.wait(5)  # the publisher's thread holds the link
    queued = publisher.submit(ScriptCall(INCR, ("order",), ()))
    behind: list[Future[list[Any]]] = []
    caller = threading.Thread(
        target=lambda: behind.append(publisher.run_all([ScriptCall(INCR, ("order",), ())])))
    caller.start()
    caller.join(0.2)
    assert caller.is_alive() and not behind  # waits: not written past the batch in flight
    link.gate.set()
    caller.join(5)
    assert first.result(5) == 1
    assert behind[0].done() and behind[0].result(0) == [2]  # after the one queued before it
    assert queued.result(5) == 1
    publisher.stop()
    assert link.batches == [1, 2]  # the caller wrote both as one batch when the link came free
    refused = publisher.run_all([ScriptCall(INCR, ("n",), ())]).result(5)
    assert isinstance(refused[0], PublisherStopped)


RPUSH = Script.of("rpush", "return redis.call('RPUSH', KEYS[1], ARGV[1])")


def test_threads_mixing_queued_and_waiting_calls_keep_their_own_order(
        redis_server: RedisServer, raw: redis.Redis) -> None:
    sizes: list[int] = []
    publisher = Publisher(WireLink(RedisAddress.from_url(redis_server.url), 2.0),
                          on_batch=lambda size, seconds: sizes.append(size))

    def session(n: int) -> None:
        for i in range(40):
            publisher.submit(ScriptCall(RPUSH, (f"list{n}",), (f"a{i}",)))  # not waited for
            publisher.run_all([ScriptCall(RPUSH, (f"list{n}",), (f"b{i}",))]).result(10)

    threads = [threading.Thread(target=session, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    publisher.stop()  # writes what is still queued
    for n in range(6):
        expected = [f"{c}{i}".encode() for i in range(40) for c in "ab"]
        assert raw.lrange(f"list{n}", 0, -1) == expected
    assert sum(sizes) == 480


def test_the_link_opens_at_start_so_a_slow_lookup_refuses_no_message(
        redis_server: RedisServer, raw: redis.Redis) -> None:
    """Opening the link may take longer than a message's deadline window (the compose
    tier saw a name lookup wait 5-25 s for aardvark-dns, which drops queries while it
    reloads); the publisher opens it as it starts, so no message pays for it."""
    address = RedisAddress.from_url(redis_server.url)
    looked_up = threading.Event()

    def slow_lookup() -> RedisAddress:
        time.sleep(1.0)  # the lookup's own latency, longer than the 0.3 s window
        looked_up.set()
        return address

    client = redis.Redis.from_url(redis_server.url, socket_timeout=2.0)
    broker = Broker(client, "gw1", link=WireLink(slow_lookup, 2.0),
                    publish_retry=Retry(NoBackoff(), 0), publish_window_ms=300)
    broker.start()
    try:
        assert looked_up.wait(10), "the publisher did not open its link as it started"
        wait_for(lambda: len(raw.client_list()) >= 2, timeout=5, what="the link to connect")
        assert broker.publish_message("lobby", "Bob", "first", 1.0, "r1").id == 1
    finally:
        broker.close()
    assert raw.llen(keys.room_log("lobby")) == 1


ONCE = Script.of("once", """
if redis.call('SET', KEYS[1] .. ':' .. ARGV[1], 1, 'NX') then
  redis.call('RPUSH', KEYS[1], ARGV[1])
end
return redis.call('LLEN', KEYS[1])""")
"""An idempotent push (a dedup key per value), as the publisher's real scripts are."""


class LosesTheSecond:
    """The real link: its first batch waits for ``gate``; its second runs in Redis but
    loses its reply, and Redis is then away (nothing written) for ``down_s``."""

    def __init__(self, url: str, down_s: float) -> None:
        self.inner = WireLink(RedisAddress.from_url(url), 2.0)
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.down_s = down_s
        self.up_at = 0.0
        self.batches: list[list[Any]] = []

    def run(self, calls: Sequence[ScriptCall], wait: Wait | None = None) -> list[Any]:
        if not self.batches:
            self.entered.set()
            self.gate.wait(10)
        if time.monotonic() < self.up_at:
            raise BatchLost([], ConnectionRefusedError("redis is restarting"), written=False)
        self.batches.append([call.args[0] for call in calls])
        replies = self.inner.run(calls, wait)
        if len(self.batches) == 2:
            self.inner.close()
            self.up_at = time.monotonic() + self.down_s
            raise BatchLost([], ConnectionResetError("reply lost"))
        return replies

    def connect(self) -> None:
        """Connects at the first batch."""

    def close(self) -> None:
        self.inner.close()


def test_the_rest_of_a_parked_group_is_parked_with_it_not_written_past_it(
        redis_server: RedisServer, raw: redis.Redis) -> None:
    """A group split over two batches (``max_batch``) whose first part is in doubt: its
    second part waits with it, so it reaches Redis after it, and neither fails."""
    link = LosesTheSecond(redis_server.url, down_s=0.3)
    publisher = Publisher(link, Retry(NoBackoff(), 1), max_batch=2, settle_s=5.0,
                          settle_backoff=ExponentialBackoff(cap=0.05, base=0.01))
    try:
        first = publisher.submit(ScriptCall(ONCE, ("l",), (b"first",)))
        assert link.entered.wait(5)  # the publisher's thread holds the link
        other = publisher.submit_all([ScriptCall(ONCE, ("l",), (b"x",))])
        group = publisher.submit_all([ScriptCall(ONCE, ("l",), (b"g0",)),
                                      ScriptCall(ONCE, ("l",), (b"g1",))])
        link.gate.set()
        assert first.result(5) == 1
        assert other.result(10) == [3]  # its resend: the lost run had pushed x and g0
        assert group.result(10) == [3, 4]
    finally:
        link.gate.set()
        publisher.stop()
    assert raw.lrange("l", 0, -1) == [b"first", b"x", b"g0", b"g1"]
    assert link.batches[1] == [b"x", b"g0"]  # lost; g1 was not written before its resend
    assert link.batches[2] == [b"x", b"g0"] and link.batches[3] == [b"g1"]
