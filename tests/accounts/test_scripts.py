"""The accounts' Lua scripts: one file and one builder each, every script's keys in one slot."""

from __future__ import annotations

import re
from dataclasses import fields
from importlib import resources

import fakeredis
import pytest
from redis.crc import key_slot  # what redis.cluster routes by (re-exported there)

from gateway import account_keys
from gateway.accounts import scripts
from gateway.redis.scripts.core import Builder

NAMES = ["Alice", "bob", "x.y-z_1", "A1ice", "Zoë", "名前", "a" * 32]
ADDRESSES = ["192.0.2.1", "::1", "2001:db8::1", "10.0.0.255"]


def every_call() -> list[Builder]:
    """Each accounts script built for many names and addresses, as the store and limiter do."""
    built: list[Builder] = []
    for name in NAMES:
        built += [scripts.CreateAccount.of(name, "$argon2id$...", 1),
                  scripts.SetHash.of(name, "$argon2id$new", expected_hash="$argon2id$old"),
                  scripts.SetHash.of(name, "$argon2id$new", clear_failures=True),
                  scripts.DeleteAccount.of(name),
                  scripts.AcquireAttempt(account_keys.name_failures(name), 5, 60_000),
                  scripts.ReleaseAttempt(account_keys.name_failures(name))]
    for address in ADDRESSES:
        built += [scripts.AcquireAttempt(account_keys.address_failures(address), 20, 60_000),
                  scripts.ReleaseAttempt(account_keys.address_failures(address))]
    return built


def lua_files() -> dict[str, str]:
    folder = resources.files("gateway.accounts") / "lua"
    return {entry.name.removesuffix(".lua"): entry.read_text(encoding="utf-8")
            for entry in folder.iterdir() if entry.name.endswith(".lua")}


BUILDERS: list[type[Builder]] = [scripts.CreateAccount, scripts.SetHash, scripts.DeleteAccount,
                                 scripts.AcquireAttempt, scripts.ReleaseAttempt]


def test_every_script_keys_one_hash_slot() -> None:
    """Redis Cluster runs a script only when all its KEYS hash to one slot."""
    calls = every_call()
    assert {type(b) for b in calls} == set(BUILDERS)
    for builder in calls:
        call = builder.call()
        assert call.keys, builder
        slots = {key_slot(key.encode()) for key in call.keys}
        assert len(slots) == 1, f"{call.script.name} is cross-slot: {call.keys} -> {slots}"


def test_an_account_and_its_name_failures_share_the_slot_of_the_name_record() -> None:
    for name in NAMES:
        (account, failures) = scripts.SetHash.of(name, "h").call().keys
        assert (account, failures) == (account_keys.account(name),
                                       account_keys.name_failures(name))


def test_each_lua_file_has_one_builder_whose_fields_are_what_it_reads() -> None:
    """Keys only through ``key()`` (no KEYS[n], no key made in Lua), one field per read."""
    files = lua_files()
    assert sorted(files) == sorted(b.SCRIPT.name for b in BUILDERS)
    for builder in BUILDERS:
        body = files[builder.SCRIPT.name]
        assert "KEYS" not in body and "ARGV" not in body, builder.SCRIPT.name
        key_fields = [f for f in fields(builder) if f.metadata.get("key")]  # type: ignore[arg-type]
        arg_fields = [f for f in fields(builder) if not f.metadata.get("key")]  # type: ignore[arg-type]
        assert len(re.findall(r"\bkey\(\)", body)) == len(key_fields), builder.SCRIPT.name
        assert len(re.findall(r"\barg\(\)", body)) == len(arg_fields), builder.SCRIPT.name
        assert builder.SCRIPT.source.decode().endswith(body)


def test_a_script_missing_from_redis_is_loaded_and_run() -> None:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    try:
        call = scripts.CreateAccount.of("Alice", "h", 5).call()
        assert scripts.CreateReply.read(scripts.run(client, call)) is scripts.CreateReply.CREATED
        client.script_flush()
        assert scripts.CreateReply.read(scripts.run(client, call)) is scripts.CreateReply.EXISTS
    finally:
        client.close()


def test_an_unknown_reply_is_refused() -> None:
    with pytest.raises(ValueError):
        scripts.AttemptReply.read([b"maybe", 3])
    with pytest.raises(ValueError):
        scripts.SetHashReply.read(1)
