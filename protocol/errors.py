"""The one exception tree of ChatService.

Every failure the protocol can name is an error *code* from PROTOCOL.md;
each carries one, so a gateway can turn any refusal into an ``error`` frame
and a client can turn any ``error`` frame back into an exception::

    ChatError                   root of everything we raise on purpose
    ├── ProtocolError           a refusal with a PROTOCOL.md error code
    │   └── FrameTooLarge       fatal: the byte stream cannot be resynchronised
    └── ConnectionLost          (client side) the transport went away
"""

from __future__ import annotations

import enum


class ErrorCode(enum.StrEnum):
    """Error codes of PROTOCOL.md, version 1.1 (the last two are new in 1.1)."""

    BAD_FRAME = "bad_frame"
    FRAME_TOO_LARGE = "frame_too_large"
    UNKNOWN_TYPE = "unknown_type"
    NOT_LOGGED_IN = "not_logged_in"
    ALREADY_LOGGED_IN = "already_logged_in"
    BAD_NAME = "bad_name"
    NAME_TAKEN = "name_taken"
    BAD_ROOM = "bad_room"
    NOT_IN_ROOM = "not_in_room"
    BAD_TEXT = "bad_text"
    RATE_LIMITED = "rate_limited"
    NO_SUCH_USER = "no_such_user"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"
    AUTH_FAILED = "auth_failed"
    BAD_PASSWORD = "bad_password"


class ChatError(Exception):
    """Root of every exception ChatService raises on purpose."""


class ProtocolError(ChatError):
    """A request refused with a PROTOCOL.md error code.

    ``ref`` is the request's ``ref`` when it had a valid one, so the refusal
    can be matched to the request.
    """

    def __init__(self, code: ErrorCode, message: str, ref: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref

    def with_ref(self, ref: str | None) -> ProtocolError:
        return type(self)(self.code, self.message, ref) if ref != self.ref else self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code.value!r}, {self.message!r}, ref={self.ref!r})"


class FrameTooLarge(ProtocolError):
    """A line exceeded ``max_frame``: the connection must be closed."""

    def __init__(
        self,
        code: ErrorCode = ErrorCode.FRAME_TOO_LARGE,
        message: str = "frame too large",
        ref: str | None = None,
    ) -> None:
        super().__init__(code, message, ref)


class ConnectionLost(ChatError):
    """The transport closed or failed; raised on the client side."""
