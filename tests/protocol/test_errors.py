"""protocol.errors: the error codes of PROTOCOL.md and the one exception tree."""

from __future__ import annotations

import builtins

import pytest

from protocol import errors
from protocol.errors import ChatError, ConnectionLost, ErrorCode, FrameTooLarge, ProtocolError

PROTOCOL_MD_CODES = [
    "bad_frame",
    "frame_too_large",
    "unknown_type",
    "not_logged_in",
    "already_logged_in",
    "bad_name",
    "name_taken",
    "bad_room",
    "not_in_room",
    "bad_text",
    "rate_limited",
    "no_such_user",
    "unavailable",
    "internal",
    # v1.1
    "auth_failed",
    "bad_password",
]


def test_error_codes_are_exactly_those_of_protocol_md() -> None:
    assert [code.value for code in ErrorCode] == PROTOCOL_MD_CODES


def test_error_codes_compare_and_format_as_their_wire_strings() -> None:
    assert isinstance(ErrorCode.BAD_TEXT, str)
    assert str(ErrorCode.BAD_TEXT) == "bad_text"
    assert f"{ErrorCode.BAD_TEXT}" == "bad_text"
    assert ErrorCode("rate_limited") is ErrorCode.RATE_LIMITED


def test_the_tree_has_one_root_of_our_own() -> None:
    assert issubclass(ChatError, Exception)
    assert issubclass(ProtocolError, ChatError)
    assert issubclass(FrameTooLarge, ProtocolError)
    assert issubclass(ConnectionLost, ChatError)
    assert not issubclass(ConnectionLost, ProtocolError)
    assert not issubclass(ChatError, (OSError, ValueError))


def test_no_exception_name_shadows_a_builtin() -> None:
    ours = [name for name in vars(errors) if isinstance(getattr(errors, name), type)]
    assert ours
    assert not set(ours) & set(dir(builtins)) - {"enum"}


def test_protocol_error_carries_code_message_and_ref() -> None:
    exc = ProtocolError(ErrorCode.BAD_ROOM, "no such room name", "r1")
    assert (exc.code, exc.message, exc.ref) == (ErrorCode.BAD_ROOM, "no such room name", "r1")
    assert str(exc) == "no such room name"
    assert repr(exc) == "ProtocolError('bad_room', 'no such room name', ref='r1')"


def test_ref_defaults_to_none() -> None:
    assert ProtocolError(ErrorCode.INTERNAL, "oops").ref is None


def test_with_the_same_ref_returns_the_same_exception() -> None:
    exc = ProtocolError(ErrorCode.BAD_TEXT, "empty", "r")
    assert exc.with_ref("r") is exc
    plain = ProtocolError(ErrorCode.BAD_TEXT, "empty")
    assert plain.with_ref(None) is plain


@pytest.mark.parametrize(("before", "after"), [(None, "r2"), ("r1", "r2"), ("r1", None)])
def test_with_another_ref_returns_a_copy_and_leaves_the_original(
    before: str | None, after: str | None
) -> None:
    exc = ProtocolError(ErrorCode.BAD_TEXT, "empty", before)
    copy = exc.with_ref(after)
    assert copy is not exc
    assert type(copy) is ProtocolError
    assert (copy.code, copy.message, copy.ref) == (ErrorCode.BAD_TEXT, "empty", after)
    assert exc.ref == before


def test_frame_too_large_has_its_code_and_keeps_its_type_through_with_ref() -> None:
    exc = FrameTooLarge()
    assert (exc.code, exc.message, exc.ref) == (ErrorCode.FRAME_TOO_LARGE, "frame too large", None)
    copy = exc.with_ref("r")
    assert type(copy) is FrameTooLarge
    assert (copy.code, copy.ref) == (ErrorCode.FRAME_TOO_LARGE, "r")
    assert repr(copy) == "FrameTooLarge('frame_too_large', 'frame too large', ref='r')"


def test_protocol_errors_are_caught_as_chat_errors() -> None:
    with pytest.raises(ChatError):
        raise FrameTooLarge()
    with pytest.raises(ChatError):
        raise ConnectionLost("peer went away")
