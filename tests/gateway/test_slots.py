"""Every script call the broker makes touches the keys of one hash slot: Redis Cluster runs it.

The scenario (``tests/support/slots_scenario.py``) runs every script of ``gateway/redis/lua/``
through the broker on fakeredis, with realistic names, rooms and gateways; each call is
recorded where the broker hands it to Redis (``ClientLink.one``, which both the pooled path
and the publisher use here) and its keys are checked with redis-py's own ``key_slot``.
The same scenario runs on a real Redis Cluster in tests/cluster/test_slots_cluster.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib import resources

import fakeredis
import pytest
from redis.crc import key_slot

from gateway import account_keys
from gateway.redis import keys, scripts
from gateway.redis.broker import Broker
from tests.support.broker_clock import LEASE_MS, FakeClock
from tests.support.slots_scenario import LUA_SCRIPTS, record_script_calls, run, scripts_in

INCLUDES = {"args", "liveness", "deadline", "numbering", "room_lifetime", "new_rooms"}


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[scripts.ScriptCall]]:
    yield record_script_calls(monkeypatch)


def slots_of(call: scripts.ScriptCall) -> set[int]:
    return {key_slot(key.encode()) for key in call.keys}


def test_every_script_call_of_the_scenario_touches_one_slot(
        recorded: list[scripts.ScriptCall]) -> None:
    server = fakeredis.FakeServer()
    clock = FakeClock()
    raw = fakeredis.FakeRedis(server=server)
    run(lambda gw: Broker(fakeredis.FakeRedis(server=server), gw, lease_ms=LEASE_MS,
                          clock=clock), clock, raw)
    assert scripts_in(recorded) == LUA_SCRIPTS  # every script ran at least once
    crossing = [(call.script.name, call.keys) for call in recorded if len(slots_of(call)) > 1]
    assert crossing == []
    assert all(call.keys for call in recorded)  # each names its slot: redis-py routes by keys


def test_the_scenario_covers_every_script_file() -> None:
    files = {path.name.removesuffix(".lua")
             for path in (resources.files("gateway.redis") / "lua").iterdir()
             if path.name.endswith(".lua")}
    assert files - INCLUDES == LUA_SCRIPTS


def test_a_refused_cross_slot_call_would_be_seen() -> None:
    """The check can fail: the old join's keys (room, gateway, user, liveness) cross slots."""
    old_join = scripts.ScriptCall(scripts.Join.SCRIPT, (
        keys.room_members("dev"), keys.gateway_members("gw1"), keys.user_rooms("bob"),
        keys.GATEWAYS), ())
    assert len(slots_of(old_join)) == 4


@pytest.mark.parametrize("channel_and_keys", [
    (keys.room_channel("dev"), (keys.room_seq("dev"), keys.room_members("dev"))),
    (keys.gateway_channel("gw-1"), (keys.gateway_members("gw-1"), keys.gateway_reaper("gw-1"))),
    (keys.GRACE, (keys.GATEWAYS, keys.PULSE)),
    (keys.user_new_rooms("BoB"), (keys.user("bob"), keys.dm_ref("bob", "r"),
                                  account_keys.account("BOB"))),
])
def test_keys_of_one_owner_share_its_slot(channel_and_keys: tuple[str, tuple[str, ...]]) -> None:
    first, others = channel_and_keys
    assert {key_slot(k.encode()) for k in others} == {key_slot(first.encode())}


def test_accounts_scripts_keys_share_the_name_slot() -> None:
    """The accounts' scripts (gateway/account_lua.py) use the account and its failure counter
    together; the login limiter one counter at a time."""
    name_keys = [account_keys.account("Bob"), account_keys.name_failures("Bob"),
                 keys.user("bob")]
    assert len({key_slot(k.encode()) for k in name_keys}) == 1
