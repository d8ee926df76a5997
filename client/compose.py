"""Checking a draft before it is sent: length counter and the exact reason it cannot go.

Pure, shared by the Tk app and chat-term: neither clears what was typed
unless the message was handed to the client. The length counted is the
protocol's: the text without surrounding whitespace, in characters (code
points), against the gateway's announced ``max_text``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from protocol.errors import ProtocolError
from protocol.names import check_text

COUNTER_FROM = 0.9
"""The counter shows from this share of the limit on."""


@dataclass(frozen=True, slots=True)
class DraftCheck:
    """What the composer shows for a draft, and whether it may be sent."""

    length: int
    limit: int
    problem: str | None
    """Why it cannot be sent, as a sentence; None when it can (or is empty)."""

    @property
    def show_counter(self) -> bool:
        return self.length >= math.ceil(self.limit * COUNTER_FROM)

    @property
    def over(self) -> bool:
        return self.length > self.limit

    @property
    def counter(self) -> str:
        """'3,650 / 4,000', '4,050 / 4,000 (50 too many)'; '' below the threshold."""
        if not self.show_counter:
            return ""
        text = f"{self.length:,} / {self.limit:,}"
        if self.over:
            text += f" ({self.length - self.limit:,} too many)"
        return text


def too_long(length: int, limit: int) -> str:
    return (f"Too long to send: {length:,} characters, the limit is {limit:,}. "
            f"Shorten it by {length - limit:,}; your text is kept.")


def check_draft(text: str, limit: int) -> DraftCheck:
    """Check ``text`` (what would be sent) against ``limit`` and the protocol's rules."""
    stripped = text.strip()
    length = len(stripped)
    if not stripped:
        return DraftCheck(0, limit, None)
    if length > limit:
        return DraftCheck(length, limit, too_long(length, limit))
    try:
        check_text(stripped, limit)
    except ProtocolError as exc:
        return DraftCheck(length, limit, f"Cannot send this: {exc.message}; your text is kept.")
    return DraftCheck(length, limit, None)
