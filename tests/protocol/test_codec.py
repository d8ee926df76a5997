"""protocol.codec: bytes <-> frames, asserted frame by frame and code by code.

Parsers are fed one byte at a time as well as whole (h11's habit); every
refusal is checked for its exact PROTOCOL.md error code and for the ``ref``
it echoes. Random splits and arbitrary input live in test_fuzz.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
import pytest

from protocol.codec import (
    LineReader,
    decode_client,
    decode_server,
    dm_history_line,
    dm_history_lines,
    encode,
    encode_error,
    history_line,
    history_lines,
    message_parts,
    to_dict,
)
from protocol.errors import ErrorCode, FrameTooLarge, ProtocolError
from protocol.frames import (
    Ack,
    Bye,
    ByeReason,
    ClientFrame,
    DirectMessage,
    Dm,
    DmHistory,
    DmHistoryQuery,
    DmSummary,
    Error,
    Goodbye,
    Hello,
    History,
    HistoryQuery,
    Join,
    Joined,
    Leave,
    Left,
    Message,
    Passwd,
    Ping,
    Pong,
    Position,
    Read,
    Register,
    Registered,
    Send,
    ServerFrame,
    Typing,
    TypingNotice,
    Welcome,
    Who,
    WhoList,
)
from protocol.limits import Limits

MAX = 256  # the smallest max_frame Limits allows: small lines keep the tests quick


def line(**fields: Any) -> bytes:
    """One client line (no newline) from keyword fields."""
    return orjson.dumps(fields)


def feed_bytewise(reader: LineReader, data: bytes) -> list[bytes]:
    out: list[bytes] = []
    for i in range(len(data)):
        out.extend(reader.feed(data[i : i + 1]))
    return out


def refusal(raw: bytes, *, logged_in: bool = True, limits: Limits | None = None) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decode_client(raw, limits, logged_in=logged_in)
    return info.value


# ==========================================================================
# LineReader


class TestLineReader:
    def test_lines_fed_whole_come_out_in_order_without_newlines(self) -> None:
        reader = LineReader(MAX)
        assert list(reader.feed(b'{"type":"ping"}\n{"type":"bye"}\n')) == [
            b'{"type":"ping"}',
            b'{"type":"bye"}',
        ]
        assert reader.pending == 0

    def test_one_byte_at_a_time_gives_the_same_lines(self) -> None:
        data = b'{"type":"ping","ref":"a"}\n\n{"type":"bye"}\npartial'
        reader = LineReader(MAX)
        assert feed_bytewise(reader, data) == [b'{"type":"ping","ref":"a"}', b"", b'{"type":"bye"}']
        assert reader.pending == len(b"partial")

    def test_a_line_is_held_until_its_newline_arrives(self) -> None:
        reader = LineReader(MAX)
        assert list(reader.feed(b'{"type":')) == []
        assert reader.pending == 8
        assert list(reader.feed(b'"ping"}')) == []
        assert list(reader.feed(b"\n")) == [b'{"type":"ping"}']
        assert reader.pending == 0

    def test_empty_feed_yields_nothing(self) -> None:
        reader = LineReader(MAX)
        assert list(reader.feed(b"")) == []
        assert reader.pending == 0

    def test_line_of_max_frame_bytes_with_its_newline_is_accepted(self) -> None:
        body = b"x" * (MAX - 1)
        assert list(LineReader(MAX).feed(body + b"\n")) == [body]
        assert feed_bytewise(LineReader(MAX), body + b"\n") == [body]

    def test_line_one_byte_over_max_frame_is_refused(self) -> None:
        body = b"x" * MAX  # MAX + 1 bytes with the newline
        with pytest.raises(FrameTooLarge) as info:
            list(LineReader(MAX).feed(body + b"\n"))
        assert info.value.code is ErrorCode.FRAME_TOO_LARGE

    def test_line_over_max_frame_is_refused_byte_by_byte_too(self) -> None:
        with pytest.raises(FrameTooLarge):
            feed_bytewise(LineReader(MAX), b"x" * MAX + b"\n")

    def test_long_line_without_newline_is_refused_as_it_reaches_the_cap(self) -> None:
        """The MAX-th pending byte can only end a line that is too long: refuse it then."""
        reader = LineReader(MAX)
        for _ in range(MAX - 1):
            assert list(reader.feed(b"x")) == []
        assert reader.pending == MAX - 1
        with pytest.raises(FrameTooLarge):
            list(reader.feed(b"x"))

    def test_a_huge_chunk_without_newline_is_refused_at_once(self) -> None:
        with pytest.raises(FrameTooLarge):
            list(LineReader(MAX).feed(b"x" * (100 * MAX)))

    def test_pending_stays_below_the_cap_between_feeds(self) -> None:
        reader = LineReader(MAX)
        data = (b"y" * (MAX - 1) + b"\n") * 3 + b"z" * (MAX - 1)
        for i in range(0, len(data), 37):
            list(reader.feed(data[i : i + 37]))
            assert reader.pending < MAX

    def test_good_lines_before_an_oversized_one_are_delivered_first(self) -> None:
        reader = LineReader(MAX)
        got: list[bytes] = []
        with pytest.raises(FrameTooLarge):
            got.extend(reader.feed(b"a\nb\n" + b"x" * MAX + b"\nc\n"))
        assert got == [b"a", b"b"]

    def test_oversized_line_after_a_pending_prefix_counts_the_whole_line(self) -> None:
        reader = LineReader(MAX)
        assert list(reader.feed(b"x" * (MAX - 10))) == []
        with pytest.raises(FrameTooLarge):
            list(reader.feed(b"x" * 10 + b"\n"))

    def test_flood_of_empty_lines(self) -> None:
        reader = LineReader(MAX)
        lines = list(reader.feed(b"\n" * 100_000))
        assert len(lines) == 100_000
        assert set(lines) == {b""}
        assert reader.pending == 0

    def test_empty_lines_byte_by_byte(self) -> None:
        assert feed_bytewise(LineReader(MAX), b"\n" * 500) == [b""] * 500

    def test_utf8_split_across_feeds_is_joined_before_decoding(self) -> None:
        raw = line(type="send", room="lobby", text="é漢😀") + b"\n"
        reader = LineReader(MAX)
        lines = feed_bytewise(reader, raw)
        assert lines == [raw[:-1]]
        assert decode_client(lines[0]) == Send("lobby", "é漢😀")

    def test_crlf_line_keeps_its_cr_which_json_treats_as_whitespace(self) -> None:
        (got,) = LineReader(MAX).feed(b'{"type":"ping"}\r\n')
        assert got == b'{"type":"ping"}\r'
        assert decode_client(got) == Ping()

    def test_a_caller_that_stops_early_gets_the_rest_once_from_the_next_feed(self) -> None:
        reader = LineReader(MAX)
        lines = reader.feed(b"a\nb\nc\n")
        assert next(lines) == b"a"
        del lines  # stopped early, say on a bye
        assert list(reader.feed(b"d\n")) == [b"b", b"c", b"d"]

    def test_bytes_are_kept_even_if_the_iterator_is_never_run(self) -> None:
        reader = LineReader(MAX)
        reader.feed(b"a\nb")
        assert reader.pending == 3
        assert list(reader.feed(b"\n")) == [b"a", b"b"]


# ==========================================================================
# decode_client: valid frames


VALID_CLIENT: list[tuple[bytes, ClientFrame]] = [
    (b'{"type":"hello","name":"alice"}', Hello("alice")),
    (
        line(
            type="hello",
            name="Bob_1.x-y",
            rooms=["dev", "lobby"],
            since={"dev": {"epoch": "e1", "id": 7}},
            token="secret",
        ),
        Hello("Bob_1.x-y", ("dev", "lobby"), {"dev": Position("e1", 7)}, "secret"),
    ),
    (line(type="hello", name="a", rooms=[]), Hello("a", ())),
    (line(type="hello", name="a", since=None, token=None, rooms=None), Hello("a")),
    (line(type="send", room="lobby", text="hi"), Send("lobby", "hi")),
    (line(type="send", room="lobby", text="  hi \n", ref="r-1"), Send("lobby", "hi", "r-1")),
    (line(type="dm", to="bob", text="psst"), Dm("bob", "psst")),
    (line(type="dm", to="bob", text="psst", ref="r2"), Dm("bob", "psst", "r2")),
    (line(type="join", room="dev"), Join("dev")),
    (line(type="leave", room="dev"), Leave("dev")),
    (line(type="history", room="dev"), HistoryQuery("dev", None, 50)),
    (line(type="history", room="dev", before=10, limit=200), HistoryQuery("dev", 10, 200)),
    (line(type="history", room="dev", before=None, limit=None), HistoryQuery("dev")),
    (line(type="history", room="dev", limit=1), HistoryQuery("dev", None, 1)),
    (line(type="who", room="dev"), Who("dev")),
    (line(type="typing", room="dev"), Typing("dev")),
    (b'{"type":"ping"}', Ping()),
    (line(type="ping", ref="p1"), Ping("p1")),
    (b'{"type":"bye"}', Bye()),
    (b' {"type" : "bye"} \t', Bye()),
    # v1.1
    (line(type="hello", name="a", password="pass word"), Hello("a", password="pass word")),
    (line(type="hello", name="a", password=None), Hello("a")),
    (line(type="hello", name="a", password=""), Hello("a", password="")),  # auth's to judge
    (
        line(type="hello", name="a", since={"dev": {"epoch": "e", "id": 1},
                                            "@Bob": {"epoch": "f", "id": 12}}),
        Hello("a", since={"dev": Position("e", 1), "@Bob": Position("f", 12)}),
    ),
    (line(type="register", password="12345678"), Register("12345678")),
    (line(type="passwd", old="x", new="12345678"), Passwd("x", "12345678")),
    (line(type="read", room="dev", id=7), Read(room="dev", id=7)),
    (line(type="read", room="dev", id=0, ref="r"), Read(room="dev", id=0)),
    (line(type="read", **{"with": "Bob"}, id=3), Read(peer="Bob", id=3)),
    (line(type="read", room=None, **{"with": "bob"}, id=3), Read(peer="bob", id=3)),
    (line(type="history", **{"with": "bob"}), DmHistoryQuery("bob")),
    (
        line(type="history", room=None, **{"with": "bob"}, before=5, limit=10),
        DmHistoryQuery("bob", 5, 10),
    ),
    (line(type="history", room="dev", **{"with": None}), HistoryQuery("dev")),
]


@pytest.mark.parametrize(("raw", "frame"), VALID_CLIENT, ids=lambda v: str(v)[:40])
def test_decode_client_builds_the_exact_frame(raw: bytes, frame: ClientFrame) -> None:
    assert decode_client(raw) == frame


@pytest.mark.parametrize(("raw", "frame"), VALID_CLIENT, ids=lambda v: str(v)[:40])
def test_decode_client_byte_by_byte_through_the_reader(raw: bytes, frame: ClientFrame) -> None:
    (got,) = feed_bytewise(LineReader(16384), raw + b"\n")
    assert decode_client(got) == frame


def test_unknown_extra_fields_are_ignored() -> None:
    raw = line(type="join", room="dev", colour="red", nested={"a": [1, None]}, x=1.5)
    assert decode_client(raw) == Join("dev")


def test_ref_on_a_frame_without_ref_is_an_ignored_extra_field() -> None:
    assert decode_client(line(type="join", room="dev", ref="x" * 500)) == Join("dev")


def test_duplicate_rooms_in_hello_collapse_keeping_first_order() -> None:
    raw = line(type="hello", name="a", rooms=["dev", "lobby", "dev", "ops", "lobby"])
    assert decode_client(raw) == Hello("a", ("dev", "lobby", "ops"))


def test_fifty_one_room_entries_that_collapse_to_fifty_are_accepted() -> None:
    rooms = [f"r{i}" for i in range(50)] + ["r0"]
    frame = decode_client(line(type="hello", name="a", rooms=rooms))
    assert isinstance(frame, Hello)
    assert frame.rooms == tuple(rooms[:50])


def test_hello_decodes_while_not_logged_in() -> None:
    assert decode_client(b'{"type":"hello","name":"alice"}', logged_in=False) == Hello("alice")


def test_text_up_to_max_text_after_strip_is_accepted() -> None:
    text = "a" * 4000
    assert decode_client(line(type="send", room="r", text=f"  {text}\n\t ")) == Send("r", text)


def test_newline_and_tab_inside_text_are_kept() -> None:
    assert decode_client(line(type="dm", to="b", text="a\n\tb")) == Dm("b", "a\n\tb")


def test_a_configured_max_text_is_the_one_enforced() -> None:
    limits = Limits(max_text=5)
    assert decode_client(line(type="send", room="r", text="12345"), limits) == Send("r", "12345")
    err = refusal(line(type="send", room="r", text="123456"), limits=limits)
    assert err.code is ErrorCode.BAD_TEXT


# ==========================================================================
# decode_client: refusals


BAD_FRAME_LINES: list[bytes] = [
    b"\xff\xfe",  # invalid UTF-8
    b'{"type":"send","room":"r","text":"\xc3"}',  # invalid UTF-8 inside a string
    b'{"type":"ping","ref":"\xed\xa0\x80"}',  # an encoded surrogate is not UTF-8
    b'{"type":"ping","ref":"\\ud800"}',  # a lone surrogate escape
    b"\xef\xbb\xbf" + b'{"type":"ping"}',  # a BOM is not JSON
    b"",
    b"   ",
    b"not json",
    b'{"type":"ping"',
    b'{"type":"ping"} {"type":"ping"}',
    b'{"type":"ping",}',
    b"{'type':'ping'}",
    b'{"type":"ping","n":NaN}',
    b'{"type":"ping","n":1e999}',
    b'[{"type":"ping"}]',  # JSON array
    b"[]",
    b"42",  # scalars
    b'"ping"',
    b"true",
    b"null",
    b"{}",  # no type
    b'{"Type":"ping"}',
    b'{"type":null}',  # non-string type
    b'{"type":1}',
    b'{"type":["ping"]}',
    b'{"type":{"ping":1}}',
    b'{"type":true}',
]


@pytest.mark.parametrize("raw", BAD_FRAME_LINES, ids=repr)
@pytest.mark.parametrize("logged_in", [True, False])
def test_structurally_bad_lines_are_bad_frame(raw: bytes, logged_in: bool) -> None:
    """Without a JSON object carrying a string type there is nothing to call a frame."""
    err = refusal(raw, logged_in=logged_in)
    assert err.code is ErrorCode.BAD_FRAME
    assert err.ref is None


BAD_FIELD_CASES: list[tuple[dict[str, Any], ErrorCode]] = [
    # ref
    ({"type": "send", "room": "r", "text": "t", "ref": ""}, ErrorCode.BAD_FRAME),
    ({"type": "send", "room": "r", "text": "t", "ref": "x" * 129}, ErrorCode.BAD_FRAME),
    ({"type": "send", "room": "r", "text": "t", "ref": 5}, ErrorCode.BAD_FRAME),
    ({"type": "dm", "to": "b", "text": "t", "ref": ["a"]}, ErrorCode.BAD_FRAME),
    ({"type": "ping", "ref": ""}, ErrorCode.BAD_FRAME),
    ({"type": "ping", "ref": 1.5}, ErrorCode.BAD_FRAME),
    # since
    *[
        ({"type": "hello", "name": "a", "since": since}, ErrorCode.BAD_FRAME)
        for since in [
            [],
            "lobby",
            {"lobby": 5},
            {"lobby": ["e", 1]},
            {"lobby": {"id": 1}},
            {"lobby": {"epoch": "e"}},
            {"lobby": {"epoch": "", "id": 1}},
            {"lobby": {"epoch": "e" * 65, "id": 1}},
            {"lobby": {"epoch": 1, "id": 1}},
            {"lobby": {"epoch": "e", "id": -1}},
            {"lobby": {"epoch": "e", "id": True}},
            {"lobby": {"epoch": "e", "id": 1.0}},
            {"lobby": {"epoch": "e", "id": "1"}},
        ]
    ],
    (
        {"type": "hello", "name": "a", "since": {"Lobby": {"epoch": "e", "id": 1}}},
        ErrorCode.BAD_ROOM,
    ),
    # token
    ({"type": "hello", "name": "a", "token": 5}, ErrorCode.BAD_FRAME),
    ({"type": "hello", "name": "a", "token": "t" * 129}, ErrorCode.BAD_FRAME),
    # history limit / before
    ({"type": "history", "room": "r", "limit": "5"}, ErrorCode.BAD_FRAME),
    ({"type": "history", "room": "r", "limit": 5.0}, ErrorCode.BAD_FRAME),
    ({"type": "history", "room": "r", "limit": True}, ErrorCode.BAD_FRAME),
    ({"type": "history", "room": "r", "limit": [5]}, ErrorCode.BAD_FRAME),
    ({"type": "history", "room": "r", "limit": 0}, ErrorCode.BAD_FRAME),
    ({"type": "history", "room": "r", "limit": 201}, ErrorCode.BAD_FRAME),
    ({"type": "history", "room": "r", "limit": -5}, ErrorCode.BAD_FRAME),
    ({"type": "history", "room": "r", "before": "9"}, ErrorCode.BAD_FRAME),
    ({"type": "history", "room": "r", "before": 9.5}, ErrorCode.BAD_FRAME),
    ({"type": "history", "room": "r", "before": False}, ErrorCode.BAD_FRAME),
    ({"type": "history", "room": "r", "before": 0}, ErrorCode.BAD_FRAME),
    ({"type": "history", "room": "r", "before": -1}, ErrorCode.BAD_FRAME),
    # v1.1: password, since conversations, read, history with
    ({"type": "hello", "name": "a", "password": 5}, ErrorCode.BAD_FRAME),
    ({"type": "hello", "name": "a", "password": ["p"]}, ErrorCode.BAD_FRAME),
    *[
        ({"type": "hello", "name": "a", "since": {key: {"epoch": "e", "id": 1}}},
         ErrorCode.BAD_NAME)
        for key in ["@", "@a b", "@-x", "@" + "a" * 33, "@\u0430lice"]
    ],
    (
        {"type": "hello", "name": "a",
         "since": {"@ALICE": {"epoch": "e", "id": 1}, "@a1ice": {"epoch": "e", "id": 1}}},
        ErrorCode.BAD_FRAME,
    ),
    ({"type": "hello", "name": "a", "since": {"@bob": {"epoch": "e"}}}, ErrorCode.BAD_FRAME),
    ({"type": "register"}, ErrorCode.BAD_PASSWORD),
    ({"type": "register", "password": None}, ErrorCode.BAD_PASSWORD),
    ({"type": "register", "password": 12345678}, ErrorCode.BAD_PASSWORD),
    ({"type": "register", "password": "1234567"}, ErrorCode.BAD_PASSWORD),
    ({"type": "register", "password": "x" * 1025}, ErrorCode.BAD_PASSWORD),
    ({"type": "register", "password": ""}, ErrorCode.BAD_PASSWORD),
    ({"type": "passwd", "new": "12345678"}, ErrorCode.BAD_FRAME),
    ({"type": "passwd", "old": 5, "new": "12345678"}, ErrorCode.BAD_FRAME),
    ({"type": "passwd", "old": "12345678"}, ErrorCode.BAD_PASSWORD),
    ({"type": "passwd", "old": "12345678", "new": "short"}, ErrorCode.BAD_PASSWORD),
    ({"type": "read", "id": 1}, ErrorCode.BAD_FRAME),
    ({"type": "read", "room": "dev", "with": "bob", "id": 1}, ErrorCode.BAD_FRAME),
    ({"type": "read", "room": "Dev", "id": 1}, ErrorCode.BAD_ROOM),
    ({"type": "read", "with": "a b", "id": 1}, ErrorCode.BAD_NAME),
    ({"type": "read", "with": 5, "id": 1}, ErrorCode.BAD_NAME),
    *[({"type": "read", "room": "dev", "id": i}, ErrorCode.BAD_FRAME)
      for i in [None, -1, 1.5, True, "3", [3]]],
    ({"type": "history", "room": "dev", "with": "bob"}, ErrorCode.BAD_FRAME),
    ({"type": "history", "with": "a b"}, ErrorCode.BAD_NAME),
    ({"type": "history", "with": 5}, ErrorCode.BAD_NAME),
    ({"type": "history", "with": "bob", "limit": 0}, ErrorCode.BAD_FRAME),
    ({"type": "history", "with": "bob", "before": "1"}, ErrorCode.BAD_FRAME),
    ({"type": "registered", "name": "a"}, ErrorCode.UNKNOWN_TYPE),
    # unknown type
    ({"type": "message", "room": "r"}, ErrorCode.UNKNOWN_TYPE),
    ({"type": "welcome"}, ErrorCode.UNKNOWN_TYPE),
    ({"type": ""}, ErrorCode.UNKNOWN_TYPE),
    ({"type": "HELLO", "name": "a"}, ErrorCode.UNKNOWN_TYPE),
    ({"type": "ping "}, ErrorCode.UNKNOWN_TYPE),
    ({"type": "x" * 10_000}, ErrorCode.UNKNOWN_TYPE),
]


@pytest.mark.parametrize(("obj", "code"), BAD_FIELD_CASES, ids=lambda v: str(v)[:60])
def test_bad_fields_get_their_exact_code(obj: dict[str, Any], code: ErrorCode) -> None:
    assert refusal(orjson.dumps(obj)).code is code


def test_unknown_type_message_quotes_a_bounded_type() -> None:
    err = refusal(line(type="x" * 10_000))
    assert len(err.message) < 100


# --- names

BAD_NAMES: list[object] = [
    "",
    "a" * 33,
    "al ice",
    " alice",
    "alice ",
    "\u0430lice",  # Cyrillic a
    "ali\u0441e",  # Cyrillic es
    "\uff41lice",  # fullwidth a
    "alic\u00e9",
    "a\x00",
    "a\nb",
    "alice\n",  # a `$` regex would accept this one
    "alice\r",
    "a/b",
    "a@b",
    "a+b",
    5,
    None,
    ["alice"],
    {"n": "alice"},
    True,
    "_",
    "-",
    ".",
    "...",
    "_alice",
]
GOOD_NAMES = ["a", "Z", "0", "a_", "9-", "x.", "a" * 32, "Alice_B-0.9", "a..."]


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_hello_with_a_bad_name_is_bad_name(name: object) -> None:
    assert refusal(line(type="hello", name=name)).code is ErrorCode.BAD_NAME


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_dm_to_a_bad_name_is_bad_name(name: object) -> None:
    err = refusal(line(type="dm", to=name, text="hi", ref="r"))
    assert err.code is ErrorCode.BAD_NAME
    assert err.ref == "r"


def test_hello_without_a_name_is_bad_name() -> None:
    assert refusal(b'{"type":"hello"}').code is ErrorCode.BAD_NAME


def test_dm_without_to_is_bad_name() -> None:
    assert refusal(b'{"type":"dm","text":"hi"}').code is ErrorCode.BAD_NAME


def test_bad_name_is_reported_before_bad_rooms() -> None:
    assert refusal(line(type="hello", name="a b", rooms="lobby")).code is ErrorCode.BAD_NAME


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_good_names_are_accepted_in_hello_and_dm(name: str) -> None:
    assert decode_client(line(type="hello", name=name)) == Hello(name)
    assert decode_client(line(type="dm", to=name, text="x")) == Dm(name, "x")


# --- rooms

BAD_ROOMS: list[object] = [
    "",
    "Lobby",
    "LOBBY",
    "r" * 33,
    "a b",
    "a.b",
    "lobby\n",
    "l\u043ebby",  # Cyrillic o
    "caf\u00e9",
    5,
    None,
    ["lobby"],
    {"room": "lobby"},
]
ROOM_FRAMES = ["join", "leave", "history", "who", "typing"]


@pytest.mark.parametrize("room", BAD_ROOMS, ids=repr)
@pytest.mark.parametrize("kind", ROOM_FRAMES)
def test_room_frames_with_a_bad_room_are_bad_room(kind: str, room: object) -> None:
    assert refusal(line(type=kind, room=room)).code is ErrorCode.BAD_ROOM


@pytest.mark.parametrize("room", BAD_ROOMS, ids=repr)
def test_send_to_a_bad_room_is_bad_room(room: object) -> None:
    assert refusal(line(type="send", room=room, text="hi")).code is ErrorCode.BAD_ROOM


@pytest.mark.parametrize("kind", [*ROOM_FRAMES, "send"])
def test_room_frames_without_a_room_are_bad_room(kind: str) -> None:
    assert refusal(line(type=kind, text="hi")).code is ErrorCode.BAD_ROOM


@pytest.mark.parametrize("room", BAD_ROOMS, ids=repr)
def test_a_bad_room_inside_the_hello_rooms_list_is_bad_room(room: object) -> None:
    err = refusal(line(type="hello", name="a", rooms=["lobby", room]))
    assert err.code is ErrorCode.BAD_ROOM


@pytest.mark.parametrize("rooms", ["lobby", 5, {"lobby": 1}, True], ids=repr)
def test_hello_rooms_that_is_not_a_list_is_bad_room(rooms: object) -> None:
    assert refusal(line(type="hello", name="a", rooms=rooms)).code is ErrorCode.BAD_ROOM


def test_more_than_fifty_rooms_is_bad_room() -> None:
    rooms = [f"r{i}" for i in range(51)]
    assert refusal(line(type="hello", name="a", rooms=rooms)).code is ErrorCode.BAD_ROOM
    assert isinstance(decode_client(line(type="hello", name="a", rooms=rooms[:50])), Hello)


# --- text

BAD_TEXTS: list[object] = [
    "",
    " ",
    " \n\t\r ",
    "\u3000",
    "a" * 4001,
    "  " + "a" * 4001 + "  ",
    "a\x00b",
    "a\x1bb",
    "a\x7fb",
    "a\x85b",
    "a\x9fb",
    "a\x01",
    "a\rb",
    "a\x0bb",
    "\x1b[31mred",
    "\u200b",  # zero-width space: shows as nothing
    "\ufeff",
    " \u200b\u200c\u200d\u2060\u00ad ",
    "abc\u202egnp.exe",  # right-to-left override
    "\u2066x",  # left-to-right isolate
    5,
    None,
    ["hi"],
    {"t": "hi"},
]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("\u200b", "text is empty"),
        ("\ufeff \u2060", "text is empty"),
        ("a\u202eb", "text contains bidirectional formatting character U+202E"
                     " (RIGHT-TO-LEFT OVERRIDE)"),
    ],
)
def test_invisible_and_bidi_text_is_refused_with_a_message_that_says_why(
    text: str, message: str
) -> None:
    raw = line(type="send", room="r", text=text, ref="q")
    assert encode_error(refusal(raw)) == encode(Error(ErrorCode.BAD_TEXT, message, "q"))


@pytest.mark.parametrize("text", BAD_TEXTS, ids=lambda v: repr(v)[:30])
@pytest.mark.parametrize("kind", ["send", "dm"])
def test_bad_text_is_bad_text_with_the_ref_echoed(kind: str, text: object) -> None:
    target = {"room": "r"} if kind == "send" else {"to": "bob"}
    err = refusal(line(type=kind, text=text, ref="q", **target))
    assert err.code is ErrorCode.BAD_TEXT
    assert err.ref == "q"


@pytest.mark.parametrize("kind", ["send", "dm"])
def test_missing_text_is_bad_text(kind: str) -> None:
    target = {"room": "r"} if kind == "send" else {"to": "bob"}
    assert refusal(line(type=kind, **target)).code is ErrorCode.BAD_TEXT


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("  hi  ", "hi"),
        ("\n\thi\t\n", "hi"),
        ("\u3000hi\u2003", "hi"),
        ("\x1fhi\x85", "hi"),  # Python counts these controls as whitespace: stripped, not kept
        ("a \u2028 b", "a \u2028 b"),  # a line separator is not a control character
        ("é" * 4000, "é" * 4000),
    ],
    ids=repr,
)
def test_text_is_stored_stripped(text: str, stored: str) -> None:
    assert decode_client(line(type="send", room="r", text=text)) == Send("r", stored)


# --- not logged in

NOT_LOGGED_IN_LINES: list[bytes] = [
    line(type="send", room="lobby", text="hi"),
    line(type="dm", to="bob", text="hi"),
    line(type="join", room="dev"),
    line(type="leave", room="dev"),
    line(type="history", room="dev"),
    line(type="who", room="dev"),
    line(type="typing", room="dev"),
    b'{"type":"ping"}',
    b'{"type":"bye"}',
    b'{"type":"nope"}',  # unknown
    b'{"type":""}',
    b'{"type":"send"}',  # malformed: no room, no text
    line(type="join", room="NOT A ROOM"),
    line(type="dm", to="a b", text=""),
    line(type="history", room="r", limit="many"),
    line(type="register", password="12345678"),
    line(type="passwd", old="x", new="y"),
    line(type="read", id=-1),
    line(type="history", **{"with": "bob"}),
    line(type="send", room="r", text="t", ref=""),
]


@pytest.mark.parametrize("raw", NOT_LOGGED_IN_LINES, ids=lambda v: v.decode()[:40])
def test_any_other_frame_before_hello_is_not_logged_in(raw: bytes) -> None:
    err = refusal(raw, logged_in=False)
    assert err.code is ErrorCode.NOT_LOGGED_IN
    assert err.ref is None


def test_not_logged_in_echoes_a_valid_ref() -> None:
    err = refusal(line(type="ping", ref="p7"), logged_in=False)
    assert (err.code, err.ref) == (ErrorCode.NOT_LOGGED_IN, "p7")


def test_a_bad_hello_before_login_gets_its_own_code() -> None:
    assert refusal(line(type="hello", name=""), logged_in=False).code is ErrorCode.BAD_NAME


# --- refs in errors


@pytest.mark.parametrize(
    ("obj", "code"),
    [
        ({"type": "send", "room": "BAD", "text": "t"}, ErrorCode.BAD_ROOM),
        ({"type": "send", "room": "r", "text": ""}, ErrorCode.BAD_TEXT),
        ({"type": "dm", "to": "a b", "text": "t"}, ErrorCode.BAD_NAME),
        ({"type": "join", "room": "BAD"}, ErrorCode.BAD_ROOM),
        ({"type": "history", "room": "r", "limit": 0}, ErrorCode.BAD_FRAME),
        ({"type": "whatever"}, ErrorCode.UNKNOWN_TYPE),
    ],
    ids=lambda v: str(v)[:40],
)
def test_a_valid_ref_is_echoed_in_the_error(obj: dict[str, Any], code: ErrorCode) -> None:
    err = refusal(orjson.dumps({**obj, "ref": "my-ref"}))
    assert (err.code, err.ref) == (code, "my-ref")
    assert refusal(orjson.dumps(obj)).ref is None


@pytest.mark.parametrize("ref", ["", "x" * 129, 7, None, ["r"]], ids=repr)
def test_an_invalid_ref_is_not_echoed(ref: object) -> None:
    err = refusal(line(type="send", room="BAD", text="t", ref=ref))
    assert err.ref is None


def test_a_ref_of_128_characters_is_valid_and_echoed() -> None:
    ref = "r" * 128
    assert decode_client(line(type="ping", ref=ref)) == Ping(ref)
    assert refusal(line(type="join", room="BAD", ref=ref)).ref == ref


def test_decode_errors_are_never_frame_too_large() -> None:
    """Only the LineReader decides about size: a decoded line is never fatal."""
    err = refusal(line(type="send", room="r", text="a" * 20_000))
    assert not isinstance(err, FrameTooLarge)


# ==========================================================================
# encode / decode_server


MSG = Message("lobby", 7, "alice", "hi", 1700000000.25)
MSG2 = Message("lobby", 8, "bob", 'say "hi"\n|ok|', 1700000001)
DM = DirectMessage("alice", "bob", "psst", 12.5, 4, "e7")
DM2 = DirectMessage("bob", "alice", "hi", 13, 5, "e7")

SERVER_FRAMES: list[tuple[ServerFrame, bytes]] = [
    (
        Welcome("alice", "gw-1", ("lobby", "dev"), "tok", Limits().announced()),
        b'{"type":"welcome","name":"alice","gateway":"gw-1","rooms":["lobby","dev"],'
        b'"token":"tok","limits":{"max_frame":16384,"max_text":4000,"rate_per_s":20.0,'
        b'"burst":40},"account":false,"dms":[],"read":{}}\n',
    ),
    (
        Welcome("alice", "gw-1", ("dev",), "tok", {"burst": 40}, True,
                (DmSummary("Bob", "e9", 12, 10), DmSummary("carol", "e3", 1, 1)), {"dev": 41}),
        b'{"type":"welcome","name":"alice","gateway":"gw-1","rooms":["dev"],"token":"tok",'
        b'"limits":{"burst":40},"account":true,"dms":['
        b'{"with":"Bob","epoch":"e9","last_id":12,"read":10},'
        b'{"with":"carol","epoch":"e3","last_id":1,"read":1}],"read":{"dev":41}}\n',
    ),
    (
        MSG,
        b'{"type":"message","room":"lobby","id":7,"from":"alice","text":"hi","ts":1700000000.25}\n',
    ),
    (
        History("lobby", "e1", (MSG, MSG2), False),
        b'{"type":"history","room":"lobby","epoch":"e1","messages":['
        b'{"type":"message","room":"lobby","id":7,"from":"alice","text":"hi","ts":1700000000.25},'
        b'{"type":"message","room":"lobby","id":8,"from":"bob","text":"say \\"hi\\"\\n|ok|",'
        b'"ts":1700000001}],"complete":false}\n',
    ),
    (
        History("dev", "e2", (), True),
        b'{"type":"history","room":"dev","epoch":"e2","messages":[],"complete":true}\n',
    ),
    (
        DirectMessage("alice", "bob", "psst", 12.5),
        b'{"type":"dm","from":"alice","to":"bob","text":"psst","ts":12.5}\n',
    ),
    (DM, b'{"type":"dm","from":"alice","to":"bob","text":"psst","ts":12.5,"id":4,"epoch":"e7"}\n'),
    (
        DmHistory("alice", "e7", (DM, DM2), False),
        b'{"type":"history","with":"alice","epoch":"e7","messages":['
        b'{"type":"dm","from":"alice","to":"bob","text":"psst","ts":12.5,"id":4,"epoch":"e7"},'
        b'{"type":"dm","from":"bob","to":"alice","text":"hi","ts":13,"id":5,"epoch":"e7"}],'
        b'"complete":false}\n',
    ),
    (
        DmHistory("Bob", "e1", (), True),
        b'{"type":"history","with":"Bob","epoch":"e1","messages":[],"complete":true}\n',
    ),
    (Registered("alice"), b'{"type":"registered","name":"alice"}\n'),
    (
        Error(ErrorCode.AUTH_FAILED, "wrong password", "h"),
        b'{"type":"error","code":"auth_failed","message":"wrong password","ref":"h"}\n',
    ),
    (Ack("r1", 5), b'{"type":"ack","ref":"r1","id":5}\n'),
    (Ack("r1"), b'{"type":"ack","ref":"r1"}\n'),
    (Joined("dev", "bob"), b'{"type":"joined","room":"dev","name":"bob"}\n'),
    (Left("dev", "bob"), b'{"type":"left","room":"dev","name":"bob"}\n'),
    (TypingNotice("dev", "bob"), b'{"type":"typing","room":"dev","name":"bob"}\n'),
    (WhoList("dev", ("alice", "bob")), b'{"type":"who","room":"dev","names":["alice","bob"]}\n'),
    (WhoList("dev", ()), b'{"type":"who","room":"dev","names":[]}\n'),
    (Pong(), b'{"type":"pong"}\n'),
    (Pong("p"), b'{"type":"pong","ref":"p"}\n'),
    (
        Error(ErrorCode.BAD_TEXT, "text is empty", "r"),
        b'{"type":"error","code":"bad_text","message":"text is empty","ref":"r"}\n',
    ),
    (
        Error(ErrorCode.RATE_LIMITED, "slow down"),
        b'{"type":"error","code":"rate_limited","message":"slow down"}\n',
    ),
    *[(Goodbye(r), b'{"type":"bye","reason":"%s"}\n' % r.value.encode()) for r in ByeReason],
]


@pytest.mark.parametrize(("frame", "wire"), SERVER_FRAMES, ids=lambda v: str(v)[:40])
def test_server_frame_encodes_to_the_exact_line(frame: ServerFrame, wire: bytes) -> None:
    assert encode(frame) == wire


@pytest.mark.parametrize(("frame", "wire"), SERVER_FRAMES, ids=lambda v: str(v)[:40])
def test_server_frame_round_trips(frame: ServerFrame, wire: bytes) -> None:
    assert decode_server(wire) == frame
    (got,) = feed_bytewise(LineReader(1 << 20), wire)
    assert decode_server(got) == frame


CLIENT_FRAMES: list[tuple[ClientFrame, bytes]] = [
    (Hello("alice"), b'{"type":"hello","name":"alice","rooms":["lobby"],"since":{}}\n'),
    (
        Hello("alice", ("dev",), {"dev": Position("e", 3)}, "tok"),
        b'{"type":"hello","name":"alice","rooms":["dev"],'
        b'"since":{"dev":{"epoch":"e","id":3}},"token":"tok"}\n',
    ),
    (Send("dev", "hi"), b'{"type":"send","room":"dev","text":"hi"}\n'),
    (Send("dev", "hi", "r"), b'{"type":"send","room":"dev","text":"hi","ref":"r"}\n'),
    (Dm("bob", "hi", "r"), b'{"type":"dm","to":"bob","text":"hi","ref":"r"}\n'),
    (Join("dev"), b'{"type":"join","room":"dev"}\n'),
    (Leave("dev"), b'{"type":"leave","room":"dev"}\n'),
    (HistoryQuery("dev"), b'{"type":"history","room":"dev","limit":50}\n'),
    (HistoryQuery("dev", 9, 10), b'{"type":"history","room":"dev","before":9,"limit":10}\n'),
    (Who("dev"), b'{"type":"who","room":"dev"}\n'),
    (Typing("dev"), b'{"type":"typing","room":"dev"}\n'),
    (Ping(), b'{"type":"ping"}\n'),
    (Ping("p"), b'{"type":"ping","ref":"p"}\n'),
    (Bye(), b'{"type":"bye"}\n'),
    # v1.1
    (
        Hello("alice", ("dev",), {"@bob": Position("e", 3)}, "tok", "pass word"),
        b'{"type":"hello","name":"alice","rooms":["dev"],'
        b'"since":{"@bob":{"epoch":"e","id":3}},"token":"tok","password":"pass word"}\n',
    ),
    (Register("12345678"), b'{"type":"register","password":"12345678"}\n'),
    (Passwd("old", "12345678"), b'{"type":"passwd","old":"old","new":"12345678"}\n'),
    (Read(room="dev", id=4), b'{"type":"read","room":"dev","id":4}\n'),
    (Read(peer="bob", id=0), b'{"type":"read","with":"bob","id":0}\n'),
    (DmHistoryQuery("bob"), b'{"type":"history","with":"bob","limit":50}\n'),
    (DmHistoryQuery("bob", 9, 10), b'{"type":"history","with":"bob","before":9,"limit":10}\n'),
]


@pytest.mark.parametrize(("frame", "wire"), CLIENT_FRAMES, ids=lambda v: str(v)[:40])
def test_client_frame_encodes_to_the_exact_line_and_back(frame: ClientFrame, wire: bytes) -> None:
    assert encode(frame) == wire
    assert decode_client(wire[:-1]) == frame


def test_to_dict_puts_type_first() -> None:
    assert next(iter(to_dict(Joined("dev", "bob")))) == "type"
    assert list(to_dict(MSG)) == ["type", "room", "id", "from", "text", "ts"]


def test_encode_error_gives_the_error_frame_of_an_exception() -> None:
    exc = ProtocolError(ErrorCode.NO_SUCH_USER, "no user 'zed'", "r9")
    assert encode_error(exc) == (
        b'{"type":"error","code":"no_such_user","message":"no user \'zed\'","ref":"r9"}\n'
    )
    assert encode_error(FrameTooLarge()) == (
        b'{"type":"error","code":"frame_too_large","message":"frame too large"}\n'
    )


def test_an_error_frame_turns_back_into_the_same_exception() -> None:
    frame = decode_server(encode_error(ProtocolError(ErrorCode.NAME_TAKEN, "taken", "r")))
    assert isinstance(frame, Error)
    exc = frame.to_exception()
    assert (exc.code, exc.message, exc.ref) == (ErrorCode.NAME_TAKEN, "taken", "r")


@pytest.mark.parametrize(
    "raw",
    [
        b'{"type":"message","room":"r"}',  # missing fields
        b'{"type":"history","room":"r","epoch":"e","messages":5,"complete":true}',
        b'{"type":"history","room":"r","epoch":"e","messages":["x"],"complete":true}',
        b'{"type":"history","room":"r","epoch":"e","messages":[{}],"complete":true}',
        b'{"type":"history","room":"r","epoch":"e","messages":[]}',
        b'{"type":"error","code":"no_such_code","message":"m"}',
        b'{"type":"error","code":["bad_text"],"message":"m"}',
        b'{"type":"bye","reason":"tired"}',
        b'{"type":"bye"}',
        b'{"type":"who","room":"r","names":5}',
        b'{"type":"welcome","name":"a"}',
        b'{"type":"ack"}',
        b'{"type":"dm","from":"a"}',
        b'{"type":"history","with":"a","epoch":"e","messages":[{"type":"dm"}],"complete":true}',
        b'{"type":"history","with":"a","epoch":"e","messages":5,"complete":true}',
        b'{"type":"history","with":"a","epoch":"e","messages":[]}',
        b'{"type":"welcome","name":"a","gateway":"g","rooms":[],"token":"t","limits":{},'
        b'"dms":[{"with":"b"}]}',
        b'{"type":"welcome","name":"a","gateway":"g","rooms":[],"token":"t","limits":{},'
        b'"dms":5}',
        b'{"type":"welcome","name":"a","gateway":"g","rooms":[],"token":"t","limits":{},'
        b'"read":[["dev",1]]}',
        b'{"type":"registered"}',
        b'{"type":"joined","room":"r"}',
        b'{"type":"left","name":"a"}',
        b'{"type":"typing"}',
        b"not json",
        b"[]",
        b'{"type":5}',
    ],
    ids=lambda v: v.decode()[:50],
)
def test_malformed_server_lines_are_bad_frame(raw: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_server(raw)
    assert info.value.code is ErrorCode.BAD_FRAME


def test_unknown_server_type_is_unknown_type() -> None:
    with pytest.raises(ProtocolError) as info:
        decode_server(b'{"type":"hello","name":"a"}')
    assert info.value.code is ErrorCode.UNKNOWN_TYPE


def test_decode_server_ignores_unknown_fields() -> None:
    assert decode_server(b'{"type":"pong","extra":[1,2],"ref":"x"}') == Pong("x")


# ==========================================================================
# message_parts, history_line(s)


TRICKY_TEXTS = [
    "hi",
    'say "hi"',
    "back\\slash \\n not a newline",
    "line one\nline two\n\ttabbed",
    "a|b||c|",
    '"},"id":99,"x":{"',
    "é 漢字 😀 \u2028 \u200b \ufeff",
    "</script><script>",
    "{}[]:,",
]


@pytest.mark.parametrize("text", TRICKY_TEXTS, ids=repr)
@pytest.mark.parametrize("ts", [0, 1.5, 1700000000.123456, 1e20])
def test_message_parts_around_the_id_equal_the_encoded_message(text: str, ts: float) -> None:
    prefix, suffix = message_parts("lobby", "alice", text, ts)
    for msg_id in (1, 42, 2**53):
        wire = prefix + str(msg_id).encode() + suffix
        assert wire + b"\n" == encode(Message("lobby", msg_id, "alice", text, ts))
        assert decode_server(wire) == Message("lobby", msg_id, "alice", text, ts)


def _stored(messages: Iterable[Message]) -> list[bytes]:
    """Messages as the broker stores them: encoded, without newline."""
    return [encode(m)[:-1] for m in messages]


@pytest.mark.parametrize("complete", [True, False])
def test_history_line_equals_the_encoded_history_frame(complete: bool) -> None:
    msgs = (MSG, MSG2)
    assert history_line("lobby", "e1", _stored(msgs), complete) == encode(
        History("lobby", "e1", msgs, complete)
    )
    assert history_line("lobby", "e1", [], complete) == encode(History("lobby", "e1", (), complete))


def test_history_line_accepts_any_iterable() -> None:
    msgs = (MSG, MSG2)
    assert history_line("lobby", "e1", iter(_stored(msgs)), True) == encode(
        History("lobby", "e1", msgs, True)
    )


def test_history_lines_without_messages_is_one_empty_frame() -> None:
    assert history_lines("dev", "e", [], False) == [encode(History("dev", "e", (), False))]


def test_history_lines_under_the_cap_is_one_frame() -> None:
    msgs = [Message("dev", i, "a", "x" * i, float(i)) for i in range(1, 20)]
    assert history_lines("dev", "e", _stored(msgs), False) == [
        encode(History("dev", "e", tuple(msgs), False))
    ]


def _check_split(
    room: str, epoch: str, msgs: list[Message], complete: bool, max_line: int
) -> list[History]:
    """Every message once, in order; lines under the cap; greedy; only the first incomplete."""
    stored = _stored(msgs)
    lines = history_lines(room, epoch, stored, complete, max_line)
    overhead = len(history_line(room, epoch, [], complete))
    frames: list[History] = []
    for wire in lines:
        assert wire.endswith(b"\n") and wire.count(b"\n") == 1
        frame = decode_server(wire)
        assert isinstance(frame, History)
        assert (frame.room, frame.epoch) == (room, epoch)
        if len(frame.messages) > 1:
            assert len(wire) <= overhead + max_line - 1
        frames.append(frame)
    assert [m for f in frames for m in f.messages] == msgs
    assert frames[0].complete is complete
    assert all(f.complete for f in frames[1:])
    sizes = [sum(len(s) + 1 for s in _stored(f.messages)) for f in frames]
    for size, nxt in zip(sizes, frames[1:], strict=False):
        assert size + len(_stored(nxt.messages[:1])[0]) + 1 > max_line  # could not take more
    return frames


@pytest.mark.parametrize("complete", [True, False])
def test_history_lines_split_a_long_backlog(complete: bool) -> None:
    msgs = [Message("dev", i, "u", 'q"|\n' * (i % 13) + "é", 1.5 * i) for i in range(1, 200)]
    frames = _check_split("dev", "ep", msgs, complete, 600)
    assert len(frames) > 5


def test_history_lines_put_an_oversized_message_on_a_line_of_its_own() -> None:
    msgs = [
        Message("dev", 1, "u", "a", 1.0),
        Message("dev", 2, "u", "b" * 500, 2.0),
        Message("dev", 3, "u", "c", 3.0),
    ]
    frames = _check_split("dev", "ep", msgs, False, 200)
    assert [len(f.messages) for f in frames] == [1, 1, 1]


def test_history_lines_default_cap_is_half_the_client_line_limit() -> None:
    text = "x" * 4000
    msgs = [Message("dev", i, "u", text, 1.0) for i in range(1, 301)]  # about 1.2 MB
    lines = history_lines("dev", "e", _stored(msgs), True)
    assert len(lines) == 3
    assert all(len(wire) <= (1 << 19) + 100 for wire in lines)


# ==========================================================================
# v1.1: accounts, conversations, read state


def test_a_v1_welcome_decodes_with_the_v1_1_fields_at_their_defaults() -> None:
    raw = (b'{"type":"welcome","name":"a","gateway":"g","rooms":["lobby"],"token":"t",'
           b'"limits":{"burst":40}}')
    assert decode_server(raw) == Welcome("a", "g", ("lobby",), "t", {"burst": 40}, False, (), {})


def test_a_v1_dm_decodes_without_id_and_epoch_and_encodes_as_v1() -> None:
    raw = b'{"type":"dm","from":"a","to":"b","text":"t","ts":1.5}\n'
    frame = decode_server(raw)
    assert frame == DirectMessage("a", "b", "t", 1.5, None, None)
    assert encode(frame) == raw


def test_the_ack_of_a_stored_dm_carries_its_id() -> None:
    assert decode_server(b'{"type":"ack","ref":"d1","id":4}\n') == Ack("d1", 4)


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("\uff30\uff41\uff53\uff53word", "Password"),  # fullwidth letters
        ("\u212bngstr\u00f6m!", "\u00c5ngstr\u00f6m!"),  # Angstrom sign -> A with ring
        ("\ufb01\ufb01\ufb01\ufb01", "fifififi"),  # 4 ligatures, 8 characters after NFKC
        ("e\u0301t\u00e9 2024!", "\u00e9t\u00e9 2024!"),  # combining accent composed
    ],
    ids=repr,
)
def test_passwords_are_nfkc_normalised_and_measured_after_it(typed: str, stored: str) -> None:
    assert decode_client(line(type="register", password=typed)) == Register(stored)
    assert decode_client(line(type="passwd", old=typed, new=typed)) == Passwd(stored, stored)
    hello = decode_client(line(type="hello", name="a", password=typed), logged_in=False)
    assert hello == Hello("a", password=stored)


def test_a_password_too_long_only_after_nfkc_is_bad_password() -> None:
    typed = "\ufdfa" * 100  # 100 characters; NFKC spells each out in 18
    err = refusal(line(type="register", password=typed, ref="r"))
    assert (err.code, err.ref) == (ErrorCode.BAD_PASSWORD, "r")


def test_a_password_refusal_never_quotes_the_password() -> None:
    for raw in [line(type="register", password="hunter2"),
                line(type="passwd", old="hunter2", new="hunter3")]:
        err = refusal(raw, limits=None)
        assert err.code is ErrorCode.BAD_PASSWORD
        assert "hunter" not in err.message and "hunter" not in repr(err)
        assert b"hunter" not in encode_error(err)
    assert refusal(line(type="register", password="x")).message == (
        "password must be 8 to 1024 characters"
    )


@pytest.mark.parametrize(
    "raw",
    [line(type="register", password="12345678"), line(type="passwd", old="a", new="12345678"),
     line(type="read", room="dev", id=1), line(type="history", **{"with": "bob"}),
     line(type="register")],
    ids=lambda v: v.decode()[:40],
)
def test_v1_1_requests_before_hello_are_not_logged_in(raw: bytes) -> None:
    assert refusal(raw, logged_in=False).code is ErrorCode.NOT_LOGGED_IN


def test_a_hello_since_of_rooms_and_conversations_round_trips_byte_by_byte() -> None:
    hello = Hello("carol", ("dev",), {"dev": Position("e", 4), "@Bob": Position("f", 9)})
    (got,) = feed_bytewise(LineReader(MAX), encode(hello))
    assert decode_client(got, logged_in=False) == hello


DMS = [DirectMessage("a", "b", f"m{i}" * i, float(i), i, "e") for i in range(1, 30)]


@pytest.mark.parametrize("complete", [True, False])
def test_dm_history_line_equals_the_encoded_conversation_history(complete: bool) -> None:
    stored = [encode(m)[:-1] for m in DMS[:3]]
    assert dm_history_line("Bob", "e", stored, complete) == encode(
        DmHistory("Bob", "e", tuple(DMS[:3]), complete)
    )
    assert dm_history_lines("Bob", "e", stored, complete) == [
        encode(DmHistory("Bob", "e", tuple(DMS[:3]), complete))
    ]


def test_dm_history_lines_split_a_long_conversation_and_only_the_first_is_incomplete() -> None:
    stored = [encode(m)[:-1] for m in DMS]
    lines = dm_history_lines("bob", "e", stored, False, max_line=300)
    frames = [decode_server(wire) for wire in lines]
    assert len(frames) > 3
    assert all(isinstance(f, DmHistory) and f.peer == "bob" for f in frames)
    assert [m for f in frames for m in f.messages] == DMS  # type: ignore[union-attr]
    assert [f.complete for f in frames] == [False] + [True] * (len(frames) - 1)  # type: ignore[union-attr]
    assert all(len(wire) < 300 + len(dm_history_line("bob", "e", [], False)) for wire in lines)
