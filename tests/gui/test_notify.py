"""Mentions, links, badges, the window title and the switcher's order: pure, no Tk."""

from __future__ import annotations

import pytest

from client.gui import notify
from client.gui.notify import Span


@pytest.mark.parametrize(("text", "expected"), [
    ("hey @alice, lunch?", True),
    ("@ALICE", True),
    ("thanks @alice.", True),
    ("@alice2 is someone else", False),
    ("mail bob@alice.org", False),
    ("alice without at", False),
])
def test_mentions(text: str, expected: bool) -> None:
    assert notify.mentions(text, "alice") is expected


def test_spans_cut_mentions_and_links() -> None:
    text = "@alice see https://example.org/a_(b)?x=1. or (http://x.io/y)"
    assert notify.spans(text, "alice") == [
        Span("@alice", "mention"), Span(" see ", "text"),
        Span("https://example.org/a_(b)?x=1", "link"), Span(". or (", "text"),
        Span("http://x.io/y", "link"), Span(")", "text"),
    ]
    assert notify.spans("plain", "alice") == [Span("plain", "text")]


def test_badges_and_title() -> None:
    assert notify.badge(0, 0) == ""
    assert notify.badge(3, 0) == "3"
    assert notify.badge(3, 1) == "@1 3"
    assert notify.badge(150, 120) == "@99+ 99+"
    assert notify.window_title("#lobby", 0) == "#lobby — ChatService"
    assert notify.window_title("#lobby", 4, 1) == "(4, @1) #lobby — ChatService"
    assert notify.window_title(None, 2) == "(2) ChatService"


def test_rank_prefers_names_that_start_with_the_query() -> None:
    names = ["#lobby", "#dev", "bob", "#bobsled", "carol"]
    assert notify.rank("bo", names) == ["bob", "#bobsled"]
    assert notify.rank("ob", names) == ["#lobby", "bob", "#bobsled"]
    assert notify.rank("", names) == names
