"""chat-term: the ChatService client for a terminal.

    chat-term --name alice [--gateway HOST:PORT ...] [--gateways A,B] [--room lobby ...]
              [--password-file PATH]

Lines typed go to the current room; slash commands (``/help``) are the same
as in the Tk app (``client.commands``). Each message is one entry with its
time (``12:34 [lobby] bob: hi``), a day line when the day changes, and its
further lines indented; names and text are escaped (``client.termtext``).

Threads: the client's reader thread and an input thread only put what
happened on one ``queue.Queue``; the main thread takes from it and is the
only one that writes to the terminal. On a terminal (``LiveScreen``) the
bottom lines are the typing line, one status line (reconnecting, messages
waiting to be sent) and the line being typed, edited here (Tab completes
commands, rooms and names; Up/Down recall; Ctrl-A/E/U/K/W, Ctrl-C or
Ctrl-D on an empty line quit); messages appear above them. On a pipe
(``PlainScreen``) lines are simply printed, each status once.

A message is shown once, when the gateway has it (its echo); until then it
is pending in ``ChatClient`` and survives reconnects and a frozen Redis
(``hold_unavailable``): the status line says it is waiting.

Accounts (protocol v1.1): the password comes from ``--password-file`` or
``$CHAT_PASSWORD``; without either, when the gateway answers a guest log-in
with ``name_taken`` and the terminal can ask, chat-term asks for it without
echo (``getpass``) and logs in again. ``/register`` and ``/passwd`` ask for
their passwords on the input line with nothing shown (and nothing kept in
the Up/Down recall). At an account's log-in the conversations with unread
messages are listed; ``/msg NAME`` shows the conversation's recent messages;
what is printed counts as read and is sent with ``mark_read`` (``ReadSync``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import logging
import math
import os
import queue
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Protocol, TextIO

from client import commands as cmd
from client import events as ev
from client import termtext as tt
from client.compose import check_draft
from client.connection import ChatClient
from client.errors import ClientError, LoginRefused, NoGatewayAvailable
from client.gui import wording
from client.gui.model import TYPING_HINT_SECONDS, ConvKey, ReadSync
from client.gui.wording import typing_line
from client.options import add_gateway_options, gateways_from_args, new_parser
from protocol import frames as fr
from protocol.errors import ErrorCode, ProtocolError
from protocol.limits import MAX_PASSWORD, MIN_PASSWORD, Limits
from protocol.names import LOBBY, check_name, check_password, name_key

logger = logging.getLogger(__name__)

HOLD_UNAVAILABLE_S = 120.0
"""How long a message the server cannot take now (Redis frozen) waits and is retried."""

TICK_S = 0.25
"""How often the status and typing lines are brought up to date."""

SLOW_SEND_S = 1.0
"""A message not acknowledged after this long is mentioned in the status line."""

COMMAND_WORDS = ("/join", "/leave", "/msg", "/who", "/me", "/register", "/passwd", "/help",
                 "/quit")

DM_HISTORY_SHOWN = 20
"""How many recent messages ``/msg NAME`` shows."""

READ_DELAY_S = 1.0
"""How long after printing a message its read mark is sent (one mark per burst)."""


# ----------------------------------------------------------------------- screens


class Screen(Protocol):
    """Where the session's output goes; main thread only."""

    def show(self, lines: Sequence[str]) -> None: ...

    def set_status(self, kind: str, text: str) -> None: ...

    def set_typing(self, text: str) -> None: ...

    def set_prompt(self, text: str) -> None: ...

    def set_secret(self, secret: bool) -> None:
        """While True the line being typed is a password: show none of it, recall none."""


