"""The cluster publisher's router and slot map without Redis: which master gets which
request, what is sent again after a redirection or a lost master, and the replies parsed.

The masters are stand-in links that answer each script call by a rule of the test; the
same scenarios on a real cluster are in tests/rcluster/test_shard_links.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import redis

from gateway.redis.publisher import BatchLost, PublisherStopped, Wait
from gateway.redis.router import Asking, ShardRouter
from gateway.redis.scripts import Script, ScriptCall
from gateway.redis.slotmap import (
    SLOTS,
    Node,
    Redirect,
    SlotMap,
    key_slot,
    parse_shards,
    parse_slots,
)
from gateway.redis.wire import RedisWire

A, B = Node("127.0.0.1", 7000), Node("127.0.0.1", 7001)
SCRIPT = Script.of("echo", "return KEYS[1]")


def call(key: str) -> ScriptCall:
    return ScriptCall(SCRIPT, (key, key + ":more"), ())


class Master:
    """A stand-in master link: answers each call with ``answer(node, call)``."""

    def __init__(self, node: Node, answer: Callable[[Node, ScriptCall], Any],
                 seen: list[tuple[Node, str, bool, int]]) -> None:
        self.node = node
        self._answer = answer
        self._seen = seen

    def connect(self) -> None:
        pass

    def run(self, calls: Sequence[ScriptCall], wait: Wait | None = None) -> list[Any]:
        replies = []
        for c in calls:
            self._seen.append((self.node, c.keys[0], type(c) is Asking,
                               wait.replicas if wait else 0))
            reply = self._answer(self.node, c)
            if isinstance(reply, BatchLost):
                raise reply
            replies.append(reply)
        return replies

    def close(self) -> None:
        pass


def no_io(node: Node) -> RedisWire:
    raise OSError("no network in this test")


def slot_map(owner: Callable[[int], Node]) -> SlotMap:
    slots = SlotMap([A], no_io)
    for slot in range(SLOTS):
        slots.moved(Redirect(False, slot, owner(slot)))
    return slots


def halves(slot: int) -> Node:
    return A if slot < SLOTS // 2 else B


def key_on(node: Node, tag: str = "k") -> str:
    """A key whose slot ``halves`` gives to ``node``."""
    for i in range(10_000):
        key = f"{{{tag}{i}}}"
        if halves(key_slot(key)) == node:
            return key
    raise AssertionError("no key found")


def router(slots: SlotMap, answer: Callable[[Node, ScriptCall], Any],
           seen: list[tuple[Node, str, bool, int]], **kw: Any) -> ShardRouter:
    return ShardRouter(slots, lambda node: Master(node, answer, seen), lambda: None,
                       wait_key="{gw:x}:wait", **kw)


def test_each_request_goes_to_the_master_of_its_first_key_and_answers_in_order() -> None:
    seen: list[tuple[Node, str, bool, int]] = []
    r = router(slot_map(halves), lambda node, c: f"{node.port}:{c.keys[0]}", seen,
               min_replicas=1)
    keys = [key_on(A, "a"), key_on(B, "b"), key_on(A, "c")]
    try:
        replies = r.submit_all([call(k) for k in keys]).result(5)
        assert replies == [f"7000:{keys[0]}", f"7001:{keys[1]}", f"7000:{keys[2]}"]
        assert {(node, key) for node, key, _, _ in seen} == {(A, keys[0]), (B, keys[1]),
                                                             (A, keys[2])}
        assert all(replicas == 1 for *_, replicas in seen), "every part ends with its WAIT"
        assert r.submit(call(keys[1])).result(5) == f"7001:{keys[1]}"
    finally:
        r.stop()


def test_moved_corrects_the_map_and_sends_only_that_request_again() -> None:
    seen: list[tuple[Node, str, bool, int]] = []
    moved_key = key_on(A, "m")
    slot = key_slot(moved_key)

    def answer(node: Node, c: ScriptCall) -> Any:
        if c.keys[0] == moved_key and node == A:
            return redis.ResponseError(f"MOVED {slot} 127.0.0.1:7001")
        return "ok"

    slots = slot_map(halves)
    r = router(slots, answer, seen)
    other = key_on(A, "o")
    try:
        assert r.submit_all([call(moved_key), call(other)]).result(5) == ["ok", "ok"]
        assert [(n, k) for n, k, _, _ in seen] == [(A, moved_key), (A, other), (B, moved_key)]
        assert slots.owner(slot) == B
    finally:
        r.stop()


def test_ask_sends_the_request_once_after_asking_without_changing_the_map() -> None:
    seen: list[tuple[Node, str, bool, int]] = []
    key = key_on(A, "ask")
    slot = key_slot(key)

    def answer(node: Node, c: ScriptCall) -> Any:
        if node == A:
            return redis.ResponseError(f"ASK {slot} 127.0.0.1:7001")
        return "imported" if type(c) is Asking else redis.ResponseError("no ASKING")

    slots = slot_map(halves)
    r = router(slots, answer, seen)
    try:
        assert r.submit(call(key)).result(5) == "imported"
        assert [(n, asking) for n, _, asking, _ in seen] == [(A, False), (B, True)]
        assert slots.owner(slot) == A
    finally:
        r.stop()


def test_a_lost_master_sends_its_requests_where_the_slot_is_now_and_stalls_no_other() -> None:
    seen: list[tuple[Node, str, bool, int]] = []
    failed_over = threading.Event()
    slots = slot_map(halves)
    key, other = key_on(A, "lost"), key_on(B, "fine")

    def answer(node: Node, c: ScriptCall) -> Any:
        if node == A:
            for s in range(SLOTS // 2):  # the replica (B here) took A's slots
                slots.moved(Redirect(False, s, B))
            failed_over.set()
            return BatchLost([], ConnectionRefusedError("A died"))
        return f"{node.port}"

    r = router(slots, answer, seen)
    try:
        assert r.submit_all([call(key), call(other)]).result(5) == ["7001", "7001"]
        assert failed_over.is_set()
        assert [(n, k) for n, k, _, _ in seen] == [(A, key), (B, other), (B, key)] or \
            [(n, k) for n, k, _, _ in seen] == [(B, other), (A, key), (B, key)]
    finally:
        r.stop()


def promoted_late(slots: SlotMap, after_s: float) -> Callable[[Node, ScriptCall], Any]:
    """Master A runs the first request and dies before answering it; its replica (B)
    takes A's slots ``after_s`` later and answers ``repeat`` (it has the write)."""
    died: list[float] = []

    def answer(node: Node, c: ScriptCall) -> Any:
        if node == B:
            return "repeat"
        if not died:
            died.append(time.monotonic())
            return BatchLost([], ConnectionResetError("A died"), written=True)
        if time.monotonic() - died[0] > after_s:
            for s in range(SLOTS // 2):
                slots.moved(Redirect(False, s, B))
        return BatchLost([], ConnectionRefusedError("A is gone"), written=False)

    return answer


def test_a_request_in_doubt_is_sent_again_past_its_window_until_the_new_master_answers(
        ) -> None:
    """Its reply was lost with its master: it may have run, so ``unavailable`` would be
    a guess. Sent again after the promotion (later than its window), the new master's
    answer settles it."""
    seen: list[tuple[Node, str, bool, int]] = []
    slots = slot_map(halves)
    key = key_on(A, "doubt")
    r = router(slots, promoted_late(slots, 0.3), seen, window_ms=100, settle_s=5.0)
    try:
        assert r.submit(call(key)).result(10) == "repeat"
        assert seen[-1][0] == B
    finally:
        r.stop()


def test_without_settling_a_request_in_doubt_fails_when_its_window_ends() -> None:
    seen: list[tuple[Node, str, bool, int]] = []
    slots = slot_map(halves)
    r = router(slots, promoted_late(slots, 0.3), seen, window_ms=100)
    try:
        with pytest.raises(redis.ConnectionError):  # unavailable
            r.submit(call(key_on(A, "doubt"))).result(10)
        assert all(node == A for node, _, _, _ in seen)  # gave up before the promotion
    finally:
        r.stop()


def test_a_request_is_not_sent_again_past_its_window_or_after_too_many_redirections() -> None:
    seen: list[tuple[Node, str, bool, int]] = []
    key = key_on(A, "loop")
    slot = key_slot(key)

    def answer(node: Node, c: ScriptCall) -> Any:  # each master says the other has it
        to = B if node == A else A
        return redis.ResponseError(f"MOVED {slot} 127.0.0.1:{to.port}")

    r = router(slot_map(halves), answer, seen, max_redirects=3)
    try:
        with pytest.raises(redis.ResponseError, match="MOVED"):
            r.submit(call(key)).result(5)
        assert len(seen) == 4  # the first send and three redirections
    finally:
        r.stop()


def test_a_slot_with_no_known_master_fails_unavailable_within_the_window() -> None:
    seen: list[tuple[Node, str, bool, int]] = []
    slots = SlotMap([A], no_io)  # empty map, and no node to read it from
    r = router(slots, lambda node, c: "never", seen, window_ms=200)
    try:
        with pytest.raises(redis.ConnectionError, match="no master known"):
            r.submit(call("{x}")).result(5)
        assert seen == []
    finally:
        r.stop()


def test_stop_answers_everything_and_later_submissions_fail_at_once() -> None:
    seen: list[tuple[Node, str, bool, int]] = []
    r = router(slot_map(halves), lambda node, c: "ok", seen)
    assert r.submit(call(key_on(A))).result(5) == "ok"
    r.stop()
    with pytest.raises(PublisherStopped):
        r.submit(call(key_on(B))).result(5)


# ------------------------------------------------------------------ parsing


def test_redirections_parse_and_other_errors_do_not() -> None:
    assert Redirect.parse("MOVED 3999 127.0.0.1:6381") == Redirect(False, 3999,
                                                                   Node("127.0.0.1", 6381))
    assert Redirect.parse("ASK 1 [::1]:7000") == Redirect(True, 1, Node("::1", 7000))
    assert Redirect.parse("MOVED 5 :7002", default_host="10.0.0.9") == Redirect(
        False, 5, Node("10.0.0.9", 7002))
    assert Redirect.parse("TRYAGAIN Multiple keys request during rehashing of slot") is None
    assert Redirect.parse("MOVED x y") is None


def test_cluster_shards_and_cluster_slots_give_the_same_ranges() -> None:
    shards = [
        [b"slots", [0, 5460], b"nodes", [
            [b"id", b"a", b"port", 7000, b"ip", b"127.0.0.1", b"endpoint", b"127.0.0.1",
             b"role", b"master", b"replication-offset", 1, b"health", b"online"],
            [b"id", b"r", b"port", 7003, b"ip", b"127.0.0.1", b"endpoint", b"127.0.0.1",
             b"role", b"replica", b"replication-offset", 1, b"health", b"online"]]],
        [b"slots", [5461, 16383], b"nodes", [
            [b"id", b"b", b"port", 7001, b"ip", b"127.0.0.1", b"endpoint", b"127.0.0.1",
             b"role", b"master", b"replication-offset", 1, b"health", b"failed"]]],
    ]
    # a failed master's slots read as unowned until its replica is promoted
    assert parse_shards(shards) == [(0, 5460, A)]
    slots = [[0, 5460, [b"127.0.0.1", 7000, b"a"], [b"127.0.0.1", 7003, b"r"]],
             [5461, 16383, [b"127.0.0.1", 7001, b"b"]]]
    assert parse_slots(slots) == [(0, 5460, A), (5461, 16383, B)]
