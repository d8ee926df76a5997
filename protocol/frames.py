"""Frame types of PROTOCOL.md v1.1 as frozen, slotted data classes.

Client frames (client -> gateway) and server frames (gateway -> client) are
separate unions because several type names (``history``, ``dm``, ``who``,
``typing``, ``bye``) mean a request one way and an answer the other. Each
class validates the fields PROTOCOL.md fixes on construction, so no frame
that exists can be invalid; limits that a gateway may configure (``max_text``)
are checked by the codec, which knows them.

Wire names that are Python keywords get another attribute name: ``from`` is
``sender``, ``with`` is ``peer``. Password fields never appear in a ``repr``.
A conversation's ``history`` (``with`` instead of ``room``) has classes of
its own, ``DmHistoryQuery`` and ``DmHistory``, so a room's never lacks its room.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from protocol.errors import ErrorCode, ProtocolError
from protocol.limits import DEFAULT_HISTORY_LIMIT, MAX_HISTORY_LIMIT, MAX_ROOMS_PER_SESSION
from protocol.names import (
    CONVERSATION_PREFIX,
    LOBBY,
    check_name,
    check_password,
    check_ref,
    check_room,
    check_since_key,
    name_key,
)


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
    """The last message a client saw in a room or conversation: resume point for ``since``."""

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
    """Log in. ``since`` keys are rooms, or ``"@" + name`` for conversations (v1.1)."""

    name: str
    rooms: tuple[str, ...] = (LOBBY,)
    since: dict[str, Position] = field(default_factory=dict)
    token: str | None = None
    password: str | None = field(default=None, repr=False)

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
        peers: list[str] = []
        for key in self.since:
            if check_since_key(key).startswith(CONVERSATION_PREFIX):
                peers.append(name_key(key[len(CONVERSATION_PREFIX) :]))
        if len(set(peers)) != len(peers):
            raise ProtocolError(ErrorCode.BAD_FRAME, "since names one conversation twice")
        if self.token is not None and (not isinstance(self.token, str) or len(self.token) > 128):
            raise ProtocolError(ErrorCode.BAD_FRAME, "token must be a string")
        if self.password is not None and not isinstance(self.password, str):
            raise ProtocolError(ErrorCode.BAD_FRAME, "password must be a string")


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


def _check_range(before: int | None, limit: int) -> None:
    if before is not None and (type(before) is not int or before < 1):
        raise ProtocolError(ErrorCode.BAD_FRAME, "before must be a positive integer")
    if type(limit) is not int or not 1 <= limit <= MAX_HISTORY_LIMIT:
        raise ProtocolError(
            ErrorCode.BAD_FRAME, f"limit must be an integer from 1 to {MAX_HISTORY_LIMIT}"
        )


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    room: str
    before: int | None = None
    limit: int = DEFAULT_HISTORY_LIMIT

    def __post_init__(self) -> None:
        check_room(self.room)
        _check_range(self.before, self.limit)


@dataclass(frozen=True, slots=True)
class DmHistoryQuery:
    """``history`` with ``with`` (v1.1): scroll-back in the conversation with ``peer``."""

    peer: str  # "with" on the wire: a keyword in Python
    before: int | None = None
    limit: int = DEFAULT_HISTORY_LIMIT

    def __post_init__(self) -> None:
        check_name(self.peer, "with")
        _check_range(self.before, self.limit)


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


@dataclass(frozen=True, slots=True)
class Register:
    """Make the current (guest) name an account (v1.1). ``password`` as typed or NFKC."""

    password: str = field(repr=False)

    def __post_init__(self) -> None:
        check_password(self.password)


@dataclass(frozen=True, slots=True)
class Passwd:
    """Change the account's password (v1.1). A wrong ``old`` is the gateway's to judge."""

    old: str = field(repr=False)
    new: str = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.old, str):
            raise ProtocolError(ErrorCode.BAD_FRAME, "old must be a string")
        check_password(self.new, "new")


@dataclass(frozen=True, slots=True, kw_only=True)
class Read:
    """How far the user has read a room or (``peer``) a conversation (v1.1)."""

    room: str | None = None
    peer: str | None = None  # "with" on the wire
    id: int

    def __post_init__(self) -> None:
        if (self.room is None) == (self.peer is None):
            raise ProtocolError(ErrorCode.BAD_FRAME, "read takes exactly one of room and with")
        if self.room is not None:
            check_room(self.room)
        else:
            check_name(self.peer, "with")
        if type(self.id) is not int or self.id < 0:
            raise ProtocolError(ErrorCode.BAD_FRAME, "id must be a non-negative integer")


ClientFrame = (
    Hello | Send | Dm | Join | Leave | HistoryQuery | DmHistoryQuery | Who | Typing | Ping | Bye
    | Register | Passwd | Read
)

CLIENT_TYPES: dict[type[Any], str] = {
    Hello: "hello",
    Send: "send",
    Dm: "dm",
    Join: "join",
    Leave: "leave",
    HistoryQuery: "history",
    DmHistoryQuery: "history",
    Who: "who",
    Typing: "typing",
    Ping: "ping",
    Bye: "bye",
    Register: "register",
    Passwd: "passwd",
    Read: "read",
}


# --------------------------------------------------------------------------
# gateway -> client


@dataclass(frozen=True, slots=True)
class DmSummary:
    """One entry of ``welcome``'s ``dms``: a conversation, its newest id and how far it was read."""

    peer: str  # "with" on the wire
    epoch: str
    last_id: int
    read: int


@dataclass(frozen=True, slots=True)
class Welcome:
    name: str
    gateway: str
    rooms: tuple[str, ...]
    token: str
    limits: dict[str, float | int]
    account: bool = False
    dms: tuple[DmSummary, ...] = ()
    read: dict[str, int] = field(default_factory=dict)


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
    """A dm; ``id`` and ``epoch`` (v1.1) place it in its conversation, None from v1 gateways."""

    sender: str
    to: str
    text: str
    ts: float
    id: int | None = None
    epoch: str | None = None


@dataclass(frozen=True, slots=True)
class DmHistory:
    """``history`` of the conversation with ``peer`` (v1.1), oldest first."""

    peer: str  # "with" on the wire
    epoch: str
    messages: tuple[DirectMessage, ...]
    complete: bool


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


@dataclass(frozen=True, slots=True)
class Registered:
    """Answer to ``register`` and ``passwd`` (v1.1): ``name`` is an account now."""

    name: str


ServerFrame = (
    Welcome | History | DmHistory | Message | DirectMessage | Ack | Joined | Left | TypingNotice
    | WhoList | Pong | Error | Goodbye | Registered
)

SERVER_TYPES: dict[type[Any], str] = {
    Welcome: "welcome",
    History: "history",
    DmHistory: "history",
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
    Registered: "registered",
}