class PlainScreen:
    """A pipe or dumb terminal: lines as they come, each new kind of status once."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._kind = ""

    def show(self, lines: Sequence[str]) -> None:
        if lines:
            self._out.write("".join(line + "\n" for line in lines))
            self._out.flush()

    def set_status(self, kind: str, text: str) -> None:
        if kind != self._kind:
            self._kind = kind
            if text:
                self.show([f"-- {text}"])

    def set_typing(self, text: str) -> None:
        """Not shown on a pipe."""

    def set_prompt(self, text: str) -> None:
        """No prompt on a pipe."""

    def set_secret(self, secret: bool) -> None:
        """Nothing typed is shown on a pipe."""


# -------------------------------------------------------------------- line editor


@dataclass(frozen=True, slots=True)
class Submitted:
    line: str


@dataclass(frozen=True, slots=True)
class Quit:
    pass


@dataclass(frozen=True, slots=True)
class Edited:
    text: str


@dataclass(frozen=True, slots=True)
class TabPressed:
    pass


EditorAction = Submitted | Quit | Edited | TabPressed

_CSI_KEYS = {"A": "up", "B": "down", "C": "right", "D": "left", "H": "home", "F": "end",
             "1~": "home", "7~": "home", "4~": "end", "8~": "end", "3~": "delete"}
_CONTROL_KEYS = {"\r": "enter", "\n": "enter", "\x7f": "backspace", "\x08": "backspace",
                 "\t": "tab", "\x01": "home", "\x05": "end", "\x02": "left", "\x06": "right",
                 "\x10": "up", "\x0e": "down", "\x15": "kill-start", "\x0b": "kill-end",
                 "\x17": "kill-word", "\x03": "quit", "\x04": "eof", "\x0c": "redraw"}


class KeyDecoder:
    """Terminal input (UTF-8 bytes) -> keys: a character, or a name like ``"left"``."""

    def __init__(self) -> None:
        self._pending = ""
        self._bytes = b""

    def feed(self, data: bytes) -> list[str]:
        self._bytes += data
        try:
            text = self._bytes.decode()
            self._bytes = b""
        except UnicodeDecodeError as exc:
            if exc.start < len(self._bytes) - 3:  # not just an incomplete tail: skip it
                text = self._bytes.decode(errors="replace")
                self._bytes = b""
            else:
                text = self._bytes[:exc.start].decode()
                self._bytes = self._bytes[exc.start:]
        self._pending += text
        keys: list[str] = []
        while self._pending:
            char = self._pending[0]
            if char == "\x1b":
                if len(self._pending) == 1:
                    break  # the rest of the sequence comes in the next read
                consumed, key = self._escape(self._pending)
                if consumed == 0:
                    break
                self._pending = self._pending[consumed:]
                if key:
                    keys.append(key)
                continue
            self._pending = self._pending[1:]
            if char in _CONTROL_KEYS:
                keys.append(_CONTROL_KEYS[char])
            elif char >= " ":
                keys.append(char)
        return keys

    @staticmethod
    def _escape(text: str) -> tuple[int, str]:
        """(characters used, key) for an escape sequence at the start; (0, '') if cut short."""
        if text[1] in "[O":
            for end in range(2, len(text)):
                if "\x40" <= text[end] <= "\x7e":
                    body = text[2:end + 1]
                    return end + 1, _CSI_KEYS.get(body, "")
            return 0, ""
        return 2, ""  # Alt+key: ignored


class LineEditor:
    """The line being typed: text, cursor and recall of earlier lines. Pure."""

    def __init__(self) -> None:
        self.text = ""
        self.cursor = 0
        self.secret = False
        """A password is being typed: Enter does not keep it for recall."""
        self._history: list[str] = []
        self._recall = 0

    def press(self, key: str) -> EditorAction | None:
        before = self.text
        if len(key) == 1:
            self.text = self.text[:self.cursor] + key + self.text[self.cursor:]
            self.cursor += 1
        elif key == "enter":
            line = self.text
            if line.strip() and not self.secret:
                self._history.append(line)
            self._recall = len(self._history)
            return Submitted(line)
        elif key == "quit" or (key == "eof" and not self.text):
            return Quit()
        elif key == "tab":
            return None if self.secret else TabPressed()
        else:
            self._edit(key)
        return Edited(self.text) if self.text != before else None

    def _edit(self, key: str) -> None:
        text, at = self.text, self.cursor
        if key == "backspace" and at > 0:
            self.text, self.cursor = text[:at - 1] + text[at:], at - 1
        elif key in ("delete", "eof") and at < len(text):
            self.text = text[:at] + text[at + 1:]
        elif key == "left":
            self.cursor = max(0, at - 1)
        elif key == "right":
            self.cursor = min(len(text), at + 1)
        elif key == "home":
            self.cursor = 0
        elif key == "end":
            self.cursor = len(text)
        elif key == "kill-start":
            self.text, self.cursor = text[at:], 0
        elif key == "kill-end":
            self.text = text[:at]
        elif key == "kill-word":
            start = text[:at].rstrip(" ").rfind(" ") + 1
            self.text, self.cursor = text[:start] + text[at:], start
        elif key in ("up", "down") and self._history and not self.secret:
            step = -1 if key == "up" else 1
            self._recall = max(0, min(len(self._history), self._recall + step))
            self.set(self._history[self._recall] if self._recall < len(self._history) else "")

    def set(self, text: str, cursor: int | None = None) -> None:
        self.text = text
        self.cursor = len(text) if cursor is None else cursor

    def clear(self) -> None:
        self.set("")


class LiveScreen:
    """A real terminal: messages scroll above a footer of typing, status and input lines."""

    def __init__(self, out: TextIO, columns: Callable[[], int]) -> None:
        self._out = out
        self._columns = columns
        self.editor = LineEditor()
        self._prompt = ""
        self._status = ""
        self._typing = ""
        self._footer_rows = 0  # rows above the input line now on screen

    # -- Screen ----------------------------------------------------------------

    def show(self, lines: Sequence[str]) -> None:
        if lines:
            self._redraw("".join(line + "\r\n" for line in lines))

    def set_status(self, kind: str, text: str) -> None:
        if text != self._status:
            self._status = text
            self._redraw()

    def set_typing(self, text: str) -> None:
        if text != self._typing:
            self._typing = text
            self._redraw()

    def set_prompt(self, text: str) -> None:
        if text != self._prompt:
            self._prompt = text
            self._redraw()

    def set_secret(self, secret: bool) -> None:
        if secret != self.editor.secret:
            self.editor.secret = secret
            self._redraw()

    # -- the footer -----------------------------------------------------------

    def refresh(self) -> None:
        self._redraw()

    def columns(self) -> int:
        return max(10, self._columns())

    def finish(self) -> None:
        """Leave the footer's last state on screen and end on a fresh line."""
        self._out.write("\r\n")
        self._out.flush()

    def _redraw(self, above: str = "") -> None:
        columns = max(10, self._columns())
        parts = ["\r"]
        if self._footer_rows:
            parts.append(f"\x1b[{self._footer_rows}A")
        parts.append("\x1b[J")
        parts.append(above)
        rows = [line for line in (self._typing, self._status) if line]
        for row in rows:
            parts.append("\x1b[2m" + tt.cut(tt.escape_line(row), columns - 1) + "\x1b[0m\r\n")
        self._footer_rows = len(rows)
        visible, column = self._input_view(columns - 1)
        parts.append(visible)
        parts.append("\r")
        if column:
            parts.append(f"\x1b[{column}C")
        self._out.write("".join(parts))
        self._out.flush()

    def _input_view(self, columns: int) -> tuple[str, int]:
        """The prompt and the part of the typed text around the cursor; the cursor column."""
        prompt = tt.cut(self._prompt, max(0, columns - 8))
        if self.editor.secret:
            return prompt, tt.width(prompt)  # a password: nothing of it on screen
        room = max(1, columns - tt.width(prompt))
        text = tt.escape_line(self.editor.text)
        cursor = len(tt.escape_line(self.editor.text[:self.editor.cursor]))
        start = 0
        while tt.width(text[start:cursor]) >= room:
            start += 1
        shown = tt.cut(text[start:], room)
        return prompt + shown, tt.width(prompt) + tt.width(text[start:cursor])


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """Keys one by one, no echo, no signals from Ctrl-C (it quits): the editor does it all."""
    import termios

    saved = termios.tcgetattr(fd)
    mode = termios.tcgetattr(fd)
    mode[0] &= ~(termios.ICRNL | termios.IXON)
    mode[3] &= ~(termios.ICANON | termios.ECHO | termios.ISIG | termios.IEXTEN)
    mode[6][termios.VMIN] = 1
    mode[6][termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSADRAIN, mode)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


