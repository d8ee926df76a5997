"""AccountStore against fakeredis: every method, its refusals, its keys and its secrecy.

The same scripts run on a real redis-server in test_redis.py.
"""

from __future__ import annotations

import logging
from typing import cast

import fakeredis
import pytest
import redis
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from gateway import account_keys
from gateway.accounts.passwords import FAST_PARAMS, BadPassword, HashParams, PasswordHasher
from gateway.accounts.store import (
    Account,
    AccountExists,
    AccountStore,
    NoSuchAccount,
)
from gateway.redis import keys
from gateway.redis.broker import BrokerUnavailable
from protocol.errors import ErrorCode, ProtocolError
from tests.support.redis_server import free_port

PW = "hunter2-but-longer"
PW2 = "another good password"
CREATED_MS = 1_700_000_000_500


def stored_hash(client: fakeredis.FakeRedis, name: str) -> str:
    value = client.hget(account_keys.account(name), "hash")
    assert isinstance(value, bytes)
    return value.decode()


def test_create_then_read(store: AccountStore) -> None:
    assert not store.exists("Alice")
    assert store.get("Alice") is None
    assert store.create("Alice", PW) == Account("Alice", CREATED_MS)
    assert store.exists("Alice") and store.exists("alice") and store.exists("ALICE")
    assert store.get("aLiCe") == Account("Alice", CREATED_MS)


def test_stored_record_has_display_name_hash_and_created(
        store: AccountStore, fake_redis: fakeredis.FakeRedis) -> None:
    store.create("Alice", PW)
    record = fake_redis.hgetall("{user:allce}:account")
    assert set(record) == {b"name", b"hash", b"created"}
    assert record[b"name"] == b"Alice"
    assert record[b"created"] == str(CREATED_MS).encode()
    assert cast(bytes, record[b"hash"]).startswith(b"$argon2id$")


def test_create_refuses_a_name_that_has_an_account_in_any_case(store: AccountStore) -> None:
    store.create("Alice", PW)
    with pytest.raises(AccountExists):
        store.create("ALICE", PW2)
    assert store.verify("alice", PW) and not store.verify("alice", PW2)


@pytest.mark.parametrize("name", ["", "has space", "a" * 40, "naïve", "{user:x}", "a*"])
def test_bad_names_are_refused_with_bad_name(store: AccountStore, name: str) -> None:
    with pytest.raises(ProtocolError) as info:
        store.create(name, PW)
    assert info.value.code is ErrorCode.BAD_NAME
    with pytest.raises(ProtocolError):
        store.exists(name)
    assert store.verify(name, PW) is False


def test_bad_password_is_refused_and_nothing_is_stored(store: AccountStore) -> None:
    with pytest.raises(BadPassword):
        store.create("Alice", "short")
    assert not store.exists("Alice")


def test_verify(store: AccountStore) -> None:
    store.create("Alice", PW)
    assert store.verify("Alice", PW)
    assert store.verify("alice", PW)
    assert not store.verify("Alice", PW.upper())
    assert not store.verify("Alice", "")
    assert not store.verify("Bob", PW)


