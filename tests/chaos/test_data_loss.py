"""Redis restarted empty under live clients: rooms move to a new epoch and chat goes on.

Two gateway processes, six ``ChatClient``s in two rooms chatting every
0.2-0.4 s; then ``restart(wipe=True)``: Redis comes back with no data, as
after a crash without persistence. What docs/protocol.md promises then:

- each room gets a new epoch, and every client a fresh ``history`` for it
  (``EpochReset`` then ``HistoryLoaded``), exactly once per room, the same
  epoch at every client;
- chatting continues: the new epoch's ids start at 1, and every message of
  it reaches every member once, in order (the old epoch's last messages may
  be lost: that is what losing Redis's data means, docs/reliability.md);
- nothing crashes: no client ends, every gateway stays up and healthy with
  no unexpected exception in its log, names and presence are restored
  (``who`` lists every member).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest

from client import events as ev
from gateway.redis import keys
from tests.chaos.harness import (
    NOTES_KEY,
    SUMMARY_KEY,
    Crowd,
    caught_up,
    gateway_problems,
    gateway_processes,
    judge,
    library_errors,
    room_seq,
    sent_count,
    stored_messages,
)
from tests.support.gateways import GatewayProcess
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_for
from tests.support.wire import WireClient

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(90)]

ROOMS = ("alpha", "beta")


@pytest.fixture
def gateway_procs(redis_server: RedisServer) -> Iterator[list[GatewayProcess]]:
    with gateway_processes(redis_server.url) as procs:
        yield procs


def epochs(redis_server: RedisServer) -> dict[str, str | None]:
    admin = redis_server.client()
    try:
        raw = {room: admin.get(keys.room_epoch(room)) for room in ROOMS}
    finally:
        admin.close()
    return {room: value.decode() if isinstance(value, bytes) else None
            for room, value in raw.items()}


@pytest.mark.slow
def test_redis_restarted_empty_moves_rooms_to_a_new_epoch_and_chat_goes_on(
        redis_server: RedisServer, gateway_procs: list[GatewayProcess],
        record_property: Callable[[str, object], None],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="client")
    names = [f"d{i}" for i in range(6)]
    crowd = Crowd({name: ROOMS for name in names},
                  {name: [f"127.0.0.1:{gateway_procs[(i + k) % 2].port}" for k in range(2)]
                   for i, name in enumerate(names)},
                  interval=(0.2, 0.4))
    problems: list[str] = []
    try:
        crowd.connect_all()
        crowd.start_chatting()
        wait_for(sent_count(crowd, 40), 20, what="some chat in the old epoch")
        old = epochs(redis_server)
        assert all(old.values()), old

        redis_server.restart(wipe=True)
        wiped_at = crowd.elapsed()
        before = len(crowd.sent)
        wait_for(sent_count(crowd, before + 80), 30, what="chat going on after the wipe")
        crowd.stop_chatting()

        admin = redis_server.client()
        wait_for(lambda: not crowd.unresolved(), 30, what="an outcome for every send")
        wait_for(lambda: caught_up(crowd, lambda room: room_seq(admin, room)), 30,
                 what="every client caught up with the new epoch")
        stored = {room: stored_messages(admin, room) for room in ROOMS}
        admin.close()
        new = epochs(redis_server)

        # the new epochs: one per room, seen once by every client, ids from 1
        for room in ROOMS:
            assert new[room] and new[room] != old[room], (old, new)
            assert stored[room] and stored[room][0].id == 1, "the new epoch starts at id 1"
            for name, log in crowd.logs.items():
                resets = [e.epoch for e in log.of(ev.EpochReset) if e.room == room]
                assert resets == [new[room]], f"{name} in {room}: {resets}, want {new[room]}"
        verdict = judge(crowd.sent, crowd.logs, crowd.rooms_of, stored, resets_allowed=True,
                        record_from=wiped_at)
        problems.extend(verdict.problems)
        problems.extend(crowd.refused)

        # nothing crashed; presence came back
        observer = WireClient(gateway_procs[0].address)
        try:
            observer.hello("loss-observer", rooms=[])
            for room in ROOMS:
                def who_all(room: str = room) -> bool:
                    observer.send(type="who", room=room)
                    return set(observer.recv_type("who", room=room)["names"]) == set(names)
                wait_for(who_all, 15, interval=0.1, what=f"who of {room} == every member")
        finally:
            observer.close()
        problems.extend(gateway_problems(gateway_procs))
        assert all(c.connected for c in crowd.clients.values())
        problems.extend(library_errors(caplog.records))
    finally:
        crowd.close_all()

    summary = verdict.summary("data loss")
    record_property(SUMMARY_KEY, summary)
    record_property(NOTES_KEY, [f"new epoch ids 1..{len(stored[r])} in {r}" for r in ROOMS])
    assert problems == [], "\n".join([summary, *problems[:40]])
    assert (verdict.lost, verdict.duplicated, verdict.reordered) == (0, 0, 0), summary