# ------------------------------------------------------------------------- session


@dataclass(frozen=True, slots=True)
class _Sent:
    where: str
    text: str
    at: float


@dataclass(slots=True)
class _Question:
    """Passwords being asked for on the input line (``/register``, ``/passwd``)."""

    kind: str  # "register" or "passwd"
    prompts: tuple[str, ...]
    answers: list[str]

    @property
    def prompt(self) -> str:
        return self.prompts[len(self.answers)]


class TermSession:
    """The chat as the terminal shows it: events in, lines and status out, commands run.

    Main thread only (the app's queue brings every event here).
    """

    def __init__(self, client: ChatClient, screen: Screen, formatter: tt.LineFormatter,
                 clock: Callable[[], float] = time.monotonic,
                 max_text: int = Limits().max_text) -> None:
        self.client = client
        self.screen = screen
        self.formatter = formatter
        self._clock = clock
        self.max_text = max_text
        self.me = client.name
        rooms = client.rooms
        self.current: str | None = rooms[0] if rooms else None
        self.names: dict[str, str] = {}
        self.known_rooms: set[str] = set(rooms)
        self._pending: dict[str, _Sent] = {}
        self._delayed: set[str] = set()
        self._typing: dict[str, dict[str, float]] = {}
        self._reconnect: tuple[str, float, int] | None = None  # address, at, attempt
        self._lost: str | None = None
        self._lost_at: float | None = None
        self._closed: str | None = None
        self._asking: _Question | None = None
        self._awaiting: str | None = None  # "register"/"passwd" sent, answer not yet in
        self._read_sync = ReadSync(READ_DELAY_S)
        self._shown: dict[ConvKey, tuple[str, int]] = {}  # newest id printed, by conversation
        self._room_marks: dict[str, int] = {}  # read marks at login, for the history line
        self.ended = False
        screen.set_prompt(self.prompt)

    @property
    def prompt(self) -> str:
        if self._asking is not None:
            return self._asking.prompt
        return f"[{self.current or '-'}] "

    # -- events ----------------------------------------------------------------

    def handle(self, event: ev.ClientEvent) -> None:
        f = self.formatter
        match event:
            case ev.RoomMessage(message=m):
                self._printed(ConvKey.room(m.room), m.room, m.id)
                self._seen(m.sender)
                self._stop_typing(m.room, m.sender)
                self.screen.show(f.message(tt.room_label(m.room), m.sender, m.text, m.ts))
            case ev.HistoryLoaded(room=room, messages=messages, older=older):
                if messages and not older:
                    self._printed(ConvKey.room(room), room, messages[-1].id)
                if messages:
                    label = tt.room_label(room)
                    count = f"{len(messages)} message" + ("" if len(messages) == 1 else "s")
                    mark = None if older else self._room_marks.pop(room, None)
                    unread = [m for m in messages if mark is not None and m.id > mark
                              and name_key(m.sender) != name_key(self.me)]
                    if unread:
                        count += f", {len(unread)} unread"
                    lines = [f"-- {'earlier' if older else 'history'} in {label}: {count} --"]
                    for m in messages:
                        self._seen(m.sender)
                        if unread and m is unread[0]:
                            lines.append("-- new since you last read --")
                        lines += f.message(label, m.sender, m.text, m.ts)
                    lines.append(f"-- end of history in {label} --")
                    self.screen.show(lines)
            case ev.DirectReceived(dm=dm):
                outgoing = name_key(dm.sender) == name_key(self.me)
                peer = dm.to if outgoing else dm.sender
                if dm.id is not None:
                    self._printed(ConvKey.direct(peer), peer, dm.id)
                self._seen(peer)
                self.screen.show(f.message(tt.dm_label(peer, outgoing), dm.sender, dm.text,
                                           dm.ts))
            case ev.MemberJoined(room=room, name=name):
                self._seen(name)
                if name_key(name) != name_key(self.me):
                    self.screen.show(f.notice(f"{name} joined {tt.room_label(room)}"))
            case ev.MemberLeft(room=room, name=name):
                self._stop_typing(room, name)
                if name_key(name) != name_key(self.me):
                    self.screen.show(f.notice(f"{name} left {tt.room_label(room)}"))
            case ev.Members(room=room, names=names):
                for name in names:
                    self._seen(name)
                self.screen.show(f.notice(
                    f"in {tt.room_label(room)}: {', '.join(names) or 'nobody'}"))
            case ev.Typing(room=room, name=name):
                if name_key(name) != name_key(self.me):
                    self._typing.setdefault(room, {})[name] = self._clock() + TYPING_HINT_SECONDS
                    self._refresh_typing()
            case ev.Connected(gateway=gateway, name=name, resumed=resumed):
                if resumed:
                    away = "" if self._lost_at is None else \
                        f" after {self._clock() - self._lost_at:.0f} s"
                    self.screen.show(f.notice(f"reconnected to {gateway}{away}"))
                else:
                    self.screen.show(f.notice(f"connected to {gateway} as {name}"))
                self._reconnect = self._lost = self._lost_at = None
            case ev.Disconnected(reason=reason):
                self._lost = reason
                if self._lost_at is None:
                    self._lost_at = self._clock()
                self._typing.clear()
                self._refresh_typing()
            case ev.Reconnecting(address=address, delay=delay, attempt=attempt):
                self._reconnect = (address, self._clock() + delay, attempt)
            case ev.Acked(ref=ref):
                self._pending.pop(ref, None)
                self._delayed.discard(ref)
            case ev.SendDelayed(ref=ref):
                self._delayed.add(ref)
            case ev.SendFailed(ref=ref, error=error):
                sent = self._pending.pop(ref, None)
                self._delayed.discard(ref)
                what = f" to {sent.where}" if sent else ""
                self.screen.show(f.notice(f"not sent{what}: {error.message}"))
                if sent is not None:
                    self.screen.show(wrap_quote(sent.text, f.columns))
            case ev.EpochReset(room=room):
                self.screen.show(f.notice(f"the history of {tt.room_label(room)} restarted"))
            case ev.AccountState(dms=dms, read=read):
                self._account_state(dms, read)
            case ev.DmHistoryLoaded(peer=peer, messages=messages):
                self._dm_history(peer, messages)
            case ev.Registered(name=name):
                if self._awaiting == "passwd":
                    self.screen.show(f.notice("password changed"))
                else:
                    self.screen.show(f.notice(
                        f"{name} is an account now: nobody else gets the name, and your "
                        "direct messages are kept, also while you are offline"))
                self._awaiting = None
            case ev.ServerError(error=error) if self._awaiting is not None and error.code in (
                    ErrorCode.BAD_PASSWORD, ErrorCode.AUTH_FAILED, ErrorCode.NAME_TAKEN,
                    ErrorCode.RATE_LIMITED, ErrorCode.UNAVAILABLE):
                words = (wording.passwd_refusal(error) if self._awaiting == "passwd"
                         else wording.register_refusal(error, self.me))
                self._awaiting = None
                self.screen.show(f.notice(words))
            case ev.ServerError(error=error):
                self.screen.show(f.notice(f"error: {error.message}"))
            case ev.Closed(reason=reason):
                self._closed = reason
                self.screen.show(f.notice(f"closed: {reason}"))
                self.ended = True
        self.refresh_status()

    def tick(self) -> None:
        self._refresh_typing()
        self.refresh_status()
        self._sync_read()

    # -- accounts ----------------------------------------------------------------

    def _account_state(self, dms: Sequence[fr.DmSummary], read: Mapping[str, int]) -> None:
        """At an account's log-in: which conversations have unread messages."""
        for summary in dms:
            self._seen(summary.peer)
            self._read_sync.known(ConvKey.direct(summary.peer), summary.read)
        for room, mark in read.items():
            self._read_sync.known(ConvKey.room(room), mark)
            self._room_marks[room] = mark
        unread = [f"{tt.escape_line(s.peer)} ({s.last_id - s.read})" for s in dms
                  if s.last_id > s.read]
        if unread:
            self.screen.show(self.formatter.notice(
                "unread direct messages: " + ", ".join(unread) + " (/msg NAME shows one)"))

    def _dm_history(self, peer: str, messages: Sequence[fr.DirectMessage]) -> None:
        f = self.formatter
        if not messages:
            self.screen.show(f.notice(f"no messages with {tt.escape_line(peer)} yet"))
            return
        count = f"{len(messages)} message" + ("" if len(messages) == 1 else "s")
        lines = [f"-- recent messages with {tt.escape_line(peer)}: {count} --"]
        for dm in messages:
            outgoing = name_key(dm.sender) == name_key(self.me)
            lines += f.message(tt.dm_label(peer, outgoing), dm.sender, dm.text, dm.ts)
        lines.append(f"-- end of messages with {tt.escape_line(peer)} --")
        self.screen.show(lines)

    def _printed(self, key: ConvKey, name: str, message_id: int) -> None:
        shown = self._shown.get(key)
        if shown is None or message_id > shown[1]:
            self._shown[key] = (name, message_id)

    def _is_account(self) -> bool:
        return bool(getattr(self.client, "account", False))

    def finish(self) -> None:
        """Leaving: what was printed and not yet marked read is marked now."""
        self._sync_read(at_once=True)

    def _sync_read(self, at_once: bool = False) -> None:
        """What was printed is read: tell the server (accounts; see ``ReadSync``)."""
        if self._lost is not None or self._closed is not None or not self._is_account():
            return
        now = self._clock()
        for key, (_, newest) in self._shown.items():
            self._read_sync.reading(key, newest, now)
        for key, up_to in self._read_sync.due(math.inf if at_once else now):
            name = self._shown[key][0]
            with contextlib.suppress(ProtocolError, ClientError):
                if key.is_room:
                    self.client.mark_read(name, up_to=up_to)
                else:
                    self.client.mark_read(peer=name, up_to=up_to)

    def _ask(self, kind: str, prompts: tuple[str, ...]) -> None:
        self._asking = _Question(kind, prompts, [])
        self.screen.set_secret(True)

    def _answer(self, line: str) -> None:
        """A password typed at a ``/register`` or ``/passwd`` question (never shown)."""
        asking = self._asking
        assert asking is not None
        if not line:
            self._stop_asking()
            self.screen.show(self.formatter.notice(f"/{asking.kind} cancelled"))
            return
        asking.answers.append(line)
        if len(asking.answers) < len(asking.prompts):
            return
        self._stop_asking()
        *old, new, again = asking.answers
        if new != again:
            self.screen.show(self.formatter.notice("the two passwords differ; nothing changed"))
            return
        try:
            check_password(new)
        except ProtocolError:
            self.screen.show(self.formatter.notice(wording.WEAK_PASSWORD))
            return
        if asking.kind == "register":
            self.client.register(new)
        else:
            self.client.passwd(old[0], new)
        self._awaiting = asking.kind

    def _stop_asking(self) -> None:
        self._asking = None
        self.screen.set_secret(False)

    def refresh_status(self) -> None:
        kind, text = self._status()
        self.screen.set_status(kind, text)

    def _status(self) -> tuple[str, str]:
        if self._closed is not None:
            return "closed", ""
        if self._lost is not None or self._reconnect is not None:
            text = f"connection lost ({self._lost})" if self._lost else "connection lost"
            if self._reconnect is not None:
                address, at, attempt = self._reconnect
                left = at - self._clock()
                when = f"in {left:.0f} s" if left >= 0.5 else "now"
                text += f"; reconnecting to {address} {when}"
                if attempt > 1:
                    text += f" (attempt {attempt})"
            waiting = len(self._pending)
            if waiting:
                text += f"; {_messages(waiting)} kept to send"
            return "reconnecting", text + "…"
        if self._delayed:
            return "delayed", (f"{_messages(len(self._pending))} waiting: the server cannot "
                               "store messages right now; sending again until it can…")
        now = self._clock()
        slow = [s for s in self._pending.values() if now - s.at >= SLOW_SEND_S]
        if slow:
            return "sending", f"sending {_messages(len(self._pending))}…"
        return "", ""

    def _refresh_typing(self) -> None:
        now = self._clock()
        for room in list(self._typing):
            alive = {n: until for n, until in self._typing[room].items() if until > now}
            if alive:
                self._typing[room] = alive
            else:
                del self._typing[room]
        names = list(self._typing.get(self.current or "", {}))
        self.screen.set_typing(typing_line(names))

    def _stop_typing(self, room: str, name: str) -> None:
        typing = self._typing.get(room)
        if typing is not None and typing.pop(name, None) is not None:
            self._refresh_typing()

    def _seen(self, name: str) -> None:
        if name_key(name) != name_key(self.me):
            self.names[name_key(name)] = name

    # -- what the person does ---------------------------------------------------

    def submit(self, line: str) -> bool:
        """Carry out a typed line; False when it was not done (keep it to fix it).

        Sets ``ended`` on ``/quit``. While a password is asked for, the line is it.
        """
        if self._asking is not None:
            try:
                self._answer(line)
            except (ProtocolError, ClientError) as exc:
                self.screen.show(self.formatter.notice(str(exc)))
            finally:
                self.screen.set_prompt(self.prompt)
            return True
        try:
            command = cmd.parse(line)
        except ClientError as exc:
            self.screen.show(self.formatter.notice(str(exc)))
            return False
        if command is None:
            return True
        try:
            return self.execute(command)
        except (ProtocolError, ClientError) as exc:
            self.screen.show(self.formatter.notice(str(exc)))
            return False
        finally:
            self.screen.set_prompt(self.prompt)
            self.refresh_status()

    def execute(self, command: cmd.Command) -> bool:
        f = self.formatter
        match command:
            case cmd.Quit():
                self.ended = True
            case cmd.ShowHelp():
                self.screen.show(f.block(cmd.HELP + TERM_HELP))
            case cmd.Say(text=text):
                return self._to_room(text)
            case cmd.Emote(text=text):
                return self._to_room(cmd.emote_text(text))
            case cmd.SendDirect(to=to, text=text):
                if not self._fits(text):
                    return False
                ref = self.client.dm(to, text)
                self._pending[ref] = _Sent(f"{to}", text, self._clock())
                self._seen(to)
            case cmd.ShowDirect(to=to):
                check_name(to, "to")
                self._seen(to)
                if not self._is_account():
                    self.screen.show(f.notice(
                        "stored conversations are for accounts: /register keeps yours"))
                    return False
                self.client.dm_history(to, None, DM_HISTORY_SHOWN)
            case cmd.Register():
                if self._is_account():
                    self.screen.show(f.notice(
                        f"{self.me} is an account already; /passwd changes its password"))
                    return False
                self.screen.show(f.notice(
                    f"choose a password for {self.me}: {MIN_PASSWORD} to {MAX_PASSWORD} "
                    "characters, any you like; an empty line cancels"))
                self._ask("register", ("new password: ", "repeat it: "))
            case cmd.ChangePassword():
                if not self._is_account():
                    self.screen.show(f.notice(
                        "/passwd is for accounts; /register makes your name one"))
                    return False
                self.screen.show(f.notice("an empty line cancels"))
                self._ask("passwd", ("current password: ", "new password: ", "repeat it: "))
            case cmd.JoinRoom(room=room):
                self.client.join(room)
                self.known_rooms.add(room)
                self.current = room
            case cmd.LeaveRoom(room=room):
                leaving = room or self.current
                if leaving is None:
                    self.screen.show(f.notice("you are in no room"))
                    return False
                self.client.leave(leaving)
                if leaving == self.current:
                    rooms = self.client.rooms
                    self.current = rooms[0] if rooms else None
                self._typing.pop(leaving, None)
            case cmd.ListMembers(room=room):
                target = room or self.current
                if target is None:
                    self.screen.show(f.notice("you are in no room"))
                    return False
                self.client.who(target)
        return True

    def edited(self, text: str) -> None:
        """The typed line changed: tell the room we are typing (the client throttles it)."""
        stripped = text.lstrip()
        if self._asking is not None or self.current is None or not stripped or (
                stripped.startswith("/") and not stripped.startswith("//")):
            return
        with contextlib.suppress(ProtocolError, ClientError):
            self.client.typing(self.current)

    def completion(self, line: str, cursor: int) -> tt.Completion:
        if self._asking is not None:
            return tt.Completion(line, cursor, ())
        rooms = sorted(self.known_rooms | set(self.client.rooms))
        return tt.complete(line, cursor, COMMAND_WORDS, rooms, self.names.values())

    def _to_room(self, text: str) -> bool:
        if self.current is None:
            self.screen.show(self.formatter.notice("you are in no room: /join one first"))
            return False
        if not self._fits(text):
            return False
        ref = self.client.send(self.current, text)
        self._pending[ref] = _Sent(tt.room_label(self.current), text, self._clock())
        return True

    def _fits(self, text: str) -> bool:
        problem = check_draft(text, self.max_text).problem
        if problem is not None:
            self.screen.show(self.formatter.notice(problem))
            return False
        return True


