"""Frame types of PROTOCOL.md v1 as frozen, slotted data classes.

Client frames (client -> gateway) and server frames (gateway -> client) are
separate unions because several type names (``history``, ``dm``, ``who``,
``typing``, ``bye``) mean a request one way and an answer the other. Each
class validates the fields PROTOCOL.md fixes on construction, so no frame
that exists can be invalid; limits that a gateway may configure (``max_text``)
are checked by the codec, which knows them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from protocol.errors import ErrorCode, ProtocolError
from protocol.limits import DEFAULT_HISTORY_LIMIT, MAX_HISTORY_LIMIT, MAX_ROOMS_PER_SESSION
from protocol.names import LOBBY, check_name, check_ref, check_room


class ByeReason(enum.StrEnum):
    SHUTDOWN = "shutdown"
    IDLE = "idle"
    SLOW_CONSUMER = "slow_consumer"
    REPLACED = "replaced"
    CLIENT = "client"
    ABUSE = "abuse"
    """v1.1: disconnected for repeated refused frames."""


@dataclass(frozen=True, slots=True)
class Position:
    """The last message a client saw in a room: resume point for ``since``."""

    epoch: str
    id: int

    def __post_init__(self) -> None:
        if not isinstance(self.epoch, str) or not self.epoch or len(self.epoch) > 64:
            raise ProtocolError(ErrorCode.BAD_FRAME, "since epoch must be a non-empty string")
        if type(self.id) is not int or self.id < 0:
            raise ProtocolError(ErrorCode.BAD_FRAME, "since id must be a non-negative integer")


# --------------------------------------------------------------------------
# client -> gateway


@dataclass(frozen=True, slots=True)
class Hello:
    name: str
    rooms: tuple[str, ...] = (LOBBY,)
    since: dict[str, Position] = field(default_factory=dict)
    token: str | None = None

    def __post_init__(self) -> None:
        check_name(self.name)
        for room in self.rooms:
            check_room(room)
        if len(set(self.rooms)) != len(self.rooms):
            raise ProtocolError(ErrorCode.BAD_ROOM, "rooms must not repeat")
        if len(self.rooms) > MAX_ROOMS_PER_SESSION:
            raise ProtocolError(
                ErrorCode.BAD_ROOM, f"a session is in at most {MAX_ROOMS_PER_SESSION} rooms"
            )
        for room in self.since:
            check_room(room)
        if self.token is not None and (not isinstance(self.token, str) or len(self.token) > 128):
            raise ProtocolError(ErrorCode.BAD_FRAME, "token must be a string")


@dataclass(frozen=True, slots=True)
class Send:
    room: str
    text: str
    ref: str | None = None

    def __post_init__(self) -> None:
        check_room(self.room)
        check_ref(self.ref)


@dataclass(frozen=True, slots=True)
class Dm:
    to: str
    text: str
    ref: str | None = None

    def __post_init__(self) -> None:
        check_name(self.to, "to")
        check_ref(self.ref)


@dataclass(frozen=True, slots=True)
class Join:
    room: str

    def __post_init__(self) -> None:
        check_room(self.room)


@dataclass(frozen=True, slots=True)
class Leave:
    room: str

    def __post_init__(self) -> None:
        check_room(self.room)


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    room: str
    before: int | None = None
    limit: int = DEFAULT_HISTORY_LIMIT

    def __post_init__(self) -> None:
        check_room(self.room)
        if self.before is not None and (type(self.before) is not int or self.before < 1):
            raise ProtocolError(ErrorCode.BAD_FRAME, "before must be a positive integer")
        if type(self.limit) is not int or not 1 <= self.limit <= MAX_HISTORY_LIMIT:
            raise ProtocolError(
                ErrorCode.BAD_FRAME, f"limit must be an integer from 1 to {MAX_HISTORY_LIMIT}"
            )


@dataclass(frozen=True, slots=True)
class Who:
    room: str

    def __post_init__(self) -> None:
        check_room(self.room)


@dataclass(frozen=True, slots=True)
class Typing:
    room: str

    def __post_init__(self) -> None:
        check_room(self.room)


@dataclass(frozen=True, slots=True)
class Ping:
    ref: str | None = None

    def __post_init__(self) -> None:
        check_ref(self.ref)


@dataclass(frozen=True, slots=True)
class Bye:
    pass


ClientFrame = Hello | Send | Dm | Join | Leave | HistoryQuery | Who | Typing | Ping | Bye

CLIENT_TYPES: dict[type[Any], str] = {
    Hello: "hello",
    Send: "send",
    Dm: "dm",
    Join: "join",
    Leave: "leave",
    HistoryQuery: "history",
    Who: "who",
    Typing: "typing",
    Ping: "ping",
    Bye: "bye",
}


# --------------------------------------------------------------------------
# gateway -> client


@dataclass(frozen=True, slots=True)
class Welcome:
    name: str
    gateway: str
    rooms: tuple[str, ...]
    token: str
    limits: dict[str, float | int]


@dataclass(frozen=True, slots=True)
class Message:
    room: str
    id: int
    sender: str  # "from" on the wire: a keyword in Python
    text: str
    ts: float


@dataclass(frozen=True, slots=True)
class History:
    room: str
    epoch: str
    messages: tuple[Message, ...]
    complete: bool


@dataclass(frozen=True, slots=True)
class DirectMessage:
    sender: str
    to: str
    text: str
    ts: float


@dataclass(frozen=True, slots=True)
class Ack:
    ref: str
    id: int | None = None


@dataclass(frozen=True, slots=True)
class Joined:
    room: str
    name: str


@dataclass(frozen=True, slots=True)
class Left:
    room: str
    name: str


@dataclass(frozen=True, slots=True)
class TypingNotice:
    room: str
    name: str


@dataclass(frozen=True, slots=True)
class WhoList:
    room: str
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Pong:
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Error:
    code: ErrorCode
    message: str
    ref: str | None = None

    @classmethod
    def of(cls, exc: ProtocolError) -> Error:
        return cls(exc.code, exc.message, exc.ref)

    def to_exception(self) -> ProtocolError:
        return ProtocolError(self.code, self.message, self.ref)


@dataclass(frozen=True, slots=True)
class Goodbye:
    reason: ByeReason


ServerFrame = (
    Welcome | History | Message | DirectMessage | Ack | Joined | Left | TypingNotice | WhoList
    | Pong | Error | Goodbye
)

SERVER_TYPES: dict[type[Any], str] = {
    Welcome: "welcome",
    History: "history",
    Message: "message",
    DirectMessage: "dm",
    Ack: "ack",
    Joined: "joined",
    Left: "left",
    TypingNotice: "typing",
    WhoList: "who",
    Pong: "pong",
    Error: "error",
    Goodbye: "bye",
}
