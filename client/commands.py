"""The slash commands of chat-term and the Tk app: one input line -> one command object.

Pure: ``parse`` checks the syntax and returns a frozen command; the caller
carries it out on its ``ChatClient`` (names and rooms are checked there,
by the protocol). A line without a leading ``/`` is ``Say``; a leading
``//`` sends the rest with one ``/`` (to say "/shrug" literally).

``/me`` text travels as an ordinary message starting with ``/me ``;
``format_text`` renders it as an action, for every client alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from client.errors import CommandError

ME_PREFIX = "/me "

HELP = """\
/join ROOM        join a room and make it the current one
/leave [ROOM]     leave a room (default: the current one)
/msg NAME TEXT    private message to NAME
/msg NAME         the conversation with NAME: its recent messages (accounts)
/who [ROOM]       who is in a room (default: the current one)
/me TEXT          an action, shown as "* you TEXT"
/register         make your name an account (asks for a password)
/passwd           change your account's password
/quit             log out and exit
/help             this list
Any other line is sent to the current room; start it with // to send a leading /."""


@dataclass(frozen=True, slots=True)
class Say:
    """Plain text for the current room."""

    text: str


@dataclass(frozen=True, slots=True)
class JoinRoom:
    room: str


@dataclass(frozen=True, slots=True)
class LeaveRoom:
    room: str | None  # None: the current room


@dataclass(frozen=True, slots=True)
class SendDirect:
    to: str
    text: str


@dataclass(frozen=True, slots=True)
class ShowDirect:
    """``/msg NAME`` without text: show the conversation (its stored history)."""

    to: str


@dataclass(frozen=True, slots=True)
class Register:
    """``/register``: the password is asked for without echo, never typed on the line."""


@dataclass(frozen=True, slots=True)
class ChangePassword:
    """``/passwd``: both passwords are asked for without echo."""


@dataclass(frozen=True, slots=True)
class ListMembers:
    room: str | None  # None: the current room


@dataclass(frozen=True, slots=True)
class Emote:
    """``/me``: ``text`` is what follows the command; send ``emote_text(text)``."""

    text: str


@dataclass(frozen=True, slots=True)
class Quit:
    pass


@dataclass(frozen=True, slots=True)
class ShowHelp:
    pass


Command = (Say | JoinRoom | LeaveRoom | SendDirect | ShowDirect | ListMembers | Emote | Quit
           | ShowHelp | Register | ChangePassword)


def _room(word: str) -> str:
    """Room names are lower case; accept ``#General`` as ``general``."""
    return word.removeprefix("#").lower()


def parse(line: str) -> Command | None:
    """One input line -> a command, or None for a blank line.

    Raises ``CommandError`` (its text is the usage) for an unknown command or
    missing arguments.
    """
    stripped = line.strip()
    if not stripped:
        return None
    if not stripped.startswith("/"):
        return Say(stripped)
    if stripped.startswith("//"):
        return Say(stripped[1:])
    head, _, rest = stripped[1:].partition(" ")
    verb = head.lower()
    rest = rest.strip()
    args = rest.split()
    if verb == "join":
        if len(args) != 1:
            raise CommandError("usage: /join ROOM")
        return JoinRoom(_room(args[0]))
    if verb in ("leave", "part"):
        if len(args) > 1:
            raise CommandError("usage: /leave [ROOM]")
        return LeaveRoom(_room(args[0]) if args else None)
    if verb in ("msg", "dm"):
        to, _, text = rest.partition(" ")
        if not to:
            raise CommandError("usage: /msg NAME TEXT")
        if not text.strip():
            return ShowDirect(to)
        return SendDirect(to, text.strip())
    if verb == "who":
        if len(args) > 1:
            raise CommandError("usage: /who [ROOM]")
        return ListMembers(_room(args[0]) if args else None)
    if verb == "me":
        if not rest:
            raise CommandError("usage: /me TEXT")
        return Emote(rest)
    if verb in ("register", "passwd", "password"):
        if args:
            raise CommandError(f"usage: /{verb}: the password is asked for, not typed here")
        return Register() if verb == "register" else ChangePassword()
    if verb in ("quit", "exit"):
        return Quit()
    if verb in ("help", "?"):
        return ShowHelp()
    raise CommandError(f"unknown command /{head}; /help lists them")


def emote_text(action: str) -> str:
    """The message text that carries a ``/me`` action."""
    return ME_PREFIX + action


def format_text(sender: str, text: str) -> str:
    """How a room or private message reads: ``alice: hi`` or ``* alice waves``."""
    if text.startswith(ME_PREFIX) and text[len(ME_PREFIX):].strip():
        return f"* {sender} {text[len(ME_PREFIX):]}"
    return f"{sender}: {text}"
