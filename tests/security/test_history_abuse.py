"""History answers are inside the per-client budget, in bytes held and in bytes a second.

A client that never read and asked for ``history`` again and again, under
the frame rate, used to grow its gateway by the whole answer each time (the
answers were left out of ``--max-outbound``) and was never cut off; one that
read pulled megabytes a second out of Redis. Now a second answer waits for
the first (``rate_limited``), answers beyond the oldest count toward the
limit, a client that reads nothing for ``--send-timeout`` is cut off with
``bye``/``slow_consumer``, and answers draw on a byte budget per second.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

from gateway.server import Gateway
from protocol.codec import LineReader
from protocol.limits import MAX_SERVER_LINE, Limits
from tests.conftest import Connect, StartGateway
from tests.gateway.live import login
from tests.support.waiting import wait_for
from tests.support.wire import WireClient

MAX_OUTBOUND = 64 * 1024
TEXT = "x" * 3900
ANSWER = 200 * (len(TEXT) + 100)
"""About what a ``history`` of 200 such messages weighs on the wire."""


class NarrowClient(WireClient):
    """A client with a 4 KiB receive window: the kernel holds little for it."""

    def __init__(self, address: tuple[str, int], timeout: float = 10.0) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window
        sock.settimeout(timeout)
        sock.connect(address)
        self.sock = sock
        self.timeout = timeout
        self._reader = LineReader(MAX_SERVER_LINE)
        self._frames = []
        self.closed = False


def fill(gw: Gateway, room: str, count: int, text: str = TEXT) -> None:
    for _ in range(count):
        gw.broker.publish_message(room, "filler", text, time.time(), None)


def backlog(gw: Gateway) -> int:
    return max((s.backlog for s in gw.registry.sessions()), default=0)


def history(client: WireClient, ref: str, room: str = "big", limit: int = 200) -> None:
    client.send(type="history", room=room, limit=limit, ref=ref)


def test_a_second_answer_while_the_first_is_unsent_is_rate_limited(
        start_gateway: StartGateway) -> None:
    gw = start_gateway(limits=Limits(history_burst_bytes=8 << 20))
    fill(gw, "big", 300)
    client = NarrowClient(gw.address)
    try:
        login(client, "reader", rooms=("big",))
        history(client, "h1")
        history(client, "h2")  # the first answer cannot all be in the kernel yet
        got: list[dict[str, Any]] = []
        while not any(f["type"] == "error" for f in got):
            got.append(client.recv())
        refusal = got[-1]
        assert refusal["code"] == "rate_limited" and refusal["ref"] == "h2", refusal
        assert "still being sent" in refusal["message"]
        assert sum(len(f["messages"]) for f in got if f["type"] == "history") == 200
        history(client, "h3")  # read: the next one is served
        assert len(client.recv_type("history")["messages"]) > 0
    finally:
        client.close()


def test_a_client_that_never_reads_is_cut_off_and_holds_at_most_one_answer(
        start_gateway: StartGateway) -> None:
    limits = Limits(max_outbound=MAX_OUTBOUND, send_timeout_s=1.0,
                    history_burst_bytes=64 << 20)
    gw = start_gateway(limits=limits)
    fill(gw, "big", 300)
    attacker = NarrowClient(gw.address)
    try:
        login(attacker, "attacker", rooms=("big",))
        started = time.monotonic()
        peak = 0
        n = 0
        while gw.metrics.slow_consumers._value.get() == 0:
            assert time.monotonic() - started < 15, "the attacker was never cut off"
            try:
                history(attacker, f"h{n}")
            except OSError:
                break  # already closed
            n += 1
            time.sleep(0.05)  # pacing: about 20 requests a second, under the frame rate
            peak = max(peak, backlog(gw))
        cut_after = time.monotonic() - started
        assert cut_after < limits.send_timeout_s + 5, cut_after
        assert peak <= MAX_OUTBOUND + ANSWER, (peak, MAX_OUTBOUND + ANSWER)
    finally:
        attacker.close()


def test_a_reading_client_draws_history_at_most_at_its_byte_rate(
        start_gateway: StartGateway, connect: Connect) -> None:
    limits = Limits(history_bytes_per_s=20_000, history_burst_bytes=100_000)
    gw = start_gateway(limits=limits)
    fill(gw, "big", 300, "y" * 1000)
    client = connect(gw.address)
    login(client, "reader", rooms=("big",))
    started = time.monotonic()
    served = 0
    refusal = None
    for i in range(20):
        history(client, f"h{i}", limit=50)
        frame = client.recv()
        while frame["type"] not in ("history", "error"):
            frame = client.recv()
        if frame["type"] == "error":
            refusal = frame
            break
        served += len(json.dumps(frame))
    assert refusal is not None, "history answers were never limited"
    assert refusal["code"] == "rate_limited" and "bytes a second" in refusal["message"]
    elapsed = time.monotonic() - started
    assert served <= limits.history_burst_bytes + limits.history_bytes_per_s * elapsed + 60_000


def test_a_hello_that_catches_up_many_rooms_reaches_a_reader_whole(
        start_gateway: StartGateway, connect: Connect) -> None:
    """More catch-up than --max-outbound plus one answer, to a client that reads: the
    rooms are queued one at a time, so it is served, not cut off."""
    gw = start_gateway(limits=Limits(max_outbound=MAX_OUTBOUND))
    rooms = ("r1", "r2", "r3", "r4")
    for room in rooms:
        fill(gw, room, 150, "z" * 2000)
    epochs = {room: gw.broker.read_history(room).epoch for room in rooms}
    client = connect(gw.address)
    since = {room: {"epoch": epochs[room], "id": 0} for room in rooms}
    _, histories = login(client, "resumer", rooms=rooms, since=since)
    assert {room: len(h["messages"]) for room, h in histories.items()} == dict.fromkeys(
        rooms, 150)
    assert gw.metrics.slow_consumers._value.get() == 0


def test_a_hello_catch_up_to_a_client_that_never_reads_is_cut_off(
        start_gateway: StartGateway) -> None:
    gw = start_gateway(limits=Limits(max_outbound=MAX_OUTBOUND, send_timeout_s=1.0))
    rooms = [f"r{i}" for i in range(8)]
    for room in rooms:
        fill(gw, room, 150)
    epochs = {room: gw.broker.read_history(room).epoch for room in rooms}
    attacker = NarrowClient(gw.address)
    try:
        attacker.send(type="hello", name="attacker", rooms=rooms,
                      since={room: {"epoch": epochs[room], "id": 0} for room in rooms})
        started = time.monotonic()
        peak = 0

        def cut() -> bool:
            nonlocal peak
            peak = max(peak, backlog(gw))
            return bool(gw.metrics.slow_consumers._value.get())

        wait_for(cut, 10, interval=0.05, what="the attacker cut off")
        assert time.monotonic() - started < 7
        one_room = 150 * (len(TEXT) + 100)
        assert peak <= MAX_OUTBOUND + one_room, (peak, MAX_OUTBOUND + one_room)
    finally:
        attacker.close()