def test_unknown_name_costs_a_verify(store: AccountStore,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Timing does not tell an unknown name from a wrong password: both run argon2."""
    wasted: list[int] = []
    monkeypatch.setattr(PasswordHasher, "waste_time", lambda self: wasted.append(1))
    assert not store.verify("nobody", PW)
    assert not store.verify("bad name!", PW)
    assert len(wasted) == 2


def test_set_password_replaces_it(store: AccountStore) -> None:
    store.create("Alice", PW)
    store.set_password("ALICE", PW2)
    assert store.verify("Alice", PW2) and not store.verify("Alice", PW)
    assert store.get("Alice") == Account("Alice", CREATED_MS)


def test_set_password_clears_the_names_failures(store: AccountStore,
                                                fake_redis: fakeredis.FakeRedis) -> None:
    store.create("Alice", PW)
    fake_redis.set(account_keys.name_failures("Alice"), 5, px=60_000)
    store.set_password("Alice", PW2)
    assert not fake_redis.exists(account_keys.name_failures("Alice"))


def test_set_password_of_a_missing_account(store: AccountStore) -> None:
    with pytest.raises(NoSuchAccount):
        store.set_password("Nobody", PW)
    assert not store.exists("Nobody")


def test_set_password_refuses_a_bad_one(store: AccountStore) -> None:
    store.create("Alice", PW)
    with pytest.raises(BadPassword):
        store.set_password("Alice", "x" * 1025)
    assert store.verify("Alice", PW)


def test_change_password(store: AccountStore) -> None:
    store.create("Alice", PW)
    assert not store.change_password("Alice", "wrong password", PW2)
    assert store.verify("Alice", PW)
    assert store.change_password("alice", PW, PW2)
    assert store.verify("Alice", PW2) and not store.verify("Alice", PW)
    assert not store.change_password("Nobody", PW, PW2)


def test_change_password_refuses_a_bad_new_one_before_checking(store: AccountStore) -> None:
    store.create("Alice", PW)
    with pytest.raises(BadPassword):
        store.change_password("Alice", "wrong password", "short")
    assert store.verify("Alice", PW)


def test_change_password_loses_to_a_change_that_raced_it(
        store: AccountStore, fake_redis: fakeredis.FakeRedis,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The new hash is written only over the hash that was checked: an operator's reset
    between the check and the write wins; the user's change is checked again
    (and fails, the old password no longer being right)."""
    store.create("Alice", PW)
    real_hash = PasswordHasher.hash
    raced = False

    def hash_then_race(self: PasswordHasher, password: object) -> str:
        nonlocal raced
        result = real_hash(self, password)
        if password == "users new password" and not raced:
            raced = True
            fake_redis.hset(account_keys.account("Alice"), "hash",
                            real_hash(self, "operators password"))
        return result

    monkeypatch.setattr(PasswordHasher, "hash", hash_then_race)
    assert not store.change_password("Alice", PW, "users new password")
    assert store.verify("Alice", "operators password")


def test_delete_frees_the_name_and_its_failures(store: AccountStore,
                                                fake_redis: fakeredis.FakeRedis) -> None:
    store.create("Alice", PW)
    fake_redis.set(account_keys.name_failures("alice"), 3, px=60_000)
    assert store.delete("ALICE")
    assert not store.exists("Alice")
    assert not fake_redis.exists(account_keys.name_failures("alice"))
    assert not store.delete("Alice")
    assert store.create("alice", PW2) == Account("alice", CREATED_MS)


def test_list_pages_through_every_account(store: AccountStore,
                                          fake_redis: fakeredis.FakeRedis) -> None:
    names = [f"user{i:03d}" for i in range(57)]
    for name in names:
        fake_redis.hset(account_keys.account(name), mapping={
            "name": name.upper(), "hash": "$argon2id$x", "created": i_created(name)})
    fake_redis.hset(keys.user("user000"), mapping={"gw": "g1", "sid": "s"})  # not an account
    fake_redis.set("{user:zed}:rooms", "x")
    pages = 0
    seen: list[Account] = []
    cursor = 0
    while True:
        page = store.list_page(cursor, count=10)
        pages += 1
        seen.extend(page.accounts)
        cursor = page.cursor
        if cursor == 0:
            break
    assert pages > 1
    assert sorted(a.name for a in seen) == sorted(n.upper() for n in names)
    assert {a.created_ms for a in seen} == {i_created(n) for n in names}
    assert sorted(a.name for a in store.iter_accounts(count=7)) == sorted(
        n.upper() for n in names)


def i_created(name: str) -> int:
    return 1_000 + int(name[4:])


def test_list_of_nothing(store: AccountStore) -> None:
    assert list(store.iter_accounts()) == []


def test_keys_share_the_slot_of_the_name_record() -> None:
    """On Redis Cluster an account and its name's failure counter live with the name."""
    for name in ["Alice", "bob", "x.y-z_1"]:
        slot = key_slot(keys.user(name).encode())
        assert key_slot(account_keys.account(name).encode()) == slot
        assert key_slot(account_keys.name_failures(name).encode()) == slot
        assert key_slot(keys.user_rooms(name).encode()) == slot
    # keyed by the look-alike skeleton (protocol.names.name_key): "Alice" and "A1ice" share it
    assert account_keys.account("Alice") == "{user:allce}:account"
    assert account_keys.address_failures("::1") == "{authaddr:::1}:fail"
    assert key_slot(b"{authaddr:10.0.0.1}:fail") == key_slot(b"{authaddr:10.0.0.1}")


def test_old_hashes_are_upgraded_at_a_right_password(
        fake_redis: fakeredis.FakeRedis) -> None:
    old = AccountStore(fake_redis, PasswordHasher(FAST_PARAMS))
    old.create("Alice", PW)
    before = stored_hash(fake_redis, "Alice")
    newer = AccountStore(fake_redis, PasswordHasher(HashParams(time_cost=2, memory_kib=128)))
    assert not newer.verify("Alice", "wrong password")
    assert stored_hash(fake_redis, "Alice") == before
    assert newer.verify("Alice", PW)
    after = stored_hash(fake_redis, "Alice")
    assert after != before and "m=128,t=2" in after
    assert newer.verify("Alice", PW) and old.verify("Alice", PW)


def test_no_password_or_hash_in_logs_or_reprs(store: AccountStore,
                                              fake_redis: fakeredis.FakeRedis,
                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    account = store.create("Alice", PW)
    hashes = [stored_hash(fake_redis, "Alice")]
    store.verify("Alice", PW)
    store.verify("Alice", "wrong password")
    store.set_password("Alice", PW2)
    hashes.append(stored_hash(fake_redis, "Alice"))
    store.change_password("Alice", PW2, PW)
    hashes.append(stored_hash(fake_redis, "Alice"))
    store.delete("Alice")
    text = caplog.text + repr(store) + repr(account)
    assert "account_created name=Alice" in caplog.text
    for secret in [PW, PW2, "wrong password", *hashes]:
        assert secret not in text
    assert "$argon2" not in text


def test_redis_out_of_reach_is_broker_unavailable(fast_hasher: PasswordHasher) -> None:
    client = redis.Redis(port=free_port(), socket_connect_timeout=1,
                         retry=Retry(NoBackoff(), 0))
    store = AccountStore(client, fast_hasher)
    with pytest.raises(BrokerUnavailable):
        store.exists("Alice")
    with pytest.raises(BrokerUnavailable):
        store.verify("Alice", PW)
    with pytest.raises(BrokerUnavailable):
        store.create("Alice", PW)
    with pytest.raises(BrokerUnavailable):
        store.list_page()
    client.close()


def test_works_with_a_decoding_client(fast_hasher: PasswordHasher) -> None:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    store = AccountStore(client, fast_hasher)
    store.create("Alice", PW)
    assert store.verify("Alice", PW)
    assert [a.name for a in store.iter_accounts()] == ["Alice"]
    assert store.change_password("Alice", PW, PW2)