TERM_HELP = """
Tab               complete a command, room or name
Up, Down          earlier lines
Ctrl-C, Ctrl-D    quit"""


def _messages(count: int) -> str:
    return f"{count} message" + ("" if count == 1 else "s")


def wrap_quote(text: str, columns: int | None) -> list[str]:
    """A message that was not sent, quoted under the notice so it can be copied again."""
    return tt.wrap("   > ", text, columns)


# ---------------------------------------------------------------------------- app


@dataclass(frozen=True, slots=True)
class _Keys:
    data: bytes


@dataclass(frozen=True, slots=True)
class _Line:
    text: str


@dataclass(frozen=True, slots=True)
class _InputEnded:
    pass


def _read_keys(fd: int, inbox: queue.Queue[object]) -> None:
    """Input thread for a terminal: raw bytes to the queue until end of input."""
    while True:
        try:
            data = os.read(fd, 1024)
        except OSError:
            data = b""
        if not data:
            inbox.put(_InputEnded())
            return
        inbox.put(_Keys(data))


def _read_lines(stream: IO[str], inbox: queue.Queue[object]) -> None:
    """Input thread for a pipe: one item per line, then the end."""
    try:
        for line in iter(stream.readline, ""):
            inbox.put(_Line(line.rstrip("\r\n")))
    except (OSError, ValueError):
        logger.debug("reading input stopped", exc_info=True)
    inbox.put(_InputEnded())


