"""Bytes <-> frames, with no I/O (PROTOCOL.md v1.1).

``LineReader`` cuts a byte stream into lines and enforces the frame cap;
``decode_client``/``decode_server`` turn one line into a validated frame or
raise ``ProtocolError`` with the code PROTOCOL.md names; ``encode`` turns a
frame into one newline-terminated line. Server frames for room messages can
also be built from pre-encoded parts (``message_parts``, ``history_line``), so
a gateway encodes each message once, not once per recipient.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import orjson

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
from protocol.limits import DEFAULT_HISTORY_LIMIT, MAX_SERVER_LINE, Limits
from protocol.names import (
    LOBBY,
    check_name,
    check_password,
    check_ref,
    check_room,
    check_text,
    normalise_password,
)

NEWLINE = b"\n"


class LineReader:
    """Cuts a byte stream into lines of at most ``max_line`` bytes, newline included.

    Memory is capped: once a feed's lines are consumed, fewer than ``max_line``
    bytes stay buffered; a longer line raises ``FrameTooLarge`` as soon as it
    reaches the cap, after which the stream is unusable.
    """

    __slots__ = ("_buffer", "_max_line", "_scan_from")

    def __init__(self, max_line: int) -> None:
        self._buffer = bytearray()
        self._max_line = max_line
        self._scan_from = 0

    def feed(self, data: bytes) -> Iterator[bytes]:
        """Buffer received bytes; return an iterator over the complete lines (no newline).

        The bytes are kept at once, even if the iterator is never run, and a
        line is consumed only when the iterator yields it: a caller that stops
        early gets the remaining lines from its next ``feed``, never twice.
        """
        self._buffer += data
        return self._lines()

    def _lines(self) -> Iterator[bytes]:
        buffer = self._buffer
        while True:
            end = buffer.find(NEWLINE, self._scan_from)
            if end < 0:
                break
            if end + 1 > self._max_line:
                raise FrameTooLarge()
            line = bytes(buffer[:end])
            del buffer[: end + 1]  # cheap: bytearray drops its head without copying
            self._scan_from = 0
            yield line
        if len(buffer) >= self._max_line:
            raise FrameTooLarge()
        self._scan_from = len(buffer)

    @property
    def pending(self) -> int:
        """Bytes buffered and not yet yielded: a line begun but not finished."""
        return len(self._buffer)


# --------------------------------------------------------------------------
# decoding


def _load_object(line: bytes) -> dict[str, Any]:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(ErrorCode.BAD_FRAME, "frame is not valid UTF-8 JSON") from exc
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.BAD_FRAME, "frame must be a JSON object")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(ErrorCode.BAD_FRAME, "frame needs a string field 'type'")
    return obj


def _int_or_none(value: object, what: str) -> int | None:
    if value is None:
        return None
    if type(value) is not int:
        raise ProtocolError(ErrorCode.BAD_FRAME, f"{what} must be an integer")
    return value


def _parse_since(value: object) -> dict[str, Position]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProtocolError(
            ErrorCode.BAD_FRAME, "since must be an object room or @name -> {epoch, id}"
        )
    since: dict[str, Position] = {}
    for room, pos in value.items():
        if not isinstance(pos, dict):
            raise ProtocolError(ErrorCode.BAD_FRAME, "since entries must be {epoch, id} objects")
        since[room] = Position(pos.get("epoch"), pos.get("id"))  # type: ignore[arg-type]
    return since


def _password(value: object, what: str) -> str | None:
    """A password field that a gateway compares, not one it sets: any string, NFKC."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ProtocolError(ErrorCode.BAD_FRAME, f"{what} must be a string")
    return normalise_password(value)


def _parse_rooms(value: object) -> tuple[str, ...]:
    if value is None:
        return (LOBBY,)
    if not isinstance(value, list):
        raise ProtocolError(ErrorCode.BAD_ROOM, "rooms must be a list of room names")
    # check before deduplicating: a list or object entry is unhashable
    return tuple(dict.fromkeys(check_room(room) for room in value))  # drop repeats, keep order


def decode_client(
    line: bytes, limits: Limits | None = None, *, logged_in: bool = True
) -> ClientFrame:
    """One client line -> a validated client frame, or ``ProtocolError``.

    The error carries the frame's ``ref`` when it had a valid one, so the
    refusal can echo it. Before login (``logged_in=False``) every frame but
    ``hello`` is refused with ``not_logged_in``, whatever else is wrong with it.
    """
    obj = _load_object(line)
    kind = obj["type"]
    try:
        ref = check_ref(obj.get("ref"))
    except ProtocolError:
        ref = None
    if not logged_in and kind != "hello":
        raise ProtocolError(ErrorCode.NOT_LOGGED_IN, "log in with hello first", ref)
    try:
        return _build_client(kind, obj, limits or _DEFAULT_LIMITS)
    except ProtocolError as exc:
        raise exc.with_ref(ref) from None


_DEFAULT_LIMITS = Limits()


