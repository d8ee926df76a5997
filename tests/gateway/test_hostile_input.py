"""Hostile clients against a live gateway: junk bytes, stalls, floods, random frames.

Whatever one client sends, it gets an exact error code (or, for an oversized
frame, a closed connection) and every other client keeps being served.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.server import Gateway
from protocol.codec import decode_server
from protocol.errors import ErrorCode
from protocol.limits import Limits
from tests.gateway.conftest import Connect, StartGateway
from tests.gateway.live import (
    Collector,
    error,
    login,
    send_ok,
    wait_closed_with_bye,
    wait_threads,
)
from tests.support.waiting import wait_for
from tests.support.wire import WireClient

ROOMY = Limits(rate_per_s=10_000.0, burst=10_000)


@pytest.fixture
def gw(start_gateway: StartGateway) -> Gateway:
    return start_gateway(limits=ROOMY)


def ping_pong(client: WireClient, ref: str = "alive", timeout: float = 10.0) -> None:
    client.send(type="ping", ref=ref)
    assert client.recv_type("pong", ref=ref, timeout=timeout)


# ------------------------------------------------------------------ junk


@pytest.mark.parametrize("raw", [
    b"\xc3\x28",                                  # invalid UTF-8 sequence
    b'{"type": "ping", "ref": "\xed\xa0\x80"}',   # a UTF-8-encoded surrogate
    b'{"type": "ping", "ref": "a\xffb"}',
    b"\x00",
    b'{"type"\x00: "ping"}',
    b'\x00{"type": "ping"}',
    b'{"type": "ping"}\x00',
    b"{'type': 'ping'}",                          # not JSON: single quotes
    b'{"type": "ping",}',
    b"NaN",
    b"1e999",
    b"-",
    b'{"type": "ping"}{"type": "ping"}',          # two objects on one line
    b" " * 100,
    b"",
], ids=lambda raw: repr(raw)[:40])
def test_junk_lines_are_bad_frame_and_the_connection_survives(
        gw: Gateway, connect: Connect, raw: bytes) -> None:
    client = connect(gw.address)
    login(client, "alice")
    client.send_raw(raw + b"\n")
    error(client, "bad_frame")
    ping_pong(client)


def test_an_escaped_nul_in_text_is_bad_text_not_a_crash(gw: Gateway, connect: Connect) -> None:
    client = connect(gw.address)
    login(client, "alice")
    client.send_raw(b'{"type": "send", "room": "lobby", "text": "a\\u0000b", "ref": "n"}\n')
    assert error(client, "bad_text")["ref"] == "n"
    client.send_raw(b'{"type": "send", "room": "lobby", "text": "\\ud800", "ref": "s"}\n')
    frame = client.recv()
    while frame["type"] == "joined":  # our own, from the login
        frame = client.recv()
    # a lone surrogate: refused or stored, but the session lives
    assert frame["type"] in ("error", "ack"), frame
    ping_pong(client)


def test_crlf_line_ends_are_tolerated_or_refused_cleanly(gw: Gateway, connect: Connect) -> None:
    client = connect(gw.address)
    login(client, "alice")
    client.send_raw(b'{"type": "ping", "ref": "crlf"}\r\n')
    frame = client.recv()
    while frame["type"] == "joined":
        frame = client.recv()
    assert frame in ({"type": "pong", "ref": "crlf"},) or frame["type"] == "error", frame
    ping_pong(client)


@pytest.mark.parametrize("frame,code", [
    ({"type": "send", "text": "hi"}, "bad_room"),
    ({"type": "send", "room": "lobby"}, "bad_text"),
    ({"type": "send", "room": ["lobby"], "text": "hi"}, "bad_room"),
    ({"type": "send", "room": {"lobby": 1}, "text": "hi"}, "bad_room"),
    ({"type": "send", "room": "lobby", "text": {"t": 1}}, "bad_text"),
    ({"type": "dm", "text": "hi"}, "bad_name"),
    ({"type": "dm", "to": 1, "text": "hi"}, "bad_name"),
    ({"type": "join"}, "bad_room"),
    ({"type": "join", "room": None}, "bad_room"),
    ({"type": "leave", "room": 3.5}, "bad_room"),
    ({"type": "who"}, "bad_room"),
    ({"type": "typing", "room": True}, "bad_room"),
    ({"type": "history"}, "bad_room"),
    ({"type": "history", "room": "lobby", "limit": 1.5}, "bad_frame"),
    ({"type": "history", "room": "lobby", "limit": True}, "bad_frame"),
    ({"type": "history", "room": "lobby", "limit": 0}, "bad_frame"),
    ({"type": "history", "room": "lobby", "before": "10"}, "bad_frame"),
    ({"type": "history", "room": "lobby", "before": -1}, "bad_frame"),
    ({"type": "history", "room": "lobby", "before": 2 ** 70}, "bad_frame"),
    ({"type": "ping", "ref": {"a": 1}}, "bad_frame"),
])
def test_missing_and_mistyped_fields_get_the_field_s_code(
        gw: Gateway, connect: Connect, frame: dict[str, Any], code: str) -> None:
    client = connect(gw.address)
    login(client, "alice")
    client.send(**frame)
    got = error(client, code)
    assert "ref" not in got or got["ref"] is None
    ping_pong(client)


@pytest.mark.parametrize("hello,code", [
    ({"type": "hello"}, "bad_name"),
    ({"type": "hello", "name": "alice", "rooms": None, "since": []}, "bad_frame"),
    ({"type": "hello", "name": "alice", "since": {"lobby": 5}}, "bad_frame"),
    ({"type": "hello", "name": "alice", "since": {"lobby": {"epoch": 5, "id": 1}}}, "bad_frame"),
    ({"type": "hello", "name": "alice", "since": {"lobby": {"epoch": "e", "id": "1"}}},
     "bad_frame"),
    ({"type": "hello", "name": "alice", "since": {"Lobby": {"epoch": "e", "id": 1}}}, "bad_room"),
    ({"type": "hello", "name": "alice", "token": 12345}, "bad_frame"),
    ({"type": "hello", "name": "alice", "token": "t" * 500}, "bad_frame"),
    ({"type": "hello", "name": "alice", "rooms": {"lobby": True}}, "bad_room"),
    ({"type": "hello", "name": "alice", "rooms": [None]}, "bad_room"),
    ({"type": "hello", "name": "alice", "rooms": [["lobby"]]}, "bad_room"),
    ({"type": "hello", "name": "alice", "rooms": [{"r": 1}]}, "bad_room"),
])
def test_malformed_hello_is_refused_with_its_code_and_login_still_possible(
        gw: Gateway, connect: Connect, hello: dict[str, Any], code: str) -> None:
    client = connect(gw.address)
    client.send(**hello)
    error(client, code)
    login(client, "alice")


def test_a_deep_or_huge_json_value_is_refused_cleanly(gw: Gateway, connect: Connect) -> None:
    client = connect(gw.address)
    login(client, "alice")
    client.send_raw(b'{"type": "ping", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}\n")
    frame = client.recv()
    while frame["type"] == "joined":
        frame = client.recv()
    assert frame in ({"type": "pong"},) or frame.get("code") == "bad_frame", frame
    client.send_raw(b'{"type": "ping", "n": ' + b"9" * 5000 + b', "ref": "n"}\n')
    frame = client.recv()
    assert frame in ({"type": "pong", "ref": "n"},) or frame.get("code") == "bad_frame", frame
    ping_pong(client)


# ------------------------------------------------------------------ stalls


def test_a_half_frame_then_a_stall_holds_nobody_else_up(gw: Gateway, connect: Connect) -> None:
    staller = connect(gw.address)
    login(staller, "staller")
    other = connect(gw.address)
    login(other, "other")
    staller.send_raw(b'{"type": "send", "room": "lobby", "te')
    for i in range(1, 21):
        assert send_ok(other, "lobby", f"m{i}", f"r{i}") == i
    ping_pong(other)
    fresh = connect(gw.address)  # new connections are still accepted and served
    login(fresh, "fresh")
    staller.send_raw(b'xt": "finally", "ref": "late"}\n')
    assert staller.recv_type("ack", ref="late")["id"] == 21
    assert other.recv_type("message", id=21)["text"] == "finally"


def test_a_frame_dribbled_one_byte_at_a_time_is_served(gw: Gateway, connect: Connect) -> None:
    client = connect(gw.address)
    login(client, "alice")
    for byte in b'{"type": "send", "room": "lobby", "text": "slow", "ref": "d"}\n':
        client.send_raw(bytes([byte]))
    assert client.recv_type("ack", ref="d")["id"] == 1


def test_many_frames_in_one_packet_are_answered_in_order(gw: Gateway, connect: Connect) -> None:
    client = connect(gw.address)
    login(client, "alice")
    client.send_raw(b"".join(b'{"type":"ping","ref":"%d"}\n' % i for i in range(300)))
    assert [client.recv_type("pong")["ref"] for _ in range(300)] == [str(i) for i in range(300)]


def test_a_client_that_never_logs_in_is_closed_after_the_login_timeout(
        start_gateway: StartGateway, connect: Connect) -> None:
    gw = start_gateway(limits=Limits(login_timeout_s=1.0))
    silent = connect(gw.address)
    chatty = connect(gw.address)  # talks, but never logs in: the deadline still holds
    started = time.monotonic()
    stop = threading.Event()

    def chatter() -> None:
        while not stop.is_set() and not chatty.closed:
            try:
                chatty.send(type="ping")
            except OSError:
                return
            stop.wait(0.1)

    thread = threading.Thread(target=chatter)
    thread.start()
    try:
        wait_closed_with_bye(silent, "idle", timeout=5)
        elapsed = time.monotonic() - started
        assert 0.9 <= elapsed < 3.0, elapsed
        frames = chatty.wait_closed(5)
        assert {f.get("code") for f in frames if f["type"] == "error"} == {"not_logged_in"}
        assert frames[-1] == {"type": "bye", "reason": "idle"}
    finally:
        stop.set()
        thread.join(5)
    late = connect(gw.address)
    login(late, "late")  # a prompt hello is fine


def test_an_idle_session_is_closed_with_bye_idle_and_leaves_its_rooms(
        start_gateway: StartGateway, connect: Connect) -> None:
    gw = start_gateway(limits=Limits(idle_timeout_s=0.6))
    idle = connect(gw.address)
    busy = connect(gw.address)
    login(idle, "idle")
    login(busy, "busy")
    started = time.monotonic()
    pings = 0
    seen: list[dict[str, Any]] = []

    def idle_got_bye() -> bool:
        nonlocal pings
        pings += 1
        ping_pong(busy, f"p{pings}")  # busy talks well inside the timeout: it stays
        seen.extend(idle.drain(0.01))
        return idle.closed or any(f["type"] == "bye" for f in seen)

    wait_for(idle_got_bye, 5, interval=0.1, what="the idle session's bye")
    frames = seen + idle.wait_closed()
    assert frames[-1] == {"type": "bye", "reason": "idle"}
    assert time.monotonic() - started >= 0.55
    assert busy.recv_type("left", name="idle")
    ping_pong(busy, "after")
    assert pings >= 3


# ------------------------------------------------------------------ slow consumer


def test_a_client_that_never_reads_is_dropped_as_slow_consumer_and_others_are_served(
        start_gateway: StartGateway, connect: Connect) -> None:
    gw = start_gateway(limits=Limits(max_outbound=64 * 1024, rate_per_s=10_000.0, burst=10_000))
    slow = connect(gw.address)
    login(slow, "slow")
    reader = connect(gw.address)
    login(reader, "reader")
    collector = Collector(reader)  # a client that reads
    sender = connect(gw.address)
    login(sender, "sender")
    text = "x" * 3000
    n = 0
    while gw.metrics.slow_consumers._value.get() == 0:
        n += 1
        sender.send(type="send", room="lobby", text=f"{n} {text}", ref=f"r{n}")
        sender.recv_type("ack", ref=f"r{n}")  # reads the sender's own copies meanwhile
        if n > 10:  # stay a few messages ahead of the reader, however busy the machine is
            collector.wait_id("lobby", n - 10)
        assert n < 5000, "the slow consumer was never dropped"
    frames = slow.wait_closed(10)  # read now: bye follows what the kernel already holds
    assert frames[-1] == {"type": "bye", "reason": "slow_consumer"}, frames[-2:]
    got = [f["id"] for f in frames if f["type"] == "message"]
    assert got == list(range(1, len(got) + 1))  # a prefix, in order, each line whole
    assert len(got) < n
    for i in range(n + 1, n + 11):
        sender.send(type="send", room="lobby", text=f"{i} after", ref=f"r{i}")
    sender.recv_type("ack", ref=f"r{n + 10}")
    assert collector.wait_id("lobby", n + 10) == list(range(1, n + 11))
    wait_for(lambda: any(f["type"] == "left" and f["name"] == "slow"
                         for f in collector.snapshot()), 5, what="slow's left")
    collector.stop()
    assert gw.metrics.slow_consumers._value.get() == 1


# ------------------------------------------------------------------ fuzzing


ROOM_NAMES = st.sampled_from(["lobby", "dev", "Lobby", "", "x" * 33, "a b", "r1"])
USER_NAMES = st.sampled_from(["fuzz", "FUZZ", "observer", "", "a b", "ü", "x" * 33])
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-(2 ** 70), 2 ** 70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=10,
)
FIELD_VALUES = {
    "room": ROOM_NAMES | JSONISH,
    "rooms": st.lists(ROOM_NAMES, max_size=4) | JSONISH,
    "name": USER_NAMES | JSONISH,
    "to": USER_NAMES | JSONISH,
    "text": st.text(max_size=50) | JSONISH,
    "ref": st.text(min_size=1, max_size=10) | JSONISH,
    "before": st.integers(-5, 300) | JSONISH,
    "limit": st.integers(-5, 300) | JSONISH,
    "since": st.dictionaries(ROOM_NAMES, st.fixed_dictionaries(
        {"epoch": st.text(max_size=8), "id": st.integers(-2, 2 ** 64)})) | JSONISH,
    "token": st.text(max_size=10) | JSONISH,
}
TYPES = st.sampled_from(["hello", "send", "dm", "join", "leave", "history", "who", "typing",
                         "ping", "bye", "nope", "welcome", ""])


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["object", "object", "object", "json", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=60)).replace(b"\n", b" ")
    if kind == "json":
        return json.dumps(draw(JSONISH)).encode()
    obj: dict[str, Any] = {"type": draw(TYPES | JSONISH)}
    for field in draw(st.sets(st.sampled_from(sorted(FIELD_VALUES)), max_size=4)):
        obj[field] = draw(FIELD_VALUES[field])
    return json.dumps(obj, ensure_ascii=draw(st.booleans())).encode()


CODES = {c.value for c in ErrorCode} - {"internal", "frame_too_large"}


@pytest.mark.slow
def test_random_frames_never_break_the_gateway(gw: Gateway, connect: Connect) -> None:
    """Thousands of random frames: exact codes only, the session survives, others are served."""
    observer = connect(gw.address)
    login(observer, "observer")
    served = 0
    failures: list[BaseException] = []
    stop = threading.Event()

    def keep_pinging() -> None:
        nonlocal served
        try:
            while not stop.is_set():
                ping_pong(observer, f"o{served}", timeout=5)
                served += 1
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    baseline = threading.active_count()
    pinger = threading.Thread(target=keep_pinging)
    pinger.start()
    examples = sent = 0

    @settings(max_examples=150, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.lists(frames(), min_size=7, max_size=40))  # 150 x 7: at least 1,050 frames
    def check(lines: list[bytes]) -> None:
        nonlocal examples, sent
        examples += 1
        sent += len(lines)
        client = WireClient(gw.address)
        try:
            client.send_raw(b"".join(line + b"\n" for line in lines))
            client.send(type="ping", ref="end-of-example")
            while True:
                frame = client.recv(10)
                decode_server(json.dumps(frame).encode())  # a well-formed server frame
                if frame["type"] == "error":
                    assert frame["code"] in CODES, frame
                if frame["type"] == "bye":
                    assert frame["reason"] == "client", frame  # only the fuzzer's own bye
                    break
                if frame == {"type": "pong", "ref": "end-of-example"}:
                    break
                if frame["type"] == "error" and frame["code"] == "not_logged_in" \
                        and frame.get("ref") == "end-of-example":
                    break
        finally:
            client.close()

    try:
        check()
    finally:
        stop.set()
        pinger.join(10)
    assert not failures, failures
    assert examples >= 100 and sent >= 1000
    assert served > 0
    ping_pong(observer, "after")
    wait_threads(baseline)
