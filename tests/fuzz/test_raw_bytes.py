"""Random byte streams thrown at the gateway's sockets.

Broken and partial UTF-8, NULs, floods of newlines, lines longer than
``max_frame``, JSON fragments: whatever arrives, every complete line gets
exactly one ``error`` (in order, with the code the protocol names), a line
past ``max_frame`` gets ``frame_too_large`` and the connection is closed,
and nothing else closes it. Meanwhile a logged-in client keeps getting its
``pong`` quickly, and after the test no session or thread is left behind.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import hypothesis.strategies as st
from hypothesis import HealthCheck, assume, given, settings

from protocol import codec
from protocol.errors import ProtocolError
from tests.fuzz.conftest import FUZZ_LIMITS, Live
from tests.fuzz.rawclient import RawClient

MAX = FUZZ_LIMITS.max_frame
END = b'{"type":"ping","ref":"end"}\n'
"""Sent after the fuzz: its answer shows every line before it was handled."""
WATCH_BOUND_S = 2.0

FRAGMENTS = [b'{"type":', b'"ping"', b'"bye"', b'"send"', b"}", b"{", b'"', b",", b'"ref":',
             b'"room":"lobby"', b"[", b"]", b"null", b"1e999", b"\\u0000", b"\\ud800", b"\r",
             b"\t", b" "]
CHUNK = st.one_of(
    st.binary(max_size=48),
    st.sampled_from([b"\xe2\x82", b"\xf0\x9f\x98", b"\xc3", b"\xed\xa0\x80", b"\xff", b"\xc0\x80"]),
    st.integers(1, 800).map(lambda n: b"\n" * n),
    st.integers(1, 100).map(lambda n: b"\x00" * n),
    st.integers(MAX - 4, MAX * 3).map(lambda n: b"a" * n),
    st.sampled_from(FRAGMENTS),
)


@dataclass(frozen=True, slots=True)
class Expected:
    codes: list[str]
    """The error code each complete line must get, in order."""
    too_large: bool
    """A line reaches ``max_frame``: ``frame_too_large``, then the gateway hangs up."""


def expected(stream: bytes) -> Expected | None:
    """The answers to the complete lines of ``stream`` before login; None if one would log in."""
    codes: list[str] = []
    for line in stream.split(b"\n")[:-1]:
        if len(line) >= MAX:
            return Expected(codes, True)
        try:
            codec.decode_client(line, FUZZ_LIMITS, logged_in=False)
        except ProtocolError as exc:
            codes.append(exc.code.value)
            continue
        return None  # a well-formed hello: not what this fuzzer is about
    return Expected(codes, False)


def test_random_byte_streams_get_one_error_per_line_and_never_hurt_the_gateway(
        no_leaks: Live) -> None:
    gw = no_leaks.gateway
    watcher = RawClient(gw.address)
    watcher.send(type="hello", name="watcher", rooms=[])
    watcher.send(type="ping", ref="in")
    frames, pong = watcher.until("in")
    assert [f["type"] for f in frames] == ["welcome"] and pong is not None, (frames, pong)
    slowest: list[float] = []

    def watcher_answers() -> None:
        started = time.monotonic()
        watcher.send(type="ping", ref=str(len(slowest)))
        frames, pong = watcher.until(str(len(slowest)), timeout=WATCH_BOUND_S)
        assert pong == {"type": "pong", "ref": str(len(slowest))}, (frames, pong)
        slowest.append(time.monotonic() - started)

    @settings(max_examples=60, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(chunks=st.lists(CHUNK, min_size=1, max_size=6))
    def throw(chunks: list[bytes]) -> None:
        want = expected(b"".join(chunks) + b"\n")
        assume(want is not None)
        assert want is not None
        client = RawClient(gw.address)
        try:
            for chunk in [*chunks, b"\n" + END]:
                client.send_bytes(chunk)
            if want.too_large:
                frames = client.until_closed()
                codes = [f.get("code") for f in frames]
                # a lingering close: no reset destroys answers not yet read
                assert not client.reset, "the gateway reset the connection"
                assert codes == [*want.codes, "frame_too_large"], (codes[:10], want.codes[:10])
            else:
                frames, end = client.until("end")
                assert end is not None, "the gateway closed a connection it had no reason to"
                assert end["code"] == "not_logged_in", end
                codes = [f.get("code") for f in frames]
                assert codes == want.codes, (codes[:10], want.codes[:10])
            assert {f["type"] for f in frames} <= {"error"}, frames[:5]
            assert all(f["message"] for f in frames)
        finally:
            client.close()
        watcher_answers()

    try:
        throw()
    finally:
        watcher.close()
    assert max(slowest) < WATCH_BOUND_S


def test_close_after_frame_too_large_keeps_the_answers(no_leaks: Live) -> None:
    """Hundreds of bad lines, an oversized one, then more bytes while the gateway closes.

    docs/protocol.md: the oversized line is answered with ``frame_too_large`` before
    the close, and every earlier line has its ``error``. Were the socket closed
    with the client's later bytes unread (or were they to arrive after the
    close), the kernel would answer with a reset and the answers the client had
    not yet read would be lost; the gateway's lingering close (FIN, then read and
    drop input until the client closes, bounded in time) keeps them.
    """
    lost = []
    for _ in range(10):
        client = RawClient(no_leaks.gateway.address)
        try:
            client.send_bytes(b"\n" * 700)  # 700 bad_frame answers, some 60 KB
            client.send_bytes(b"a" * (MAX * 2))
            for _ in range(200):  # a client still writing when the gateway hangs up
                client.send_bytes(b"b" * 1000)
            frames = client.until_closed()
        finally:
            client.close()
        if [f.get("code") for f in frames] != ["bad_frame"] * 700 + ["frame_too_large"]:
            lost.append(len(frames))
    assert not lost, f"{len(lost)} of 10 clients got only {lost} of 701 answers"
