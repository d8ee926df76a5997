"""A gateway killed with SIGKILL on Redis Cluster: its names and memberships are reaped.

The reaper can no longer run one script over everything a dead gateway held
(its names and rooms live in many slots): it walks the gateway's own record
and releases each name and membership in that key's slot. What must hold, as
docs/protocol.md says for one Redis: a name held by a gateway that died is
free again within 15 seconds, and its rooms (here one on each master) see
``left``; the survivors' own sessions are untouched.
"""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import pytest

from gateway.redis import keys
from tests.gateway.live import login, send_ok
from tests.support.rcluster import CLUSTER_GATEWAY, ON_CLUSTER, chat_redis, gateway_processes
from tests.support.waiting import wait_for
from tests.support.wire import WireClient

pytestmark = [CLUSTER_GATEWAY, pytest.mark.slow, pytest.mark.timeout(90)]


def test_a_killed_gateways_names_and_rooms_are_released_on_every_master(
        tmp_path: Path) -> None:
    with chat_redis(tmp_path) as backend, gateway_processes(backend.url, 2) as (gw1, gw2):
        rooms = backend.spread("reap", 3)
        victims = backend.spread("Victim", 2, user=True)
        watcher = WireClient(gw2.address)
        doomed = [WireClient(gw1.address) for _ in victims]
        try:
            login(watcher, "watcher", rooms)
            for client, name in zip(doomed, victims, strict=True):
                login(client, name, rooms)
            for room in rooms:
                for name in victims:
                    watcher.recv_type("joined", room=room, name=name)
            if ON_CLUSTER:
                masters = {backend.master_of(keys.room_members(room)) for room in rooms}
                assert len(masters) == 3
                for name in victims:
                    with backend.node(keys.user(name)) as node:
                        assert node.exists(keys.user(name)) == 1

            gw1.kill()
            for room in rooms:
                for name in victims:
                    watcher.recv_type("left", room=room, name=name, timeout=15)
            for room in rooms:
                watcher.send(type="who", room=room)
                assert watcher.recv_type("who", room=room)["names"] == ["watcher"]
                with backend.node(keys.room_members(room)) as node:
                    assert node.hkeys(keys.room_members(room)) == [b"watcher"]
            for name in victims:
                def free(name: str = name) -> bool:
                    with closing(WireClient(gw2.address)) as again:
                        again.send(type="hello", name=name.lower(), rooms=[rooms[0]])
                        return bool(again.recv()["type"] == "welcome")

                wait_for(free, 15, interval=0.2, what=f"{name} free again")
            assert send_ok(watcher, rooms[1], "still here", ref="s1") == 1
        finally:
            watcher.close()
            for client in doomed:
                client.close()
