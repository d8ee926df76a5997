"""Registry: the locked directory of local sessions, names and rooms."""

from __future__ import annotations

import threading
import uuid
from typing import Any, cast

from gateway.registry import Registry
from protocol.names import name_key


class FakeSession:
    """What the registry reads of a session: sid, peer host and name."""

    def __init__(self, name: str | None = None, host: str = "127.0.0.1") -> None:
        self.sid = uuid.uuid4().hex[:16]
        self.peer_host = host
        self.name = name


def admitted(registry: Registry, *sessions: FakeSession) -> None:
    for s in sessions:
        assert registry.admit(cast(Any, s), max_connections=100, max_per_address=0)


def test_members_is_a_cached_snapshot_until_the_room_changes() -> None:
    registry = Registry()
    a, b, c = FakeSession("a"), FakeSession("b"), FakeSession("c")
    admitted(registry, a, b, c)
    assert registry.join(cast(Any, a), "lobby") is True
    assert registry.join(cast(Any, b), "lobby") is False
    first = registry.members("lobby")
    assert set(first) == {a, b}
    assert registry.members("lobby") is first  # no rebuild without a change
    registry.join(cast(Any, c), "lobby")
    second = registry.members("lobby")
    assert set(second) == {a, b, c}
    assert set(first) == {a, b}  # an old snapshot never changes under its holder
    registry.leave(cast(Any, b), "lobby")
    assert set(registry.members("lobby")) == {a, c}
    assert set(second) == {a, b, c}


def test_a_change_in_one_room_keeps_the_other_rooms_snapshots() -> None:
    registry = Registry()
    a, b = FakeSession("a"), FakeSession("b")
    admitted(registry, a, b)
    registry.join(cast(Any, a), "one")
    registry.join(cast(Any, a), "two")
    two = registry.members("two")
    registry.join(cast(Any, b), "one")
    assert registry.members("two") is two


def test_leave_reports_the_last_local_member() -> None:
    registry = Registry()
    a, b = FakeSession("a"), FakeSession("b")
    admitted(registry, a, b)
    registry.join(cast(Any, a), "lobby")
    registry.join(cast(Any, b), "lobby")
    assert registry.leave(cast(Any, a), "lobby") is False
    assert registry.leave(cast(Any, a), "lobby") is False  # not a member any more
    assert registry.leave(cast(Any, b), "lobby") is True
    assert registry.members("lobby") == ()
    assert registry.rooms() == frozenset()


def test_remove_forgets_everything_and_returns_emptied_rooms() -> None:
    registry = Registry()
    a, b = FakeSession("alice"), FakeSession("bob")
    admitted(registry, a, b)
    registry.bind_name(cast(Any, a))
    for room in ("lobby", "solo"):
        registry.join(cast(Any, a), room)
    registry.join(cast(Any, b), "lobby")
    lobby = registry.members("lobby")
    assert sorted(registry.remove(cast(Any, a))) == ["solo"]
    assert registry.members("lobby") == (b,)
    assert a in lobby  # the old snapshot is untouched
    assert registry.by_name("alice") is None
    assert registry.get(a.sid) is None
    assert registry.remove(cast(Any, a)) == []  # twice is harmless
    assert registry.rooms() == frozenset({"lobby"})
    assert len(registry) == 1


def test_bind_name_returns_the_displaced_session_and_remove_keeps_the_successor() -> None:
    registry = Registry()
    old, new = FakeSession("Alice"), FakeSession("ALICE")
    admitted(registry, old, new)
    assert registry.bind_name(cast(Any, old)) is None
    assert registry.bind_name(cast(Any, old)) is None  # rebinding itself displaces nobody
    assert registry.bind_name(cast(Any, new)) is old
    registry.remove(cast(Any, old))
    assert registry.by_name(name_key("alice")) is new


def test_admit_enforces_the_connection_caps() -> None:
    registry = Registry()
    assert registry.admit(cast(Any, FakeSession(host="10.0.0.1")), 3, 2)
    assert registry.admit(cast(Any, FakeSession(host="10.0.0.1")), 3, 2)
    assert not registry.admit(cast(Any, FakeSession(host="10.0.0.1")), 3, 2)  # per address
    third = FakeSession(host="10.0.0.2")
    assert registry.admit(cast(Any, third), 3, 2)
    assert not registry.admit(cast(Any, FakeSession(host="10.0.0.3")), 3, 2)  # total
    registry.remove(cast(Any, third))
    assert registry.admit(cast(Any, FakeSession(host="10.0.0.3")), 3, 2)


def test_per_address_count_is_given_back_on_remove() -> None:
    registry = Registry()
    s = FakeSession(host="10.0.0.9")
    assert registry.admit(cast(Any, s), 10, 1)
    assert not registry.admit(cast(Any, FakeSession(host="10.0.0.9")), 10, 1)
    registry.remove(cast(Any, s))
    assert registry.admit(cast(Any, FakeSession(host="10.0.0.9")), 10, 1)


def test_snapshots_stay_consistent_under_concurrent_joins_and_leaves() -> None:
    """Readers only ever see tuples; after the churn the snapshot matches the truth."""
    registry = Registry()
    sessions = [FakeSession(f"u{i}") for i in range(8)]
    admitted(registry, *sessions)
    stop = threading.Event()
    seen_bad: list[object] = []

    def churn(s: FakeSession) -> None:
        for _ in range(300):
            registry.join(cast(Any, s), "lobby")
            registry.leave(cast(Any, s), "lobby")
        registry.join(cast(Any, s), "lobby")

    def read() -> None:
        while not stop.is_set():
            snap = registry.members("lobby")
            if not isinstance(snap, tuple) or len(set(snap)) != len(snap):
                seen_bad.append(snap)

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=churn, args=(s,)) for s in sessions]
    for t in writers:
        t.start()
    for t in writers:
        t.join(30)
    stop.set()
    reader.join(30)
    assert not seen_bad
    assert set(registry.members("lobby")) == set(sessions)
