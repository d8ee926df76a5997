"""LineTap: counting lines and picking marked ones from arbitrary reads."""

from __future__ import annotations

import pytest

from bench.tap import LineTap
from protocol.errors import FrameTooLarge

STREAM = (
    b'{"type":"message","room":"r","id":1,"from":"a","text":"x","ts":1.0}\n'
    b'{"type":"ack","ref":"~A0.1","id":1}\n'
    b'{"type":"message","room":"r","id":2,"from":"a","text":"y","ts":1.0}\n'
    b'{"type":"error","code":"rate_limited","message":"slow down","ref":"~A0.2"}\n'
)


def feed_in_pieces(tap: LineTap, data: bytes, size: int) -> tuple[int, list[bytes]]:
    lines = 0
    picked: list[bytes] = []
    for i in range(0, len(data), size):
        scan = tap.scan(data[i : i + size])
        lines += scan.lines
        picked += scan.picked
    return lines, picked


@pytest.mark.parametrize("size", [1, 2, 7, 50, 1000])
def test_counts_and_picks_the_same_whatever_the_read_size(size: int) -> None:
    tap = LineTap([b'"~A'])
    lines, picked = feed_in_pieces(tap, STREAM * 3, size)
    assert lines == 12
    assert len(picked) == 6
    assert all(b'"~A' in line and not line.endswith(b"\n") for line in picked)
    assert picked[0] == b'{"type":"ack","ref":"~A0.1","id":1}'
    assert tap.pending == 0


def test_a_partial_line_is_carried_and_not_counted() -> None:
    tap = LineTap([b'"~A'])
    scan = tap.scan(b'{"type":"ack","ref":"~A')
    assert scan.lines == 0 and scan.picked == ()
    assert tap.pending > 0
    scan = tap.scan(b'1.1"}\nxx')
    assert scan.lines == 1
    assert scan.picked == (b'{"type":"ack","ref":"~A1.1"}',)
    assert scan.buffer[: scan.end].endswith(b"\n")
    assert tap.pending == 2


def test_a_line_with_two_markers_is_picked_once() -> None:
    tap = LineTap([b'"~A', b'"error"'])
    scan = tap.scan(b'{"type":"error","ref":"~A1"}\n{"type":"ack","ref":"~A2"}\n')
    assert scan.picked == (b'{"type":"error","ref":"~A1"}', b'{"type":"ack","ref":"~A2"}')


def test_without_markers_only_counts() -> None:
    tap = LineTap()
    assert tap.scan(b"a\nb\nc").lines == 2
    assert tap.scan(b"\n").lines == 1


def test_split_returns_complete_lines_and_unread_puts_them_back() -> None:
    tap = LineTap([b"!"])
    assert tap.split(b"one\ntwo\nthr") == [b"one", b"two"]
    tap.unread([b"two!"])
    scan = tap.scan(b"ee\n")
    assert scan.lines == 2
    assert scan.picked == (b"two!",)


def test_an_overlong_line_is_refused() -> None:
    tap = LineTap(max_line=16)
    with pytest.raises(FrameTooLarge):
        tap.scan(b"x" * 20)


def test_markers_must_not_hold_newlines() -> None:
    with pytest.raises(ValueError):
        LineTap([b"a\nb"])