class TermApp:
    """The main loop: takes events, keys and lines off one queue; writes the screen."""

    def __init__(self, inbox: queue.Queue[object], session: TermSession,
                 screen: Screen) -> None:
        self.inbox = inbox
        self.session = session
        self.screen = screen
        self._decoder = KeyDecoder()

    def loop(self) -> None:
        next_tick = time.monotonic() + TICK_S
        while not self.session.ended:
            try:
                item = self.inbox.get(timeout=max(0.0, next_tick - time.monotonic()))
            except queue.Empty:
                item = None
            except KeyboardInterrupt:
                return
            if item is not None:
                self._dispatch(item)
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + TICK_S
                self.session.tick()
                if isinstance(self.screen, LiveScreen):
                    # lines are wrapped at the width the terminal has when they are printed
                    self.session.formatter.columns = self.screen.columns() - 1

    def _dispatch(self, item: object) -> None:
        session = self.session
        match item:
            case ev.ClientEvent():
                session.handle(item)
            case _Line(text=text):
                session.submit(text)
            case _InputEnded():
                session.ended = True
            case _Keys(data=data) if isinstance(self.screen, LiveScreen):
                for key in self._decoder.feed(data):
                    self._key(self.screen, key)
                    if session.ended:
                        return

    def _key(self, screen: LiveScreen, key: str) -> None:
        editor = screen.editor
        if key == "redraw":
            screen.refresh()
            return
        action = editor.press(key)
        match action:
            case Submitted(line=line):
                if self.session.submit(line):
                    editor.clear()
                screen.refresh()
            case Quit():
                self.session.ended = True
            case Edited(text=text):
                self.session.edited(text)
                screen.refresh()
            case TabPressed():
                done = self.session.completion(editor.text, editor.cursor)
                editor.set(done.line, done.cursor)
                if done.candidates:
                    screen.show(["  ".join(done.candidates)])
                screen.refresh()


