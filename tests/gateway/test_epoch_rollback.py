"""Redis that lost its last writes reuses ids: the gateway starts a new epoch.

A crash with AOF ``everysec`` can lose the last second of writes: the room's
counter and history roll back together while its epoch stays. The next
message then gets an id clients already hold, and they would drop it as a
duplicate. Pub/sub never repeats a publication, so a gateway that receives an
id it has already seen in the same epoch knows, and starts a new epoch.
"""

from __future__ import annotations

from typing import cast

from gateway.redis import keys
from tests.conftest import Connect, StartGateway
from tests.gateway.live import ids, login, read_messages, send_ok
from tests.support.redis_server import RedisEndpoint


def test_ids_reused_after_lost_writes_start_a_new_epoch_and_nothing_is_dropped(
        shared_redis: RedisEndpoint, start_gateway: StartGateway, connect: Connect) -> None:
    gw = start_gateway()
    alice = connect(gw.address)
    _, histories = login(alice, "alice")
    old_epoch = histories["lobby"]["epoch"]
    bob = connect(gw.address)
    login(bob, "bob")
    for i in range(1, 6):
        send_ok(bob, "lobby", f"before {i}", f"b{i}")
    assert ids(read_messages(alice, "lobby", 5), "lobby") == [1, 2, 3, 4, 5]

    # What a crash losing the last two writes leaves behind: counter and log at 3.
    r = shared_redis.client()
    r.set(keys.room_seq("lobby"), 3)
    r.ltrim(keys.room_log("lobby"), 0, 2)

    assert send_ok(bob, "lobby", "after the crash", "c1") == 4  # an id alice already holds
    history = alice.recv_type("history", room="lobby")
    assert history["epoch"] != old_epoch
    assert [(m["id"], m["text"]) for m in history["messages"]] == [
        (1, "before 1"), (2, "before 2"), (3, "before 3"), (4, "after the crash")]
    assert cast(bytes, r.get(keys.room_epoch("lobby"))).decode() == history["epoch"]

    # Live delivery goes on in the new epoch.
    assert send_ok(bob, "lobby", "next", "c2") == 5
    assert ids(read_messages(alice, "lobby", 5), "lobby") == [5]