def _build_client(kind: str, obj: dict[str, Any], limits: Limits) -> ClientFrame:
    if kind == "send":
        return Send(obj.get("room"), check_text(obj.get("text"), limits.max_text), obj.get("ref"))  # type: ignore[arg-type]
    if kind == "ping":
        return Ping(obj.get("ref"))
    if kind == "typing":
        return Typing(obj.get("room"))  # type: ignore[arg-type]
    if kind == "dm":
        return Dm(obj.get("to"), check_text(obj.get("text"), limits.max_text), obj.get("ref"))  # type: ignore[arg-type]
    if kind == "hello":
        return Hello(
            name=check_name(obj.get("name")),  # first, so a bad name is what the user hears
            rooms=_parse_rooms(obj.get("rooms")),
            since=_parse_since(obj.get("since")),
            token=obj.get("token"),
            password=_password(obj.get("password"), "password"),
        )
    if kind == "join":
        return Join(obj.get("room"))  # type: ignore[arg-type]
    if kind == "leave":
        return Leave(obj.get("room"))  # type: ignore[arg-type]
    if kind == "history":
        limit = _int_or_none(obj.get("limit"), "limit")
        before = _int_or_none(obj.get("before"), "before")
        limit = DEFAULT_HISTORY_LIMIT if limit is None else limit
        if obj.get("with") is None:
            return HistoryQuery(obj.get("room"), before, limit)  # type: ignore[arg-type]
        if obj.get("room") is not None:
            raise ProtocolError(ErrorCode.BAD_FRAME, "history takes room or with, not both")
        return DmHistoryQuery(obj["with"], before, limit)
    if kind == "who":
        return Who(obj.get("room"))  # type: ignore[arg-type]
    if kind == "bye":
        return Bye()
    if kind == "read":
        return Read(room=obj.get("room"), peer=obj.get("with"), id=obj.get("id"))  # type: ignore[arg-type]
    if kind == "register":
        return Register(check_password(obj.get("password")))
    if kind == "passwd":
        old = _password(obj.get("old"), "old")
        if old is None:
            raise ProtocolError(ErrorCode.BAD_FRAME, "old must be a string")
        return Passwd(old, check_password(obj.get("new"), "new"))
    raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown frame type {kind[:40]!r}")


def _message_from(obj: dict[str, Any]) -> Message:
    return Message(obj["room"], obj["id"], obj["from"], obj["text"], obj["ts"])


def _dm_from(obj: dict[str, Any]) -> DirectMessage:
    return DirectMessage(
        obj["from"], obj["to"], obj["text"], obj["ts"], obj.get("id"), obj.get("epoch")
    )


def _summary_from(obj: dict[str, Any]) -> DmSummary:
    return DmSummary(obj["with"], obj["epoch"], obj["last_id"], obj["read"])


def _object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"{what} must be an object")
    return value


def decode_server(line: bytes) -> ServerFrame:
    """One gateway line -> a server frame (client side). Trusts the gateway's shapes."""
    obj = _load_object(line)
    kind = obj["type"]
    try:
        return _build_server(kind, obj)
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(ErrorCode.BAD_FRAME, f"malformed {kind!r} frame: {exc}") from exc


def _build_server(kind: str, obj: dict[str, Any]) -> ServerFrame:
    if kind == "message":
        return _message_from(obj)
    if kind == "ack":
        return Ack(obj["ref"], obj.get("id"))
    if kind == "history" and "with" in obj:
        return DmHistory(
            obj["with"],
            obj["epoch"],
            tuple(_dm_from(m) for m in obj["messages"]),
            bool(obj["complete"]),
        )
    if kind == "history":
        return History(
            obj["room"],
            obj["epoch"],
            tuple(_message_from(m) for m in obj["messages"]),
            bool(obj["complete"]),
        )
    if kind == "dm":
        return _dm_from(obj)
    if kind == "joined":
        return Joined(obj["room"], obj["name"])
    if kind == "left":
        return Left(obj["room"], obj["name"])
    if kind == "typing":
        return TypingNotice(obj["room"], obj["name"])
    if kind == "who":
        return WhoList(obj["room"], tuple(obj["names"]))
    if kind == "pong":
        return Pong(obj.get("ref"))
    if kind == "error":
        return Error(ErrorCode(obj["code"]), obj["message"], obj.get("ref"))
    if kind == "bye":
        return Goodbye(ByeReason(obj["reason"]))
    if kind == "welcome":
        return Welcome(
            obj["name"],
            obj["gateway"],
            tuple(obj["rooms"]),
            obj["token"],
            obj["limits"],
            bool(obj.get("account", False)),
            tuple(_summary_from(d) for d in obj.get("dms", ())),
            dict(_object(obj.get("read", {}), "read")),
        )
    if kind == "registered":
        return Registered(obj["name"])
    raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown frame type {kind[:40]!r}")


# --------------------------------------------------------------------------
# encoding


def _message_dict(m: Message) -> dict[str, Any]:
    return {
        "type": "message",
        "room": m.room,
        "id": m.id,
        "from": m.sender,
        "text": m.text,
        "ts": m.ts,
    }