def _refusal(exc: LoginRefused, name: str, password: bool) -> str:
    if exc.code is ErrorCode.AUTH_FAILED and password:
        return f"login refused: wrong password for {name} (or {name} has no account)"
    if exc.code is ErrorCode.RATE_LIMITED:
        return "login refused: " + wording.TOO_MANY_ATTEMPTS
    if exc.code is ErrorCode.NAME_TAKEN:
        return (f"login refused: {exc.message} (if {name} is your account, give its password: "
                "--password-file, $CHAT_PASSWORD, or run chat-term on a terminal to be asked)")
    return f"login refused: {exc.message}"


PASSWORD_TRIES = 3
"""How many times chat-term asks for a password the gateway refuses, like ``sudo``."""


def log_in(make_client: Callable[[str | None], ChatClient], name: str, password: str | None,
           ask: Callable[[str], str] | None, say: Callable[[str], None],
           inbox: queue.Queue[object]) -> tuple[ChatClient, fr.Welcome] | int:
    """Connect, asking for the password (``ask``, without echo) when the name turns out to
    be an account's, or the one asked for was wrong; the client and its welcome, or the
    exit status. Events of refused attempts are dropped from ``inbox``."""
    asked = 0
    while True:
        client = make_client(password)
        try:
            return client, client.connect()
        except LoginRefused as exc:
            client.close()
            _drain(inbox)
            retry = ask is not None and asked < PASSWORD_TRIES and (
                (exc.code is ErrorCode.NAME_TAKEN and password is None)
                or (exc.code is ErrorCode.AUTH_FAILED and asked > 0))
            if not retry or ask is None:
                say(_refusal(exc, name, password is not None))
                return 1
            if exc.code is ErrorCode.NAME_TAKEN:
                say(f"{name} is taken: someone is using it, or it is an account's name. "
                    "If it is yours, give its password (an empty one gives up).")
            else:
                say("wrong password; try again (an empty one gives up)")
            asked += 1
            password = ask(f"password for {name}: ") or None
            if password is None:
                return 1
        except NoGatewayAvailable as exc:
            client.close()
            _drain(inbox)
            say(str(exc))
            return 2


