"""A busy room's hash slot moves to another master while its members chat.

Two gateway processes, six ``ChatClient``s chatting every 0.1-0.2 s in two
rooms on different masters. Mid-chat the busy room's slot is moved as
``redis-cli --cluster reshard`` moves it (IMPORTING, MIGRATING, MIGRATE of
its keys one at a time with chat going on between every two, SETSLOT NODE):
for a while its seq, log, epoch and members live on two masters, scripts
meet ASK and TRYAGAIN, and the source's sharded channel is dropped
(``sunsubscribe``). What must hold:

- no acknowledged message is lost, duplicated or reordered (the chaos judge,
  against what the new master stored), no room changes epoch, and every send
  ends acknowledged exactly once (held ``unavailable`` sends are resent with
  their ref, as the clients do);
- afterwards every key of the room is on the new master and both gateways
  SSUBSCRIBE its channel there, none on the old one.

With ``CHAT_RCLUSTER_BACKEND=single`` the same chat runs without the move:
a check of the test's own logic.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from deploy.redis_cluster import LocalRedisCluster
from gateway.redis import keys
from tests.chaos.harness import (
    NOTES_KEY,
    SUMMARY_KEY,
    assert_every_send_acked,
    drain,
    sent_count,
    spread_crowd,
    verdict_of,
)
from tests.support.rcluster import CLUSTER_GATEWAY, ON_CLUSTER, chat_redis, gateway_processes
from tests.support.waiting import wait_for

pytestmark = [CLUSTER_GATEWAY, pytest.mark.slow, pytest.mark.timeout(150)]

GATEWAY_FLAGS = ("--rate-per-s", "1000", "--burst", "1000")
"""Rate limits out of the way: held sends are resent at once, and a limiter's refusal
is not what this test is about."""


def test_a_busy_rooms_slot_moves_while_clients_chat_and_nothing_is_lost(
        tmp_path: Path, record_property: Callable[[str, object], None],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="client")
    with chat_redis(tmp_path) as backend, \
            gateway_processes(backend.url, 2, *GATEWAY_FLAGS) as procs:
        rooms = tuple(backend.spread("busy", 2))
        busy = rooms[0]
        crowd = spread_crowd([f"m{i}" for i in range(6)], rooms, procs)
        notes: list[str] = []
        try:
            crowd.connect_all()
            crowd.start_chatting()
            wait_for(sent_count(crowd, 40), 20, what="some chat before the move")
            epochs = {}
            for room in rooms:
                with backend.node(keys.room_epoch(room)) as node:
                    epochs[room] = node.get(keys.room_epoch(room))
            started_at = crowd.elapsed()
            if ON_CLUSTER:
                cluster = backend.cluster
                assert cluster is not None
                slot = cluster.slot_of(keys.room_tag(busy))
                source = cluster.master_of(slot)
                target = cluster.other_master(source)
                move = cluster.begin_slot_move(slot, target)
                while True:
                    before = len(crowd.sent)
                    if not move.step(batch=1):
                        break
                    wait_for(sent_count(crowd, before + 2), 10, interval=0.005,
                             what="chat between two keys' migration")
                move.finish()
                notes.append(f"slot {slot} of {busy!r} moved {source} -> {target}: "
                             f"{move.moved_keys} keys in {crowd.elapsed() - started_at:.1f}s, "
                             f"{len([s for s in crowd.sent if s.at >= started_at])} sends "
                             "made meanwhile")
            else:
                wait_for(sent_count(crowd, len(crowd.sent) + 40), 20, what="chat (no move)")
            moved_at = crowd.elapsed()
            wait_for(sent_count(crowd, len(crowd.sent) + 60), 30, what="chat after the move")
            crowd.stop_chatting()

            stored, after = drain(crowd, lambda room: backend.node(keys.room_log(room)))
            assert after == epochs
            verdict, problems = verdict_of(crowd, stored, procs, caplog.records)
            after_move = [s for s in crowd.sent if s.at > moved_at and s.room == busy]
            assert after_move, "no send in the busy room after the move"
            if ON_CLUSTER:
                check_moved(backend.cluster, busy, source, target)
        finally:
            crowd.close_all()
    summary = verdict.summary("slot migration")
    record_property(SUMMARY_KEY, summary)
    record_property(NOTES_KEY, notes)
    assert_every_send_acked(verdict, summary, problems)


def check_moved(cluster: LocalRedisCluster | None, room: str, source: int, target: int) -> None:
    """Every key of ``room`` on ``target``, and its channel SSUBSCRIBEd there by both
    gateways and by nobody on ``source``."""
    assert cluster is not None
    slot = cluster.slot_of(keys.room_tag(room))
    assert cluster.master_of(slot) == target
    channel = keys.room_channel(room)
    with cluster.client(source) as old, cluster.client(target) as new:
        assert old.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
        assert new.exists(keys.room_seq(room), keys.room_log(room), keys.room_epoch(room)) == 3
        assert old.execute_command("PUBSUB", "SHARDNUMSUB", channel)[1] == 0
        wait_for(lambda: new.execute_command("PUBSUB", "SHARDNUMSUB", channel)[1] == 2, 10,
                 what=f"both gateways SSUBSCRIBEd to {channel} on its new master")
