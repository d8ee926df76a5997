"""Drafts per conversation and the draft check, pure (no Tk)."""

from __future__ import annotations

from client.compose import check_draft
from client.gui.model import ConvKey, Drafts

LOBBY, DEV, BOB = ConvKey.room("lobby"), ConvKey.room("dev"), ConvKey.direct("Bob")


def test_switch_keeps_the_text_of_the_conversation_left() -> None:
    drafts = Drafts()
    assert drafts.switch(LOBBY, "half a thought", BOB) == ""
    assert drafts.switch(BOB, "for bob", DEV) == ""
    assert drafts.switch(DEV, "   ", LOBBY) == "half a thought"
    assert drafts.switch(LOBBY, "half a thought", BOB) == "for bob"
    assert drafts.get(DEV) == ""
    drafts.forget(BOB)
    assert drafts.switch(LOBBY, "", BOB) == ""
    assert drafts.switch(None, "ignored", LOBBY) == ""


def test_check_draft_counts_from_ninety_percent_and_names_the_excess() -> None:
    assert check_draft("a" * 3599, 4000).counter == ""
    assert check_draft("a" * 3600, 4000).counter == "3,600 / 4,000"
    check = check_draft("  " + "a" * 4001 + "  ", 4000)
    assert check.over and check.counter == "4,001 / 4,000 (1 too many)"
    assert check.problem is not None and "Shorten it by 1" in check.problem
    assert check_draft("a" * 4000, 4000).problem is None
    assert check_draft("", 4000).problem is None
    bad = check_draft("bell \x07", 4000).problem
    assert bad is not None and "U+0007" in bad