def _drain(inbox: queue.Queue[object]) -> None:
    while True:
        try:
            inbox.get_nowait()
        except queue.Empty:
            return


def run(client: ChatClient, screen: Screen, inbox: queue.Queue[object],
        columns: int | None, start_input: Callable[[], None],
        welcome: fr.Welcome | None = None) -> int:
    """Log in (unless ``welcome`` says it was done), then run until /quit, end of input,
    or the session ends; the exit status."""
    if welcome is None:
        try:
            welcome = client.connect()
        except LoginRefused as exc:
            screen.show([_refusal(exc, client.name, False)])
            return 1
        except NoGatewayAvailable as exc:
            screen.show([str(exc)])
            return 2
    max_text = welcome.limits.get("max_text")
    session = TermSession(client, screen, tt.LineFormatter(columns),
                          max_text=max_text if isinstance(max_text, int) else Limits().max_text)
    start_input()
    try:
        TermApp(inbox, session, screen).loop()
    finally:
        session.finish()
        client.close()
        while True:  # what closing reported (the last "not sent"), then the end
            try:
                item = inbox.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, ev.SendFailed | ev.Closed):
                session.handle(item)
    return 0


# ---------------------------------------------------------------------- options


@dataclass(frozen=True, slots=True)
class Options:
    name: str
    gateways: tuple[str, ...]
    rooms: tuple[str, ...]
    cafile: str | None
    verbose: bool
    password: str | None = dataclasses.field(default=None, repr=False)


