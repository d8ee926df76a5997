"""Every Lua script of the Redis layer, run by the broker the way the gateway runs it.

One scenario, two uses: ``tests/gateway/test_slots.py`` runs it on fakeredis and records
each script call to check its keys share one hash slot; ``tests/cluster/test_slots_cluster.py``
runs it on a real Redis Cluster (no ``CROSSSLOT``, right results). Time is a fake clock for
leases (reaping a dead gateway, a verdict about one), never a sleep.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest

from gateway.conversations import Conversations
from gateway.redis import keys, publisher, scripts
from gateway.redis.broker import Broker
from tests.support.broker_clock import LEASE_MS, FakeClock, lease_runs_out

LUA_SCRIPTS = frozenset({
    "beat", "claim_instance", "claim_name", "dead_gateways", "drop_gateway", "forget_gateway",
    "heartbeat", "join", "leave", "mark_owner", "move_member", "publish_message",
    "read_history", "release_name", "release_reaper", "renew_epoch", "retire", "route_dm",
    "send_dm", "store_dm", "take_room_token", "unregister_gateway", "verdict"})
"""Every script file of ``gateway/redis/lua/`` but the shared snippets; the scenario runs each."""


MakeBroker = Callable[[str], Broker]


def record_script_calls(monkeypatch: pytest.MonkeyPatch) -> list[scripts.ScriptCall]:
    """Every script call the brokers hand to Redis from now on (``ClientLink.one``, which
    both the pooled path and the publisher use), in order, each still run."""
    calls: list[scripts.ScriptCall] = []
    one = publisher.ClientLink.one

    def recording(self: publisher.ClientLink, call: scripts.ScriptCall) -> Any:
        calls.append(call)
        return one(self, call)

    monkeypatch.setattr(publisher.ClientLink, "one", recording)
    return calls


def run(make: MakeBroker, clock: FakeClock, raw: Any) -> None:
    """The scenario, asserting each outcome; ``raw`` reads Redis directly (any client that
    routes a key to its node)."""
    gw1, gw2, gw3 = make("gw1"), make("gw2"), make("gw3")
    for gw in (gw1, gw2, gw3):
        assert gw.claim_instance().ours
        assert gw.heartbeat() is True  # first beat: registered now

    # names: a free claim, a refused one, a token takeover bringing its rooms, a restore
    bob = gw1.claim_name("Bob", "s1", None)
    gw2.claim_name("Ann", "s2", None)
    try:
        gw2.claim_name("bob", "s9", None)
        raise AssertionError("a live holder's name was taken without its token")
    except Exception as exc:  # ProtocolError name_taken
        assert "in use" in str(exc)
    assert gw1.join("dev", "Bob") is True  # a new room: a token of the bucket, then joined
    assert gw1.join("lobby", "Bob") is True
    assert gw2.join("dev", "Ann") is True
    assert gw1.who("dev") == ["Ann", "Bob"]
    taken = gw3.claim_name("Bob", "s3", bob.token)
    assert (taken.replaced_session, taken.rooms) == ("s1", ("dev", "lobby"))
    assert raw.hget(keys.room_members("dev"), "bob") == b"gw3|Bob"
    assert gw3.join("dev", "Bob") is False  # already here: silent
    assert gw3.restore_name("Bob", "s3", hashlib.sha256(taken.token.encode()).hexdigest())

    # a member of another gateway: join asks the liveness slot for a verdict about it
    assert gw1.join("dev", "Ann") is False  # Ann's gw2 is alive: moves here silently

    # messages, history, epochs, typing
    first = gw3.publish_message("dev", "Bob", "hello", 1.0, "r1")
    assert (first.id, first.duplicate) == (1, False)
    assert gw3.publish_message("dev", "Bob", "hello", 1.0, "r1").duplicate
    batch = gw2.read_history("dev", after=0)
    assert (batch.last_id, len(batch.messages)) == (1, 1)
    fresh = gw2.renew_epoch("dev", first.epoch)
    assert fresh != first.epoch and gw1.renew_epoch("dev", first.epoch) == fresh
    gw3.publish_typing("dev", "Bob")

    # dms: live (guests), stored (an account on one side)
    sent = gw3.send_dm("Bob", "Ann", "hi", 2.0, "d1")
    assert not sent.duplicate and b'"to":"Ann"' in sent.line
    assert gw3.send_dm("Bob", "Ann", "hi", 2.0, "d1").duplicate
    conversations = Conversations(gw3, history=100)
    assert conversations.mark_owner("Bob", "s3")
    stored = conversations.send("Bob", True, "Ann", "stored", 3.0, "c1")
    assert stored is not None and (stored.id, stored.duplicate) == (1, False)
    assert conversations.read_history("Ann", "Bob", after=0).last_id == 1

    # leave, release
    assert gw1.leave("lobby", "Bob") is False  # gw3's now
    assert gw3.leave("lobby", "Bob") is True
    assert gw2.release_name("Ann", "s2") is True

    # a gateway that beats again once the reaper holds its lock is left alone
    lease_runs_out(clock, gw2, gw3)
    original_set = gw2.redis.set

    def revive_on_lock(name: Any, *args: Any, **kw: Any) -> Any:
        result = original_set(name, *args, **kw)
        if name == keys.gateway_reaper("gw1"):
            gw1.heartbeat()
        return result

    gw2.redis.set = revive_on_lock  # type: ignore[method-assign]
    try:
        assert gw2.reap_dead() == []
    finally:
        gw2.redis.set = original_set  # type: ignore[method-assign]
    assert raw.get(keys.gateway_reaper("gw1")) is None

    # a dead gateway is reaped: its rooms see left, its names are free
    gw1.claim_name("Cy", "s4", None)
    lease_runs_out(clock, gw2, gw3)
    assert gw2.reap_dead() == ["gw1"]
    assert raw.hget(keys.room_members("dev"), "ann") is None
    assert raw.exists(keys.user("cy"), keys.gateway_members("gw1"),
                      keys.gateway_names("gw1")) == 0
    assert raw.zscore(keys.GATEWAYS, "gw1") is None
    assert gw1.heartbeat() is True  # it learns it was forgotten

    # an outage: nobody beat for a lease (the pulse is gone): the grace keeps every registered
    # gateway alive, judged in the liveness slot for every other slot
    clock.advance(2 * LEASE_MS / 1000)
    raw.delete(keys.PULSE)
    assert gw2.who("dev") == ["Bob"]  # gw3's beat is stale, but the grace opened
    assert raw.exists(keys.GRACE) == 1
    assert gw2.reap_dead() == []
    gw2.heartbeat()  # renews the pulse
    raw.delete(keys.GRACE)  # its lease ran out
    assert gw2.who("dev") == []  # gw3 never beat again: dead, and no new grace

    # graceful stop, then a start under the same id after a crash
    gw3.retire()
    assert gw3.claim_instance().ours
    gw2.release_gateway()
    assert raw.zscore(keys.GATEWAYS, "gw2") is None
    for gw in (gw1, gw2, gw3):
        gw.close()


def scripts_in(calls: list[scripts.ScriptCall]) -> set[str]:
    return {call.script.name for call in calls}


__all__ = ["LUA_SCRIPTS", "MakeBroker", "record_script_calls", "run", "scripts_in"]
