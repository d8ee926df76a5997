"""What chat-term prints, as plain strings: escaping, widths, wrapping, event lines.

Pure (no terminal, no I/O), so every rule is tested directly:

- **Nothing from the network reaches the terminal raw.** Control characters
  (C0, DEL, C1: ESC among them), bidirectional overrides and line or
  paragraph separators in names or text are shown escaped (``\\x1b``,
  ``\\u202e``); no ANSI sequence of a sender ever runs.
- **No line of one message can pass for another's.** Every message or
  notice starts at column 0 with a time (``12:34``) or ``--``; every
  further line of it, whether the text had a newline or was wrapped to the
  terminal's width here, starts with spaces, indented under the text. The
  terminal never wraps a line itself (lines are cut one column short).
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from client.commands import ME_PREFIX

_BIDI_AND_SEPARATORS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029"
)
TAB = "    "
MIN_INDENT = 2


def _escaped(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text: str) -> str:
    """``text`` safe for a terminal, newlines included (see ``escape_line``)."""
    return "\n".join(escape_line(line) for line in text.split("\n"))


def escape_line(text: str) -> str:
    """One line safe for a terminal: tabs become spaces, control characters are shown."""
    out: list[str] = []
    for char in text:
        if char == "\t":
            out.append(TAB)
        elif char in _BIDI_AND_SEPARATORS or unicodedata.category(char) == "Cc":
            out.append(_escaped(char))
        else:
            out.append(char)
    return "".join(out)


def char_width(char: str) -> int:
    """Columns a character takes: 2 for wide (CJK, most emoji), 0 for combining marks."""
    if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def width(text: str) -> int:
    return sum(char_width(c) for c in text)


def cut(text: str, columns: int) -> str:
    """The longest start of ``text`` that fits in ``columns``."""
    used = 0
    for index, char in enumerate(text):
        used += char_width(char)
        if used > columns:
            return text[:index]
    return text


def _split(text: str, columns: int) -> tuple[str, str]:
    """Split ``text`` to fit ``columns``: at the last space if there is one, else hard."""
    head = cut(text, columns)
    if len(head) == len(text):
        return text, ""
    space = head.rfind(" ")
    if space > 0:
        return head[:space], text[space + 1:]
    if not head:  # a wide character in a one-column space: take it anyway
        head = text[:1]
    return head, text[len(head):]


def wrap(prefix: str, text: str, columns: int | None) -> list[str]:
    """``prefix`` + ``text`` as screen lines; every line after the first is indented.

    ``text`` is escaped here; ``prefix`` must already be safe. ``columns``
    None: no wrapping (a pipe), only the text's own newlines make lines.
    """
    lines = escape(text).split("\n")
    indent = " " * max(MIN_INDENT, width(prefix) if columns is None
                       else min(width(prefix), max(MIN_INDENT, columns // 3)))
    out: list[str] = []
    for number, line in enumerate(lines):
        lead = prefix if number == 0 else indent
        if columns is None:
            out.append((lead + line).rstrip() if number else lead + line)
            continue
        rest = line
        if number == 0 and width(lead) > columns - 4:
            out.append(cut(lead, columns))  # a very narrow terminal: the text goes below
            lead = indent
        while True:
            room = max(1, columns - width(lead))
            head, rest = _split(rest, room)
            out.append(lead + head)
            lead = indent
            if not rest:
                break
    return out


# ------------------------------------------------------------------ completion


@dataclass(frozen=True, slots=True)
class Completion:
    """The line after Tab, and the candidates to list when several fit."""

    line: str
    cursor: int
    candidates: tuple[str, ...]


def complete(line: str, cursor: int, commands: Iterable[str], rooms: Iterable[str],
             names: Iterable[str]) -> Completion:
    """Complete the word before ``cursor``: a command first on the line, a room after
    ``/join``, ``/leave``, ``/who`` or ``#``, else a name (also after ``@``)."""
    start = line.rfind(" ", 0, cursor) + 1
    word = line[start:cursor]
    before = line[:start].split()
    if not before and word.startswith("/"):
        pool, sigil = list(commands), ""
    elif word.startswith("#") or (before and before[0].lower() in ("/join", "/leave", "/who")
                                  and len(before) == 1):
        pool, sigil = list(rooms), "#" if word.startswith("#") else ""
    else:
        pool, sigil = list(names), "@" if word.startswith("@") else ""
    stem = word[len(sigil):]
    fits = sorted({c for c in pool if c.lower().startswith(stem.lower())}, key=str.lower)
    if not fits:
        return Completion(line, cursor, ())
    if len(fits) == 1:
        done = sigil + fits[0] + " "
        new = line[:start] + done + line[cursor:].lstrip(" ")
        return Completion(new, start + len(done), ())
    common = fits[0]
    for other in fits[1:]:
        while not other.lower().startswith(common.lower()):
            common = common[:-1]
    if len(common) > len(stem):
        new = line[:start] + sigil + common + line[cursor:]
        return Completion(new, start + len(sigil) + len(common), tuple(fits))
    return Completion(line, cursor, tuple(fits))


# ------------------------------------------------------------------- messages


def clock(ts: float, localtime: Callable[[float], time.struct_time] = time.localtime) -> str:
    return time.strftime("%H:%M", localtime(ts))


def day(ts: float, localtime: Callable[[float], time.struct_time] = time.localtime) -> str:
    return time.strftime("%A, %d %B %Y", localtime(ts))


class LineFormatter:
    """Message lines with a time, and a day line whenever the day changes.

    One per session; it remembers the day of the last message printed.
    """

    def __init__(self, columns: int | None,
                 localtime: Callable[[float], time.struct_time] = time.localtime) -> None:
        self.columns = columns
        self._localtime = localtime
        self._day: str | None = None

    def message(self, where: str, sender: str, text: str, ts: float) -> list[str]:
        """``12:34 [lobby] bob: text`` (``* bob waves`` for /me), wrapped and indented."""
        lines = self._day_line(ts)
        stamp = clock(ts, self._localtime)
        who = escape_line(sender)
        if text.startswith(ME_PREFIX) and text[len(ME_PREFIX):].strip():
            prefix, body = f"{stamp} {where} * {who} ", text[len(ME_PREFIX):]
        else:
            prefix, body = f"{stamp} {where} {who}: ", text
        return lines + wrap(prefix, body, self.columns)

    def notice(self, text: str) -> list[str]:
        """``-- text``, wrapped and indented like a message."""
        return wrap("-- ", text, self.columns)

    def block(self, text: str) -> list[str]:
        """Pre-formatted lines (help), each escaped and cut to the width."""
        out = []
        for line in escape(text).split("\n"):
            out.append(line if self.columns is None else cut(line, self.columns))
        return out

    def _day_line(self, ts: float) -> list[str]:
        today = day(ts, self._localtime)
        if today == self._day:
            return []
        self._day = today
        return [f"-- {today} --"]


def room_label(room: str) -> str:
    return f"[{escape_line(room)}]"


def dm_label(peer: str, outgoing: bool) -> str:
    return f"[dm to {escape_line(peer)}]" if outgoing else "[dm]"


def columns_of(lines: Sequence[tuple[str, str]], gap: int = 2) -> list[str]:
    """Two aligned columns: ``/join ROOM    join a room``."""
    left = max((width(a) for a, _ in lines), default=0)
    return [a + " " * (left - width(a) + gap) + b for a, b in lines]
