"""SIGKILL of the Redis primary under load, with Sentinel: nothing acknowledged is lost.

Two gateway processes on a ``redis+sentinel://`` URL (primary, two replicas,
three sentinels: ``deploy.sentinel``), so every send is acknowledged only once
a replica has it (``--redis-min-replicas`` defaults to 1 with Sentinel: one
``WAIT`` per publisher batch). Six ``ChatClient``s chat in two rooms every
0.1-0.2 s; then the primary gets SIGKILL. What must hold:

- no acknowledged message is lost, duplicated or reordered (the chaos judge,
  against what the promoted primary stored), and no room changes epoch: the
  replica had every acknowledged write;
- every send ends acknowledged exactly once: the clients hold a send answered
  ``unavailable`` and resend it with its ref (as the Tk app and chat-term do).
  Under ``WAIT`` an ``unavailable`` may follow a write the primary made and a
  replica took (its reply or its ``WAIT`` lost to the kill): the resend meets
  the ref's dedup key and gets the first id, so it is never published twice;
- the gateways follow the promotion on their own (commands, publisher and
  pub/sub links) and chat works again within a few seconds of it;
- the sentinels fail over once: a second failover right after the first (the
  fresh primary judged down on a loaded machine, see ``deploy.sentinel.
  DOWN_AFTER_MS``) is split brain, and Redis itself then throws writes away.

Any failure message ends with what happened: the timeline, every sentinel's
failover events and the gateways' warnings.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from deploy.sentinel import LocalSentinel
from tests.chaos.harness import (
    NOTES_KEY,
    SUMMARY_KEY,
    acked_between,
    assert_every_send_acked,
    drain,
    gateway_processes,
    sent_count,
    spread_crowd,
    verdict_of,
)
from tests.conftest import require_program
from tests.support.gateways import GatewayProcess
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(120)]

ROOMS = ("alpha", "beta")


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[LocalSentinel]:
    require_program("redis-server", "redis-server")
    with LocalSentinel(tmp_path / "sentinel") as topology:
        yield topology


@pytest.fixture
def gateway_procs(sentinel: LocalSentinel) -> Iterator[list[GatewayProcess]]:
    with gateway_processes(sentinel.url) as procs:
        yield procs


GATEWAY_NEWS = re.compile(r"level=(WARNING|ERROR)")


def what_happened(sentinel: LocalSentinel, procs: Sequence[GatewayProcess],
                  timeline: Sequence[str]) -> str:
    """The story a failure message ends with: what the test did when, what the sentinels
    decided, what the gateways warned about."""
    lines = ["what happened:", *(f"  {line}" for line in timeline),
             "sentinel events:", *(f"  {line}" for line in sentinel.events()[-60:])]
    for proc in procs:
        news = [line for line in proc.stderr_tail(1 << 20).splitlines()
                if GATEWAY_NEWS.search(line)]
        lines.append(f"{proc.gateway_id} warnings ({len(news)}, the last 15):")
        lines.extend(f"  {line}" for line in news[-15:])
    return "\n".join(lines)


def test_sigkill_of_the_primary_under_load_loses_no_acknowledged_message(
        sentinel: LocalSentinel, gateway_procs: list[GatewayProcess],
        record_property: Callable[[str, object], None],
        caplog: pytest.LogCaptureFixture) -> None:
    timeline: list[str] = []
    try:
        run_failover(sentinel, gateway_procs, record_property, caplog, timeline)
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}\n\n{what_happened(sentinel, gateway_procs, timeline)}") from exc


def run_failover(sentinel: LocalSentinel, gateway_procs: list[GatewayProcess],
                 record_property: Callable[[str, object], None],
                 caplog: pytest.LogCaptureFixture, timeline: list[str]) -> None:
    caplog.set_level(logging.WARNING, logger="client")
    crowd = spread_crowd([f"s{i}" for i in range(6)], ROOMS, gateway_procs)

    def note(what: str) -> None:
        timeline.append(f"{crowd.elapsed():6.1f}s {what} (sent {len(crowd.sent)})")

    try:
        crowd.connect_all()
        crowd.start_chatting()
        wait_for(sent_count(crowd, 60), 20, what="some chat before the failover")
        old_primary = sentinel.primary_port()
        admin = sentinel.client(old_primary)
        epochs = {room: admin.get(f"{{room:{room}}}:epoch") for room in ROOMS}
        admin.close()

        sentinel.kill(old_primary)
        killed_at = crowd.elapsed()
        killed = time.monotonic()
        note(f"SIGKILL of the primary {old_primary}")
        wait_for(lambda: sentinel.primary_port() != old_primary, 30, interval=0.1,
                 what="a replica promoted")
        promoted = time.monotonic()
        promoted_at = crowd.elapsed()
        new_primary = sentinel.primary_port()
        note(f"the sentinels say {new_primary} is the primary")
        wait_for(lambda: acked_between(crowd, promoted_at), 20, interval=0.05,
                 what="a send acknowledged after the promotion")
        working = time.monotonic()
        note("first send acknowledged after the promotion")
        before = len(crowd.sent)
        wait_for(sent_count(crowd, before + 80), 30, what="chat going on after the failover")
        crowd.stop_chatting()
        note("chatting stopped")

        assert sentinel.switches() == [(old_primary, new_primary)], (
            f"the sentinels failed over more than once (old, new): {sentinel.switches()}; "
            "a second failover while the gateways still wrote to the first promoted primary "
            "is split brain: Redis discards what that primary took when it is made a replica")
        stored, after = drain(crowd, lambda room: sentinel.client(sentinel.primary_port()))
        note("every send has an outcome and every client caught up")
        assert after == epochs, (
            f"rooms moved to a new epoch ({epochs} -> {after}): the primary now serving "
            "lacked ids the gateways had already delivered, so they renewed the epochs")
        verdict, problems = verdict_of(crowd, stored, gateway_procs, caplog.records)
    finally:
        crowd.close_all()

    failed_in_failover = [s for s in crowd.sent if killed_at <= s.at <= promoted_at + 5]
    summary = verdict.summary("sentinel failover")
    record_property(SUMMARY_KEY, summary)
    record_property(NOTES_KEY, [
        f"primary killed at {killed_at:.1f}s; replica promoted {promoted - killed:.1f}s later; "
        f"first ack after the promotion {working - promoted:.2f}s after it",
        f"sends failed: {verdict.failed} (of {len(failed_in_failover)} made from the kill to "
        "5 s after the promotion)"])
    assert_every_send_acked(verdict, summary, problems)
    assert working - promoted < 10, "chat did not work again within 10 s of the promotion"