_WIRE_NAMES = {"sender": "from", "peer": "with"}
"""Attribute -> wire field, where the wire name is a Python keyword."""
_OMITTED_WHEN_NONE = frozenset(
    {"ref", "token", "id", "before", "password", "epoch", "room", "peer"}
)
"""Optional fields: absent on the wire rather than null."""


def to_dict(frame: ServerFrame | ClientFrame | DmSummary) -> dict[str, Any]:
    """The JSON object of a frame, ``type`` first (a ``dms`` entry has no type)."""
    if isinstance(frame, Message):
        return _message_dict(frame)
    if isinstance(frame, History | DmHistory):
        head = {"room": frame.room} if isinstance(frame, History) else {"with": frame.peer}
        return {
            "type": "history",
            **head,
            "epoch": frame.epoch,
            "messages": [to_dict(m) for m in frame.messages],
            "complete": frame.complete,
        }
    kind = SERVER_TYPES.get(type(frame)) or CLIENT_TYPES.get(type(frame))
    out: dict[str, Any] = {} if kind is None else {"type": kind}
    for name in frame.__slots__:
        value = getattr(frame, name)
        if value is None and name in _OMITTED_WHEN_NONE:
            continue
        if isinstance(frame, Hello) and name == "since":
            value = {key: {"epoch": p.epoch, "id": p.id} for key, p in value.items()}
        elif isinstance(frame, Welcome) and name == "dms":
            value = [to_dict(d) for d in value]
        elif isinstance(value, tuple):
            value = list(value)
        out[_WIRE_NAMES.get(name, name)] = value
    return out


def encode(frame: ServerFrame | ClientFrame) -> bytes:
    """One frame -> one line, newline included."""
    return orjson.dumps(to_dict(frame)) + NEWLINE


def encode_error(exc: ProtocolError) -> bytes:
    return encode(Error.of(exc))


def message_parts(room: str, sender: str, text: str, ts: float) -> tuple[bytes, bytes]:
    """A ``message`` line cut around its id, which only the broker knows.

    ``prefix + str(id).encode() + suffix`` equals ``encode(Message(...))``
    without its newline, so the broker can store and publish the final bytes.
    """
    head = orjson.dumps({"type": "message", "room": room})
    tail = orjson.dumps({"from": sender, "text": text, "ts": ts})
    return head[:-1] + b',"id":', b"," + tail[1:]


def history_lines(
    room: str,
    epoch: str,
    messages: Sequence[bytes],
    complete: bool,
    max_line: int = MAX_SERVER_LINE // 2,
) -> list[bytes]:
    """``history`` lines of at most about ``max_line`` bytes each, oldest first.

    A long backlog is cut into several frames so none passes the client's
    line limit; only the first can be incomplete, the rest continue it.
    """
    return _history_lines({"room": room}, epoch, messages, complete, max_line)


def dm_history_lines(
    peer: str,
    epoch: str,
    messages: Sequence[bytes],
    complete: bool,
    max_line: int = MAX_SERVER_LINE // 2,
) -> list[bytes]:
    """``history_lines`` of the conversation with ``peer``, from encoded ``dm`` objects."""
    return _history_lines({"with": peer}, epoch, messages, complete, max_line)


def history_line(room: str, epoch: str, messages: Iterable[bytes], complete: bool) -> bytes:
    """A ``history`` line from already-encoded ``message`` objects, oldest first."""
    return _history_line({"room": room}, epoch, messages, complete)


def dm_history_line(peer: str, epoch: str, messages: Iterable[bytes], complete: bool) -> bytes:
    """A conversation's ``history`` line from already-encoded ``dm`` objects, oldest first."""
    return _history_line({"with": peer}, epoch, messages, complete)


def _history_lines(
    where: dict[str, str],
    epoch: str,
    messages: Sequence[bytes],
    complete: bool,
    max_line: int,
) -> list[bytes]:
    chunks: list[list[bytes]] = [[]]
    size = 0
    for m in messages:
        if chunks[-1] and size + len(m) + 1 > max_line:
            chunks.append([])
            size = 0
        chunks[-1].append(m)
        size += len(m) + 1
    return [
        _history_line(where, epoch, chunk, complete if i == 0 else True)
        for i, chunk in enumerate(chunks)
    ]


def _history_line(
    where: dict[str, str], epoch: str, messages: Iterable[bytes], complete: bool
) -> bytes:
    head = orjson.dumps({"type": "history", **where, "epoch": epoch})
    return b"".join(
        (
            head[:-1],
            b',"messages":[',
            b",".join(messages),
            b'],"complete":',
            b"true" if complete else b"false",
            b"}\n",
        )
    )


__all__ = [
    "MAX_SERVER_LINE",
    "LineReader",
    "decode_client",
    "decode_server",
    "dm_history_line",
    "dm_history_lines",
    "encode",
    "encode_error",
    "history_line",
    "history_lines",
    "message_parts",
    "to_dict",
]
