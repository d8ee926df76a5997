"""Validation of user names, room names, message text, refs and passwords.

Pure functions that return the normalised value or raise ``ProtocolError``
with the code PROTOCOL.md names for that field. ``name_key`` is the one form
in which user names are compared, stored and looked up.
"""

from __future__ import annotations

import re
import unicodedata

from protocol.errors import ErrorCode, ProtocolError
from protocol.limits import MAX_NAME, MAX_PASSWORD, MAX_REF, MAX_ROOM, MIN_PASSWORD

_USER_NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.\-]{{0,{MAX_NAME - 1}}}", re.ASCII)
_ROOM_NAME = re.compile(rf"[a-z0-9_\-]{{1,{MAX_ROOM}}}", re.ASCII)

NAME_RULE = (
    f"1 to {MAX_NAME} characters from A-Z a-z 0-9 _ - . starting with a letter or digit"
)
"""What a user name may contain, in the words every ``bad_name`` refusal uses."""

_LOOK_ALIKES = str.maketrans({"0": "o", "1": "l", "i": "l"})
_LOOK_ALIKE_PAIRS = (("rn", "m"), ("vv", "w"))
"""The confusable skeleton of ``name_key``, applied after case folding.

Each class below is one character of the key, so any two names that differ
only inside a class are the same user:

- ``0 O o``      (digit zero and the letter o)
- ``1 I i L l``  (digit one, both cases of i and l: ``I`` folds to ``i``, so
                  ``i`` must join ``l`` for ``I``/``l`` to collide)
- ``rn m``       (r followed by n reads as m)
- ``vv w``       (two v read as w)

Deliberately short: ``5``/``s``, ``8``/``B``, ``cl``/``d`` and the
separators ``_ - .`` stay distinct, so the table refuses the classic
impersonations without making ordinary names collide by surprise.
"""

_BIDI = "\u202a-\u202e\u2066-\u2069"
"""Bidi embeddings, overrides and isolates: they reorder the text after them."""
_FORBIDDEN = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}]")
"""Category Cc (C0, DEL, C1) except newline and tab, and the bidi controls:
one C-speed scan per text finds any of them."""

_FORMAT_RANGES = (
    (0x00AD, 0x00AD), (0x0600, 0x0605), (0x061C, 0x061C), (0x06DD, 0x06DD),
    (0x070F, 0x070F), (0x0890, 0x0891), (0x08E2, 0x08E2), (0x180E, 0x180E),
    (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x2064), (0x2066, 0x206F),
    (0xFEFF, 0xFEFF), (0xFFF9, 0xFFFB), (0x110BD, 0x110BD), (0x110CD, 0x110CD),
    (0x13430, 0x1343F), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
)
"""Every character of Unicode category Cf (format) as of Unicode 15.0."""
_BLANK_RANGES = (
    (0x034F, 0x034F), (0x115F, 0x1160), (0x180B, 0x180D), (0x180F, 0x180F),
    (0x2800, 0x2800), (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFFA0, 0xFFA0),
    (0xE0100, 0xE01EF),
)
"""Not Cf but drawn as nothing on their own: combining grapheme joiner, Hangul
fillers, Mongolian and other variation selectors, the blank braille pattern."""
FORMAT_CHARACTERS = "".join(chr(cp) for a, b in _FORMAT_RANGES for cp in range(a, b + 1))
INVISIBLE_CHARACTERS = FORMAT_CHARACTERS + "".join(
    chr(cp) for a, b in _BLANK_RANGES for cp in range(a, b + 1)
)
"""What "empty once invisible characters are ignored" ignores, besides whitespace."""
_INVISIBLE_CLASS = "".join(f"{chr(a)}-{chr(b)}" for a, b in _FORMAT_RANGES + _BLANK_RANGES)
_BLANK = re.compile(f"[\\s{_INVISIBLE_CLASS}]*+")  # possessive: no backtracking
"""Text that ``fullmatch``es this shows nothing: whitespace and invisible characters only."""

