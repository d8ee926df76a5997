"""Slash-command parsing shared by chat-term and the Tk app, and message formatting."""

from __future__ import annotations

import pytest

from client import commands as cmd
from client.errors import ClientError, CommandError


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("hello there", cmd.Say("hello there")),
        ("  padded  ", cmd.Say("padded")),
        ("//shrug", cmd.Say("/shrug")),
        ("/join dev", cmd.JoinRoom("dev")),
        ("/JOIN #Dev", cmd.JoinRoom("dev")),
        ("/leave", cmd.LeaveRoom(None)),
        ("/leave dev", cmd.LeaveRoom("dev")),
        ("/part dev", cmd.LeaveRoom("dev")),
        ("/msg bob hi there  bob", cmd.SendDirect("bob", "hi there  bob")),
        ("/msg bob", cmd.ShowDirect("bob")),
        ("/msg bob    ", cmd.ShowDirect("bob")),
        ("/register", cmd.Register()),
        ("/passwd", cmd.ChangePassword()),
        ("/dm bob hi", cmd.SendDirect("bob", "hi")),
        ("/who", cmd.ListMembers(None)),
        ("/who lobby", cmd.ListMembers("lobby")),
        ("/me waves at  everyone", cmd.Emote("waves at  everyone")),
        ("/quit", cmd.Quit()),
        ("/exit", cmd.Quit()),
        ("/help", cmd.ShowHelp()),
    ],
)
def test_parse_gives_the_command(line: str, expected: cmd.Command) -> None:
    assert cmd.parse(line) == expected


@pytest.mark.parametrize("line", ["", "   ", "\n"])
def test_blank_lines_are_no_command(line: str) -> None:
    assert cmd.parse(line) is None


@pytest.mark.parametrize(
    ("line", "usage"),
    [
        ("/join", "/join ROOM"),
        ("/join a b", "/join ROOM"),
        ("/leave a b", "/leave [ROOM]"),
        ("/msg", "/msg NAME TEXT"),
        ("/register hunter22", "/register: the password is asked for"),
        ("/who a b", "/who [ROOM]"),
        ("/me", "/me TEXT"),
        ("/frobnicate now", "unknown command /frobnicate"),
    ],
)
def test_bad_commands_raise_their_usage(line: str, usage: str) -> None:
    with pytest.raises(CommandError, match=usage.replace("[", r"\[").replace("]", r"\]")):
        cmd.parse(line)


def test_command_errors_are_client_errors() -> None:
    assert issubclass(CommandError, ClientError)


def test_help_mentions_every_command() -> None:
    for verb in ("/join", "/leave", "/msg", "/who", "/me", "/register", "/passwd", "/quit",
                 "/help"):
        assert verb in cmd.HELP


def test_emote_round_trips_through_message_text() -> None:
    assert cmd.format_text("alice", cmd.emote_text("waves")) == "* alice waves"
    assert cmd.format_text("alice", "hi") == "alice: hi"
    assert cmd.format_text("alice", "/me ") == "alice: /me "
    assert cmd.format_text("alice", "/meh") == "alice: /meh"
