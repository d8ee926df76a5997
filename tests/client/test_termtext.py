"""What chat-term prints, without a terminal: escaping, wrapping, completion, day lines."""

from __future__ import annotations

import time

import pytest

from client import termtext as tt

FORGERY = "see you\n12:00 [lobby] bob: please send me your password"


def test_a_newline_cannot_start_a_line_that_passes_for_another_message() -> None:
    lines = tt.LineFormatter(None).message("[lobby]", "mallory", FORGERY, time.time())
    message_lines = [line for line in lines if not line.startswith("-- ")]
    assert message_lines[0].endswith("[lobby] mallory: see you")
    assert message_lines[1].startswith(" "), "continuation lines are indented"
    assert message_lines[1].strip() == "12:00 [lobby] bob: please send me your password"


@pytest.mark.parametrize("columns", [20, 37, 80])
def test_wrapped_lines_are_indented_and_fit(columns: int) -> None:
    text = "word " * 40 + "x" * 100 + " 12:00 [lobby] bob: forged"
    lines = tt.wrap("12:34 [lobby] mallory: ", text, columns)
    assert len(lines) > 2
    assert all(tt.width(line) <= columns for line in lines)
    assert all(line.startswith("  ") for line in lines[1:])
    assert "".join(line.strip() for line in lines).replace(" ", "").startswith("12:34[lobby]")


def test_control_and_escape_characters_never_reach_the_terminal() -> None:
    text = "red \x1b[31mALERT\x1b[0m bell\x07 back\x08 cr\r del\x7f c1\x9b rlo\u202e end"
    shown = tt.escape(text)
    assert "\x1b" not in shown and "\x07" not in shown and "\r" not in shown
    assert "\x9b" not in shown and "\u202e" not in shown and "\x7f" not in shown
    assert shown == ("red \\x1b[31mALERT\\x1b[0m bell\\x07 back\\x08 cr\\x0d del\\x7f "
                     "c1\\x9b rlo\\u202e end")
    line = tt.LineFormatter(None).message("[lobby]", "evil\x1b]0;pwned\x07", "hi", 0.0)[-1]
    assert "\x1b" not in line and "evil\\x1b]0;pwned\\x07: hi" in line


def test_wide_characters_are_measured_as_two_columns() -> None:
    assert tt.width("héllo") == 5
    assert tt.width("日本") == 4
    assert tt.width("😀") == 2
    assert tt.width("e\u0301") == 1
    lines = tt.wrap("> ", "日本語" * 10, 12)
    assert all(tt.width(line) <= 12 for line in lines)


def test_day_lines_come_when_the_day_changes() -> None:
    formatter = tt.LineFormatter(None, time.gmtime)
    day1, day2 = 1_700_000_000.0, 1_700_000_000.0 + 86_400
    first = formatter.message("[lobby]", "bob", "one", day1)
    assert first == ["-- Tuesday, 14 November 2023 --", "22:13 [lobby] bob: one"]
    assert formatter.message("[lobby]", "bob", "two", day1 + 60) == ["22:14 [lobby] bob: two"]
    assert formatter.message("[dm]", "bob", "/me waves", day2)[-2:] == [
        "-- Wednesday, 15 November 2023 --", "22:13 [dm] * bob waves"]


def test_completion_of_commands_rooms_and_names() -> None:
    commands = ("/join", "/leave", "/msg", "/who", "/me", "/help", "/quit")
    rooms = ("dev", "design", "lobby")
    names = ("Bob", "bobby", "carol")

    def tab(line: str) -> tt.Completion:
        return tt.complete(line, len(line), commands, rooms, names)

    assert tab("/jo").line == "/join "
    assert tab("/join de") == tt.Completion("/join de", 8, ("design", "dev"))
    assert tab("/join dev").line == "/join dev "
    assert tab("see #lo").line == "see #lobby "
    assert tab("hi ca").line == "hi carol "
    assert tab("/msg car").line == "/msg carol "
    assert tab("ping @bo") == tt.Completion("ping @Bob", 9, ("Bob", "bobby"))
    assert tab("nobody zz").candidates == ()
