"""Pure rules of the window's notifications: mentions, links, counts, the title.

No Tk: the chat controller and the message view call these, tests check
them directly.

- A mention is ``@name`` (any case) not glued to a longer name or an
  e-mail address: ``@alice,`` mentions alice, ``@alice2`` and
  ``bob@alice.org`` do not.
- A link is ``http://`` or ``https://`` up to the next space, without the
  punctuation that ends a sentence (``.,;:!?``, closing brackets and quotes
  left unbalanced).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from protocol.limits import MAX_NAME

_NAME_CHARS = "A-Za-z0-9_.\\-"
_MENTION = re.compile(rf"(?<![{_NAME_CHARS}@])@([{_NAME_CHARS}]{{1,{MAX_NAME}}})")
_LINK = re.compile(r"\bhttps?://[^\s<>\"]+", re.IGNORECASE)
_TRAILING = ".,;:!?'\""
_PAIRS = {")": "(", "]": "[", "}": "{"}


@dataclass(frozen=True, slots=True)
class Span:
    """A piece of a message's text: plain, a mention of the reader, or a link."""

    text: str
    kind: str  # "text", "mention", "link"

    @property
    def url(self) -> str | None:
        return self.text if self.kind == "link" else None


def _trim_link(url: str) -> str:
    while url:
        last = url[-1]
        unbalanced = last in _PAIRS and url.count(_PAIRS[last]) < url.count(last)
        if last in _TRAILING or unbalanced:
            url = url[:-1]
        else:
            break
    return url


def _mention_spans(text: str, me: str) -> list[tuple[int, int]]:
    found = []
    for match in _MENTION.finditer(text):
        name = match.group(1).rstrip(".-")  # "@alice." ends a sentence
        if name.lower() == me.lower():
            found.append((match.start(), match.start() + 1 + len(name)))
    return found


def mentions(text: str, me: str) -> bool:
    """Whether ``text`` mentions ``me`` (``@me``)."""
    return bool(_mention_spans(text, me))


def spans(text: str, me: str) -> list[Span]:
    """``text`` cut into plain pieces, mentions of ``me`` and links, in order."""
    marks: list[tuple[int, int, str]] = []
    for match in _LINK.finditer(text):
        url = _trim_link(match.group())
        if url:
            marks.append((match.start(), match.start() + len(url), "link"))
    for start, end in _mention_spans(text, me):
        if not any(s <= start < e for s, e, _ in marks):
            marks.append((start, end, "mention"))
    marks.sort()
    out: list[Span] = []
    at = 0
    for start, end, kind in marks:
        if start > at:
            out.append(Span(text[at:start], "text"))
        out.append(Span(text[start:end], kind))
        at = end
    if at < len(text):
        out.append(Span(text[at:], "text"))
    return out


def window_title(conversation: str | None, unread: int, mentions_count: int = 0) -> str:
    """'(3) #lobby — ChatService': what is unread elsewhere first, so the taskbar shows it."""
    base = f"{conversation} — ChatService" if conversation else "ChatService"
    if not unread:
        return base
    badge = f"{unread}" + (f", @{mentions_count}" if mentions_count else "")
    return f"({badge}) {base}"


def badge(unread: int, mentions_count: int) -> str:
    """The sidebar's count: '3', '@1 3' (mentions counted apart), '99+'."""
    def cap(n: int) -> str:
        return f"{n}" if n < 100 else "99+"

    if not unread:
        return ""
    return (f"@{cap(mentions_count)} " if mentions_count else "") + cap(unread)


def rank(query: str, names: Iterable[str]) -> list[str]:
    """The quick switcher's list: names starting with ``query`` first, then containing it."""
    q = query.strip().lstrip("#@").lower()
    starts = [n for n in names if n.lstrip("#@").lower().startswith(q)]
    contains = [n for n in names if n not in starts and q in n.lower()]
    return starts + contains
