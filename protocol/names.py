"""Validation of user names, room names, message text and refs.

Pure functions that return the normalised value or raise ``ProtocolError``
with the code PROTOCOL.md names for that field.
"""

from __future__ import annotations

import re
import unicodedata

from protocol.errors import ErrorCode, ProtocolError
from protocol.limits import MAX_NAME, MAX_REF, MAX_ROOM

_USER_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,%d}" % MAX_NAME, re.ASCII)
_ROOM_NAME = re.compile(r"[a-z0-9_\-]{1,%d}" % MAX_ROOM, re.ASCII)
_ALLOWED_CONTROLS = frozenset("\n\t")

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
    for ch in text:
        if ch < " " or "\x7f" <= ch <= "\x9f":
            if ch not in _ALLOWED_CONTROLS and unicodedata.category(ch) == "Cc":
                raise ProtocolError(
                    ErrorCode.BAD_TEXT, f"text contains control character U+{ord(ch):04X}"
                )
    return text


def check_ref(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_REF:
        raise ProtocolError(ErrorCode.BAD_FRAME, f"ref must be a string of 1 to {MAX_REF} characters")
    return value
