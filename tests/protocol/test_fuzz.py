"""Properties of the codec under generated input (hypothesis).

Decoding never fails with anything but ``ProtocolError``, whatever arrives;
a reader cut at random places gives the same lines as one fed whole; every
valid frame survives encode -> decode unchanged.
"""

from __future__ import annotations

import itertools
import string
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.codec import (
    LineReader,
    decode_client,
    decode_server,
    encode,
    history_line,
    history_lines,
    message_parts,
)
from protocol.errors import ErrorCode, FrameTooLarge, ProtocolError
from protocol.frames import (
    CLIENT_TYPES,
    SERVER_TYPES,
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
from protocol.names import INVISIBLE_CHARACTERS, check_ref, name_key, normalise_password

# no example database: the tier leaves nothing behind in the repository
# Budgets keep the whole tier under a few seconds on a shared 2-core box.
FUZZ = settings(
    deadline=None, max_examples=150, database=None, suppress_health_check=[HealthCheck.too_slow]
)
PER_KIND = settings(
    deadline=None, max_examples=30, database=None, suppress_health_check=[HealthCheck.too_slow]
)
SERVER = settings(
    deadline=None, max_examples=100, database=None, suppress_health_check=[HealthCheck.too_slow]
)
QUICK = settings(
    deadline=None, max_examples=60, database=None, suppress_health_check=[HealthCheck.too_slow]
)

CLIENT_CODES = {
    ErrorCode.BAD_FRAME,
    ErrorCode.UNKNOWN_TYPE,
    ErrorCode.NOT_LOGGED_IN,
    ErrorCode.BAD_NAME,
    ErrorCode.BAD_ROOM,
    ErrorCode.BAD_TEXT,
    ErrorCode.BAD_PASSWORD,
}

# --------------------------------------------------------------------------
# strategies

unicode = st.characters(codec="utf-8")  # no lone surrogates: UTF-8 JSON cannot carry them
any_text = st.text(unicode, max_size=40)

names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}", fullmatch=True)
rooms = st.from_regex(r"[a-z0-9_\-]{1,32}", fullmatch=True)
BIDI_CONTROLS = "".join(map(chr, [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]))
texts = (
    st.text(
        st.characters(codec="utf-8", exclude_categories=["Cc"], exclude_characters=BIDI_CONTROLS)
        | st.sampled_from("\n\t"),
        max_size=80,
    )
    .map(str.strip)
    .filter(lambda t: t.strip(INVISIBLE_CHARACTERS + string.whitespace) != "")
)
refs = st.none() | st.text(unicode, min_size=1, max_size=128)
ids = st.integers(0, 2**63 - 1)
timestamps = st.floats(allow_nan=False, allow_infinity=False) | st.integers(0, 2**40)
positions = st.builds(Position, st.text(unicode, min_size=1, max_size=64), ids)
passwords = (
    st.text(unicode, min_size=8, max_size=40)
    .map(normalise_password)
    .filter(lambda p: 8 <= len(p) <= 1024)
)
dms = st.builds(DirectMessage, names, names, texts, timestamps, st.none() | ids,
                st.none() | st.text(unicode, min_size=1, max_size=64))

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | any_text
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=6,
)