LOBBY = "lobby"


def check_name(value: object, field: str = "name") -> str:
    if not isinstance(value, str) or not _USER_NAME.fullmatch(value):
        raise ProtocolError(ErrorCode.BAD_NAME, f"{field} must be {NAME_RULE}")
    return value


def name_key(name: str) -> str:
    """The form in which names are compared: unique up to case and look-alikes.

    Case folding, then the confusable skeleton above, so ``aIice``, ``a1ice``
    and ``ALICE`` all have the key of ``alice`` (``allce``). Every Redis key,
    registry lookup and fan-out tag that names a user uses this form.
    """
    key = name.casefold().translate(_LOOK_ALIKES)
    for pair, single in _LOOK_ALIKE_PAIRS:
        key = key.replace(pair, single)
    return key


def check_room(value: object) -> str:
    if not isinstance(value, str) or not _ROOM_NAME.fullmatch(value):
        raise ProtocolError(
            ErrorCode.BAD_ROOM, f"room must be 1 to {MAX_ROOM} characters from a-z 0-9 _ -"
        )
    return value


def check_text(value: object, max_text: int) -> str:
    """Strip surrounding whitespace, then refuse text that is empty, long or unsafe.

    Empty means nothing visible: whitespace and invisible format characters
    (zero-width space, BOM, soft hyphen...) alone are empty. Unsafe means a
    control character other than newline and tab, or a bidi embedding,
    override or isolate, which would reorder what follows it on screen.
    """
    if not isinstance(value, str):
        raise ProtocolError(ErrorCode.BAD_TEXT, "text must be a string")
    text = value.strip()
    if not text:
        raise ProtocolError(ErrorCode.BAD_TEXT, "text is empty")
    if len(text) > max_text:
        raise ProtocolError(ErrorCode.BAD_TEXT, f"text is longer than {max_text} characters")
    bad = _FORBIDDEN.search(text)
    if bad is not None:
        ch = bad.group()
        if unicodedata.category(ch) == "Cc":
            message = f"text contains control character U+{ord(ch):04X}"
        else:
            message = (
                f"text contains bidirectional formatting character U+{ord(ch):04X}"
                f" ({unicodedata.name(ch)})"
            )
        raise ProtocolError(ErrorCode.BAD_TEXT, message)
    if _BLANK.fullmatch(text):
        raise ProtocolError(ErrorCode.BAD_TEXT, "text is empty")
    return text


def check_ref(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_REF:
        raise ProtocolError(
            ErrorCode.BAD_FRAME, f"ref must be a string of 1 to {MAX_REF} characters"
        )
    return value


def check_password(value: object, field: str = "password") -> str:
    """The password NFKC-normalised (the form a gateway hashes), or ``bad_password``.

    The refusal never quotes the value: passwords stay out of every message.
    """
    if not isinstance(value, str):
        raise ProtocolError(ErrorCode.BAD_PASSWORD, f"{field} must be a string")
    password = normalise_password(value)
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise ProtocolError(
            ErrorCode.BAD_PASSWORD,
            f"{field} must be {MIN_PASSWORD} to {MAX_PASSWORD} characters",
        )
    try:
        password.encode("utf-8")
    except UnicodeEncodeError:
        raise ProtocolError(
            ErrorCode.BAD_PASSWORD, f"{field} must be valid Unicode (no lone surrogates)"
        ) from None
    return password


def normalise_password(value: str) -> str:
    """NFKC: the same password typed on any keyboard or input method hashes the same."""
    return unicodedata.normalize("NFKC", value)


CONVERSATION_PREFIX = "@"
"""``since`` keys that start with it name a conversation (``"@bob"``), others a room."""


def check_since_key(value: object) -> str:
    """A ``since`` key: a room name, or ``@`` and a user name for a conversation."""
    if isinstance(value, str) and value.startswith(CONVERSATION_PREFIX):
        check_name(value[len(CONVERSATION_PREFIX) :], "a since conversation")
        return value
    return check_room(value)