def read_password_file(path: str) -> str:
    """The first line of ``path`` (``-``: stdin), without its line end."""
    if path == "-":
        text = sys.stdin.readline()
    else:
        with open(path, encoding="utf-8") as f:
            text = f.readline()
    line = text.removesuffix("\n").removesuffix("\r")
    if not line:
        raise ValueError(f"no password in {path}")
    return line


def parse(argv: Sequence[str] | None, environ: Mapping[str, str]) -> Options:
    """The command line (and ``$CHAT_NAME``, ``$CHAT_GATEWAYS``); exits 2 when wrong."""
    parser = new_parser("chat-term", "The ChatService client for a terminal.")
    parser.add_argument("--name", default=environ.get("CHAT_NAME"),
                        help="your user name (default: $CHAT_NAME)")
    add_gateway_options(parser)
    parser.add_argument("--room", action="append", dest="rooms", metavar="ROOM",
                        help="a room to be in, the first is the current one (default: lobby)")
    parser.add_argument("--cafile", help="CA certificates to trust for TLS gateways")
    parser.add_argument("--password-file", metavar="PATH",
                        help="log in to your account with the password on the first line of "
                             "PATH ('-': stdin) (default: $CHAT_PASSWORD; on a terminal you "
                             "are asked when the name is an account's)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log to stderr")
    args = parser.parse_args(argv)
    if not args.name:
        parser.error("--name is required (or set CHAT_NAME)")
    gateways = gateways_from_args(parser, args, environ)
    password = environ.get("CHAT_PASSWORD") or None
    if args.password_file:
        try:
            password = read_password_file(args.password_file)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            parser.error(f"cannot read --password-file: {exc}")
    return Options(args.name, tuple(gateways), tuple(args.rooms or [LOBBY]), args.cafile,
                   args.verbose, password)


def _ask_password(prompt: str) -> str:
    """Read a password from the terminal without echo (before the screen goes raw)."""
    try:
        return getpass.getpass(prompt)
    except (EOFError, KeyboardInterrupt):
        return ""


def _terminal_columns() -> int:
    try:
        return os.get_terminal_size(sys.stdout.fileno()).columns
    except OSError:
        return 80


def main(argv: Sequence[str] | None = None) -> int:
    options = parse(argv, os.environ)
    logging.basicConfig(level=logging.DEBUG if options.verbose else logging.WARNING,
                        stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    interactive = (sys.stdin.isatty() and sys.stdout.isatty()
                   and os.environ.get("TERM", "dumb") != "dumb")
    inbox: queue.Queue[object] = queue.Queue()
    tls_context = ssl.create_default_context(cafile=options.cafile) if options.cafile else None

    def make_client(password: str | None) -> ChatClient:
        return ChatClient(options.name, options.gateways, options.rooms, on_event=inbox.put,
                          tls_context=tls_context, hold_unavailable=HOLD_UNAVAILABLE_S,
                          password=password)

    def say(text: str) -> None:
        sys.stdout.write(tt.escape_line(text) + "\n")
        sys.stdout.flush()

    can_ask = sys.stdin.isatty()
    logged_in = log_in(make_client, options.name, options.password,
                       _ask_password if can_ask else None, say, inbox)
    if isinstance(logged_in, int):
        return logged_in
    client, welcome = logged_in
    if not interactive:
        def read_lines() -> None:
            threading.Thread(target=_read_lines, args=(sys.stdin, inbox), name="stdin",
                             daemon=True).start()
        columns = _terminal_columns() - 1 if sys.stdout.isatty() else None
        return run(client, PlainScreen(sys.stdout), inbox, columns, read_lines, welcome)
    fd = sys.stdin.fileno()
    live = LiveScreen(sys.stdout, _terminal_columns)

    def read_keys() -> None:
        threading.Thread(target=_read_keys, args=(fd, inbox), name="keys", daemon=True).start()

    with raw_terminal(fd):
        try:
            return run(client, live, inbox, _terminal_columns() - 1, read_keys, welcome)
        finally:
            live.finish()


if __name__ == "__main__":
    sys.exit(main())