def near(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly plausible values, sometimes anything: reaches deep into validation."""
    return st.one_of(valid, valid, json_values)


CLIENT_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "name": near(names | any_text),
    "to": near(names | any_text),
    "room": near(rooms | any_text),
    "rooms": near(st.lists(near(rooms), max_size=6)),
    "since": near(
        st.dictionaries(
            rooms | any_text | names.map("@".__add__),
            near(st.fixed_dictionaries({}, optional={"epoch": near(any_text), "id": near(ids)})),
            max_size=3,
        )
    ),
    "token": near(any_text),
    "text": near(any_text),
    "ref": near(any_text),
    "before": near(st.integers(-3, 2**63 - 1)),
    "limit": near(st.integers(-3, 300)),
    "password": near(any_text | st.text(unicode, min_size=6, max_size=12)),
    "old": near(any_text),
    "new": near(st.text(unicode, min_size=6, max_size=12)),
    "with": near(names | any_text),
    "id": near(st.integers(-3, 2**63 - 1)),
}
CLIENT_KINDS = [*sorted(CLIENT_TYPES.values()), None]


def client_objects(kind: str | None) -> st.SearchStrategy[dict[str, Any]]:
    """Objects of one client type (None: any type at all), so each type is searched deep."""
    kinds = json_values | any_text if kind is None else st.just(kind)
    return st.fixed_dictionaries({"type": kinds}, optional=CLIENT_FIELDS)


messages = st.builds(Message, rooms, ids, names, texts, timestamps)
backlog_messages = st.builds(
    Message, st.just("dev"), ids, st.just("u"), st.text(unicode, max_size=60), timestamps
)
SERVER_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "name": near(names),
    "gateway": near(any_text),
    "rooms": near(st.lists(rooms, max_size=3)),
    "token": near(any_text),
    "limits": near(st.dictionaries(any_text, st.integers(0, 2**31), max_size=3)),
    "room": near(rooms),
    "epoch": near(any_text),
    "messages": near(st.lists(messages.map(lambda m: orjson.loads(encode(m))), max_size=3)),
    "complete": near(st.booleans()),
    "id": near(ids),
    "from": near(names),
    "to": near(names),
    "text": near(texts),
    "ts": near(timestamps),
    "ref": near(any_text),
    "names": near(st.lists(names, max_size=3)),
    "code": near(st.sampled_from([c.value for c in ErrorCode])),
    "message": near(any_text),
    "reason": near(st.sampled_from([r.value for r in ByeReason])),
    "with": near(names),
    "account": near(st.booleans()),
    "dms": near(st.lists(st.fixed_dictionaries(
        {"with": names, "epoch": any_text, "last_id": ids, "read": ids}), max_size=2)),
    "read": near(st.dictionaries(rooms, ids, max_size=2)),
}
SERVER_KINDS = [*sorted(SERVER_TYPES.values()), None]


def server_objects(kind: str | None) -> st.SearchStrategy[dict[str, Any]]:
    """Objects of one server type (None: any type at all)."""
    kinds = json_values | any_text if kind is None else st.just(kind)
    return st.fixed_dictionaries({"type": kinds}, optional=SERVER_FIELDS)


client_frames: st.SearchStrategy[ClientFrame] = st.one_of(
    st.builds(
        Hello,
        names,
        st.lists(rooms, unique=True, max_size=8).map(tuple),
        st.dictionaries(rooms, positions, max_size=3)
        | st.dictionaries(names.map(name_key).map("@".__add__), positions, max_size=3),
        st.none() | st.text(unicode, max_size=128),
        st.none() | st.text(unicode, max_size=40).map(normalise_password),
    ),
    st.builds(Register, passwords),
    st.builds(Passwd, st.text(unicode, max_size=20).map(normalise_password), passwords),
    st.builds(Read, room=rooms, id=ids),
    st.builds(Read, peer=names, id=ids),
    st.builds(DmHistoryQuery, names, st.none() | st.integers(1, 2**63 - 1), st.integers(1, 200)),
    st.builds(Send, rooms, texts, refs),
    st.builds(Dm, names, texts, refs),
    st.builds(Join, rooms),
    st.builds(Leave, rooms),
    st.builds(HistoryQuery, rooms, st.none() | st.integers(1, 2**63 - 1), st.integers(1, 200)),
    st.builds(Who, rooms),
    st.builds(Typing, rooms),
    st.builds(Ping, refs),
    st.just(Bye()),
)

server_frames: st.SearchStrategy[ServerFrame] = st.one_of(
    st.builds(
        Welcome,
        names,
        any_text,
        st.lists(rooms, max_size=4).map(tuple),
        any_text,
        st.dictionaries(
            any_text,
            st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False),
        ),
    ),
    st.builds(History, rooms, any_text, st.lists(messages, max_size=4).map(tuple), st.booleans()),
    messages,
    dms,
    st.builds(DmHistory, names, any_text, st.lists(dms, max_size=3).map(tuple), st.booleans()),
    st.builds(Registered, names),
    st.builds(
        Welcome,
        names,
        any_text,
        st.lists(rooms, max_size=2).map(tuple),
        any_text,
        st.dictionaries(any_text, st.integers(0, 9), max_size=2),
        st.booleans(),
        st.lists(st.builds(DmSummary, names, any_text, ids, ids), max_size=2).map(tuple),
        st.dictionaries(rooms, ids, max_size=2),
    ),
    st.builds(Ack, st.text(unicode, min_size=1, max_size=128), st.none() | ids),
    st.builds(Joined, rooms, names),
    st.builds(Left, rooms, names),
    st.builds(TypingNotice, rooms, names),
    st.builds(WhoList, rooms, st.lists(names, max_size=4).map(tuple)),
    st.builds(Pong, refs),
    st.builds(Error, st.sampled_from(ErrorCode), any_text, refs),
    st.builds(Goodbye, st.sampled_from(ByeReason)),
)


def valid_ref(obj: dict[str, Any]) -> str | None:
    try:
        return check_ref(obj.get("ref"))
    except ProtocolError:
        return None


# --------------------------------------------------------------------------
# decoding never fails but with ProtocolError


@FUZZ
@given(st.binary(max_size=200), st.booleans())
def test_decode_client_on_arbitrary_bytes_raises_only_protocol_error(
    raw: bytes, logged_in: bool
) -> None:
    try:
        frame = decode_client(raw, logged_in=logged_in)
    except ProtocolError as exc:
        assert exc.code in CLIENT_CODES
    else:
        assert type(frame) in CLIENT_TYPES


@pytest.mark.parametrize("kind", CLIENT_KINDS)
@PER_KIND
@given(data=st.data(), logged_in=st.booleans())
def test_decode_client_on_frame_like_objects_raises_only_protocol_error(
    kind: str | None, data: st.DataObject, logged_in: bool
) -> None:
    """Refusals carry a client code, echo a valid ref, and put login before all else."""
    obj = data.draw(client_objects(kind))
    try:
        frame = decode_client(orjson.dumps(obj), logged_in=logged_in)
    except ProtocolError as exc:
        assert not isinstance(exc, FrameTooLarge)
        assert exc.code in CLIENT_CODES
        if isinstance(obj["type"], str):
            assert exc.ref == valid_ref(obj)
            if not logged_in and obj["type"] != "hello":
                assert exc.code is ErrorCode.NOT_LOGGED_IN
        else:
            assert exc.code is ErrorCode.BAD_FRAME
    else:
        assert CLIENT_TYPES[type(frame)] == obj["type"]
        assert logged_in or isinstance(frame, Hello)
        # encode(decode(x)) is stable: decoding it again gives the same frame
        assert decode_client(encode(frame)[:-1]) == frame


@SERVER
@given(data=st.data(), kind=st.sampled_from(SERVER_KINDS))
def test_decode_server_on_frame_like_objects_raises_only_protocol_error(
    data: st.DataObject, kind: str | None
) -> None:
    obj = data.draw(server_objects(kind))
    try:
        frame = decode_server(orjson.dumps(obj))
    except ProtocolError as exc:
        assert exc.code in {ErrorCode.BAD_FRAME, ErrorCode.UNKNOWN_TYPE}
    else:
        assert SERVER_TYPES[type(frame)] == obj["type"]


@QUICK
@given(st.binary(max_size=200))
def test_decode_server_on_arbitrary_bytes_raises_only_protocol_error(raw: bytes) -> None:
    try:
        decode_server(raw)
    except ProtocolError as exc:
        assert exc.code in {ErrorCode.BAD_FRAME, ErrorCode.UNKNOWN_TYPE}


# --------------------------------------------------------------------------
# round trips


@QUICK
@given(client_frames)
def test_valid_client_frames_survive_encode_and_decode(frame: ClientFrame) -> None:
    wire = encode(frame)
    assert wire.endswith(b"\n") and wire.count(b"\n") == 1
    assert decode_client(wire[:-1]) == frame
    if isinstance(frame, Hello):
        assert decode_client(wire[:-1], logged_in=False) == frame


@QUICK
@given(server_frames)
def test_server_frames_survive_encode_and_decode(frame: ServerFrame) -> None:
    wire = encode(frame)
    assert wire.endswith(b"\n") and wire.count(b"\n") == 1
    assert decode_server(wire) == frame


@QUICK
@given(any_text, any_text, st.text(unicode, max_size=200), timestamps, ids)
def test_message_parts_equal_the_encoded_message(
    room: str, sender: str, text: str, ts: float, msg_id: int
) -> None:
    prefix, suffix = message_parts(room, sender, text, ts)
    assert prefix + str(msg_id).encode() + suffix + b"\n" == encode(
        Message(room, msg_id, sender, text, ts)
    )


# --------------------------------------------------------------------------
# LineReader under random splits

line_bodies = st.lists(st.binary(max_size=60).map(lambda b: b.replace(b"\n", b"")), max_size=12)
tails = st.binary(max_size=30).map(lambda b: b.replace(b"\n", b""))
cut_points = st.lists(st.integers(0, 10_000), max_size=20)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@FUZZ
@given(line_bodies, tails, cut_points)
def test_random_splits_give_the_same_lines(
    lines: list[bytes], tail: bytes, cuts: list[int]
) -> None:
    data = b"".join(line + b"\n" for line in lines) + tail
    reader = LineReader(64)
    got = [line for chunk in split(data, cuts) for line in reader.feed(chunk)]
    assert got == lines
    assert reader.pending == len(tail)


@FUZZ
@given(line_bodies, tails, cut_points, st.integers(1, 40))
def test_the_cap_refuses_exactly_the_first_oversized_line_however_it_is_split(
    lines: list[bytes], tail: bytes, cuts: list[int], max_line: int
) -> None:
    """Lines before the first one over the cap come out; then FrameTooLarge, never later."""
    data = b"".join(line + b"\n" for line in lines) + tail
    too_long = [i for i, line in enumerate(lines) if len(line) + 1 > max_line]
    if len(tail) >= max_line:
        too_long.append(len(lines))
    reader = LineReader(max_line)
    got: list[bytes] = []
    try:
        for chunk in split(data, cuts):
            got.extend(reader.feed(chunk))
            assert reader.pending < max_line
    except FrameTooLarge:
        assert too_long
        assert got == lines[: too_long[0]]
    else:
        assert not too_long
        assert got == lines


# --------------------------------------------------------------------------
# history batches


@QUICK
@given(st.lists(backlog_messages, max_size=12), st.booleans(), st.integers(1, 1500))
def test_history_lines_keep_every_message_once_in_order_under_the_cap(
    msgs: list[Message], complete: bool, max_line: int
) -> None:
    stored = [encode(m)[:-1] for m in msgs]
    lines = history_lines("dev", "ep", stored, complete, max_line)
    overhead = len(history_line("dev", "ep", [], complete))
    frames = [decode_server(wire) for wire in lines]
    assert all(isinstance(f, History) for f in frames)
    assert [m for f in frames for m in f.messages] == msgs  # type: ignore[union-attr]
    assert frames[0].complete is complete  # type: ignore[union-attr]
    assert all(f.complete for f in frames[1:])  # type: ignore[union-attr]
    for wire, frame in zip(lines, frames, strict=True):
        if len(frame.messages) > 1:  # type: ignore[union-attr]
            assert len(wire) < overhead + max_line
        else:
            assert frame.messages or len(lines) == 1  # type: ignore[union-attr]
