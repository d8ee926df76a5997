"""A flooding client is rate limited; everyone else chats on as if it were not there.

At the default limits (20 frames/s, bursts of 40) one client sends frames as
fast as it can while three others chat at a human pace on the same gateway.
The flooder gets ``rate_limited`` for every frame past its budget, and
exactly one answer per frame; the others get every ``ack`` and every message
and not a single error.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from gateway.server import Gateway
from protocol.limits import Limits
from tests.conftest import Connect
from tests.support.wire import WireClient

FLOOD = 1500
CHATTERS = 3
CHAT_MESSAGES = 8
CHAT_INTERVAL_S = 0.2
"""Five messages a second each: well inside the limit."""


def login(client: WireClient, name: str) -> None:
    client.hello(name)
    client.recv_type("history", room="lobby")


def flood(client: WireClient, started: list[float], ended: list[float]) -> None:
    """Send ``FLOOD`` frames back to back, without reading."""
    started.append(time.monotonic())
    for i in range(0, FLOOD, 50):
        client.send_raw(b"".join(
            b'{"type":"send","room":"lobby","text":"spam","ref":"f%d"}\n' % n
            for n in range(i, i + 50)))
    ended.append(time.monotonic())


def answers(client: WireClient, refs: set[str], timeout: float = 20) -> dict[str, dict[str, Any]]:
    """Read until every ref in ``refs`` was answered (``ack`` or ``error``); ref -> answer."""
    got: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while not refs <= got.keys():
        frame = client.recv(timeout=max(0.1, deadline - time.monotonic()))
        if frame["type"] in ("ack", "error"):
            assert frame["ref"] not in got, f"two answers for {frame['ref']}"
            got[frame["ref"]] = frame
    return got


def read_until(client: WireClient, done: Callable[[list[dict[str, Any]]], bool],
               timeout: float = 20) -> list[dict[str, Any]]:
    """Every frame until ``done(frames so far)``."""
    frames: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while not done(frames):
        frames.append(client.recv(timeout=max(0.1, deadline - time.monotonic())))
    return frames


@pytest.mark.slow
def test_flooder_is_rate_limited_while_others_chat_without_errors(
        gateway: Gateway, connect: Connect) -> None:
    limits = Limits()
    flooder = connect(gateway.address, timeout=20)
    login(flooder, "flooder")
    chatters = [connect(gateway.address) for _ in range(CHATTERS)]
    for i, chatter in enumerate(chatters):
        login(chatter, f"chatter{i}")

    started: list[float] = []
    ended: list[float] = []
    flood_thread = threading.Thread(target=flood, args=(flooder, started, ended))
    flood_thread.start()
    try:
        for n in range(CHAT_MESSAGES):
            for i, chatter in enumerate(chatters):
                chatter.send(type="send", room="lobby", text=f"hello {i}.{n}", ref=f"c{n}")
            time.sleep(CHAT_INTERVAL_S)  # a human pace, not a wait for an event
    finally:
        flood_thread.join(30)

    wanted = {f"hello {i}.{n}" for i in range(CHATTERS) for n in range(CHAT_MESSAGES)}
    for i, chatter in enumerate(chatters):
        frames = read_until(chatter, lambda fs: wanted <= {f.get("text") for f in fs} and
                            len([f for f in fs if f["type"] == "ack"]) == CHAT_MESSAGES)
        assert not [f for f in frames if f["type"] == "error"], f"chatter{i} got errors"
        # every message of the room, the flooder's accepted ones too, in order, no gap
        ids = [f["id"] for f in frames if f["type"] == "message"]
        assert ids == list(range(ids[0], ids[0] + len(ids))), f"chatter{i}: {ids}"

    flood_answers = answers(flooder, {f"f{n}" for n in range(FLOOD)})
    accepted = [a for a in flood_answers.values() if a["type"] == "ack"]
    limited = [a for a in flood_answers.values() if a["type"] == "error"]
    assert {a["code"] for a in limited} == {"rate_limited"}
    assert len(accepted) + len(limited) == FLOOD
    # The first frames of the burst pass, then only the refill rate. Frames are taken
    # from the bucket as the gateway reads them, after the flood was written: allow the
    # whole time until the last answer.
    budget = limits.burst + limits.rate_per_s * (time.monotonic() - started[0]) + 1
    assert limits.burst - 1 <= len(accepted) <= budget, (len(accepted), budget)
    # the hello took one token: the next burst - 1 frames pass whatever the refill
    refs = {a["ref"] for a in accepted}
    assert {f"f{n}" for n in range(limits.burst - 1)} <= refs, "the burst is the first frames"
