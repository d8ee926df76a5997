"""Junk is not free: every line costs a frame token, and endless refusals end the session.

Invalid frames and frames sent before ``hello`` used to be answered with an
error each without touching the rate limit, so one client could make its
gateway write tens of thousands of error lines a second. Now every line
takes a token (past the budget it gets ``rate_limited``), and a client
refused more than ``max_refused`` times beyond the frame rate is cut off
with ``bye``/``abuse``, while the others are served.
"""

from __future__ import annotations

import contextlib

from gateway.server import Gateway
from protocol.limits import Limits
from tests.conftest import Connect, StartGateway
from tests.gateway.live import error, login


def codes(frames: list[dict[str, object]]) -> list[object]:
    return [f.get("code") for f in frames if f["type"] == "error"]


def test_invalid_frames_cost_tokens_like_any_other(
        start_gateway: StartGateway, connect: Connect) -> None:
    gw: Gateway = start_gateway(limits=Limits(rate_per_s=0.01, burst=5))
    client = connect(gw.address)
    login(client, "alice")  # one token
    client.send_raw(b"junk\n" * 8)
    client.send(type="ping", ref="after")
    got = [error(client, "bad_frame" if i < 4 else "rate_limited") for i in range(8)]
    assert len(got) == 8
    assert error(client, "rate_limited", ref="after")  # the junk spent the budget


def test_frames_before_hello_cost_tokens(start_gateway: StartGateway, connect: Connect) -> None:
    gw: Gateway = start_gateway(limits=Limits(rate_per_s=0.01, burst=3))
    client = connect(gw.address)
    client.send_raw(b'{"type":"ping"}\n' * 5)
    assert [error(client, code)["code"] for code in ["not_logged_in"] * 3 + ["rate_limited"] * 2]


def test_a_client_that_keeps_sending_junk_is_cut_off_with_bye_abuse(
        start_gateway: StartGateway, connect: Connect) -> None:
    limits = Limits(rate_per_s=20.0, burst=40, max_refused=50)
    gw: Gateway = start_gateway(limits=limits)
    other = connect(gw.address)
    login(other, "bob")
    junk = connect(gw.address)
    login(junk, "mallory")
    with contextlib.suppress(OSError):  # closed while we still write: the point
        junk.send_raw(b"\x00not json\n" * 2000)
    frames = junk.wait_closed(10)
    assert frames[-1] == {"type": "bye", "reason": "abuse"}, frames[-2:]
    # the budget plus what the frame rate refilled meanwhile; nowhere near 2000
    assert len(codes(frames)) <= limits.max_refused + 30, len(codes(frames))
    assert gw.metrics.abusers._value.get() == 1
    other.send(type="ping", ref="still")
    assert other.recv_type("pong", ref="still")
    assert other.recv_type("left", name="mallory")
