"""Validation of user names, room names, message text and refs.

Pure functions that return the normalised value or raise ``ProtocolError``
with the code PROTOCOL.md names for that field.
"""

from __future__ import annotations

import re

from protocol.errors import ErrorCode, ProtocolError
from protocol.limits import MAX_NAME, MAX_REF, MAX_ROOM

_USER_NAME = re.compile(rf"[A-Za-z0-9_.\-]{{1,{MAX_NAME}}}", re.ASCII)
_ROOM_NAME = re.compile(rf"[a-z0-9_\-]{{1,{MAX_ROOM}}}", re.ASCII)
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
"""Unicode category Cc (C0, DEL, C1) except newline and tab; one C-speed scan per text."""

LOBBY = "lobby"


def check_name(value: object, field: str = "name") -> str:
    if not isinstance(value, str) or not _USER_NAME.fullmatch(value):
        raise ProtocolError(
            ErrorCode.BAD_NAME,
            f"{field} must be 1 to {MAX_NAME} characters from A-Z a-z 0-9 _ - .",
        )
    return value


def name_key(name: str) -> str:
    """Names are unique case-insensitively: this is the form compared."""
    return name.lower()


def check_room(value: object) -> str:
    if not isinstance(value, str) or not _ROOM_NAME.fullmatch(value):
        raise ProtocolError(
            ErrorCode.BAD_ROOM, f"room must be 1 to {MAX_ROOM} characters from a-z 0-9 _ -"
        )
    return value


def check_text(value: object, max_text: int) -> str:
    """Strip surrounding whitespace, then refuse empty, long or control-laden text."""
    if not isinstance(value, str):
        raise ProtocolError(ErrorCode.BAD_TEXT, "text must be a string")
    text = value.strip()
    if not text:
        raise ProtocolError(ErrorCode.BAD_TEXT, "text is empty")
    if len(text) > max_text:
        raise ProtocolError(ErrorCode.BAD_TEXT, f"text is longer than {max_text} characters")
    bad = _CONTROL.search(text)
    if bad is not None:
        raise ProtocolError(
            ErrorCode.BAD_TEXT, f"text contains control character U+{ord(bad.group()):04X}"
        )
    return text


def check_ref(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_REF:
        raise ProtocolError(
            ErrorCode.BAD_FRAME, f"ref must be a string of 1 to {MAX_REF} characters"
        )
    return value
