"""The bench's frames are valid docs/protocol.md frames, and its markers cannot be forged."""

from __future__ import annotations

import orjson

from bench.wire import (
    ACK_MARK,
    STAMP,
    hello,
    marker_send,
    padding,
    send_ref,
    start_marker,
    timed_send,
)
from protocol.codec import decode_client, encode
from protocol.errors import ErrorCode
from protocol.frames import Ack, Error, Hello, Message, Position, Send


def test_timed_send_is_a_valid_send_carrying_its_stamp() -> None:
    line = timed_send("bench-x", send_ref(3, 7), 1234567890123, padding(40))
    frame = decode_client(line.rstrip(b"\n"))
    assert isinstance(frame, Send)
    assert frame.room == "bench-x" and frame.ref == "~A3.7"
    assert STAMP.search(frame.text.encode()) is not None
    assert len(frame.text) == len("~T1234567890123~ ") + 40


def test_stamps_survive_the_gateway_message_encoding() -> None:
    text = decode_client(timed_send("r", "~A0.1", 42, "pad").rstrip(b"\n")).text  # type: ignore[union-attr]
    line = encode(Message("r", 1, "someone", text, 1.5)) * 2
    assert STAMP.findall(line) == [b"42", b"42"]


def test_ack_marker_is_in_acks_and_errors_but_not_in_messages() -> None:
    assert ACK_MARK in encode(Ack(send_ref(1, 2), 9))
    assert ACK_MARK in encode(Error(ErrorCode.RATE_LIMITED, "slow", send_ref(1, 2)))
    text = decode_client(timed_send("r", "~A0.1", 42, padding(100)).rstrip(b"\n")).text  # type: ignore[union-attr]
    assert ACK_MARK not in encode(Message("r", 1, "x", text, 1.0))


def test_hello_with_since_and_token_round_trips() -> None:
    line = hello("bob", ["r1"], {"r1": Position("e1", 5)}, "tok")
    frame = decode_client(line.rstrip(b"\n"))
    assert frame == Hello("bob", ("r1",), {"r1": Position("e1", 5)}, "tok")


def test_hello_with_no_rooms_sends_an_empty_list() -> None:
    assert orjson.loads(hello("bob", []))["rooms"] == []


def test_marker_send_carries_the_start_marker() -> None:
    frame = decode_client(marker_send("r", "abc123").rstrip(b"\n"))
    assert isinstance(frame, Send) and frame.text == start_marker("abc123")
