"""chat-term: the ChatService client for a terminal.

    chat-term --name alice [--gateway host:port ...] [--room lobby ...]

Lines typed go to the current room; slash commands (``/help``) are the same
as in the Tk app (``client.commands``). Incoming lines are printed above the
line being typed: with ``readline`` on a terminal the typed text is redrawn
below them; on a dumb terminal or a pipe lines are simply printed.
"""

from __future__ import annotations

import argparse
import logging
import os
import ssl
import sys
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import TextIO

from client import commands as cmd
from client import events as ev
from client.connection import ChatClient
from client.errors import ClientError, LoginRefused, NoGatewayAvailable
from protocol.errors import ProtocolError
from protocol.names import LOBBY, name_key

DEFAULT_GATEWAY = "localhost:5050"


def _load_readline() -> ModuleType | None:
    try:
        import readline
    except ImportError:  # Windows, or Python built without it
        return None
    return readline


class Console:
    """Prints lines above the input line without garbling what is being typed."""

    def __init__(self, out: TextIO, interactive: bool) -> None:
        self._out = out
        self._lock = threading.Lock()  # one writer at a time: reader thread and main thread
        self._readline = _load_readline() if interactive else None
        self.prompt = ""

    def show(self, text: str) -> None:
        with self._lock:
            if self._readline is None:
                self._out.write(text + "\n")
            else:
                typed = self._readline.get_line_buffer()
                # \r and "erase line" remove the prompt and the typed text; redraw them after.
                self._out.write(f"\r\x1b[K{text}\n{self.prompt}{typed}")
            self._out.flush()


def describe(event: ev.ClientEvent, me: str) -> str | None:
    """The line(s) chat-term prints for an event, or None to print nothing."""
    match event:
        case ev.RoomMessage(message=m):
            return f"[{m.room}] {cmd.format_text(m.sender, m.text)}"
        case ev.HistoryLoaded(room=room, messages=messages, older=older):
            lines = [f"[{room}] {cmd.format_text(m.sender, m.text)}" for m in messages]
            if older and lines:
                lines.insert(0, f"-- earlier in {room}:")
            return "\n".join(lines) or None
        case ev.DirectReceived(dm=dm):
            if name_key(dm.sender) == name_key(me):
                return f"[dm to {dm.to}] {cmd.format_text(dm.sender, dm.text)}"
            return f"[dm] {cmd.format_text(dm.sender, dm.text)}"
        case ev.MemberJoined(room=room, name=name):
            return f"-- {name} joined {room}"
        case ev.MemberLeft(room=room, name=name):
            return f"-- {name} left {room}"
        case ev.Members(room=room, names=names):
            return f"-- in {room}: {', '.join(names) or 'nobody'}"
        case ev.Connected(gateway=gateway, name=name, resumed=resumed):
            return f"-- {'reconnected' if resumed else 'connected'} to {gateway} as {name}"
        case ev.Disconnected(reason=reason):
            return f"-- disconnected: {reason}"
        case ev.Reconnecting(address=address, delay=delay, attempt=attempt):
            return f"-- reconnecting to {address} in {delay:.1f} s (attempt {attempt})"
        case ev.EpochReset(room=room):
            return f"-- the history of {room} restarted"
        case ev.SendFailed(error=error):
            return f"-- not sent: {error.message}"
        case ev.ServerError(error=error):
            return f"-- error: {error.message}"
        case ev.Closed(reason=reason):
            return f"-- closed: {reason}"
        case _:
            return None  # typing, acks


class TermSession:
    """Carries out commands on a client; remembers the current room."""

    def __init__(self, client: ChatClient, console: Console) -> None:
        self.client = client
        self.console = console
        rooms = client.rooms
        self.current: str | None = rooms[0] if rooms else None

    @property
    def prompt(self) -> str:
        return f"[{self.current or '-'}] "

    def execute(self, command: cmd.Command) -> bool:
        """Run one command; False when the user asked to quit."""
        match command:
            case cmd.Quit():
                return False
            case cmd.ShowHelp():
                self.console.show(cmd.HELP)
            case cmd.Say(text=text):
                self._to_room(text)
            case cmd.Emote(text=text):
                self._to_room(cmd.emote_text(text))
            case cmd.SendDirect(to=to, text=text):
                self.client.dm(to, text)
            case cmd.JoinRoom(room=room):
                self.client.join(room)
                self.current = room
            case cmd.LeaveRoom(room=room):
                leaving = room or self.current
                if leaving is None:
                    self.console.show("-- you are in no room")
                    return True
                self.client.leave(leaving)
                if leaving == self.current:
                    rooms = self.client.rooms
                    self.current = rooms[0] if rooms else None
            case cmd.ListMembers(room=room):
                if (room or self.current) is None:
                    self.console.show("-- you are in no room")
                else:
                    self.client.who(room or self.current or "")
        return True

    def _to_room(self, text: str) -> None:
        if self.current is None:
            self.console.show("-- you are in no room: /join one first")
        else:
            self.client.send(self.current, text)


def run(client: ChatClient, console: Console, read_line: Callable[[str], str],
        ended: threading.Event) -> int:
    """Log in, then read lines until EOF, /quit, or the session ends; the exit status."""
    try:
        client.connect()
    except LoginRefused as exc:
        console.show(f"login refused: {exc.message}")
        return 1
    except NoGatewayAvailable as exc:
        console.show(str(exc))
        return 2
    session = TermSession(client, console)
    try:
        while not ended.is_set():
            console.prompt = session.prompt
            try:
                line = read_line(session.prompt)
            except (EOFError, KeyboardInterrupt):
                break
            try:
                command = cmd.parse(line)
                if command is not None and not session.execute(command):
                    break
            except (ProtocolError, ClientError) as exc:
                console.show(f"-- {exc}")
    finally:
        client.close()
    return 0


def _gateways_from_env() -> list[str]:
    value = os.environ.get("CHAT_GATEWAYS", "")
    return [g for g in value.replace(",", " ").split() if g] or [DEFAULT_GATEWAY]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chat-term", description=__doc__.splitlines()[0])
    parser.add_argument("--name", default=os.environ.get("CHAT_NAME"),
                        help="your user name (default: $CHAT_NAME)")
    parser.add_argument("--gateway", action="append", dest="gateways", metavar="HOST:PORT",
                        help="a gateway, tls://HOST:PORT for TLS; repeat for fail-over "
                             "(default: $CHAT_GATEWAYS or localhost:5050)")
    parser.add_argument("--room", action="append", dest="rooms", metavar="ROOM",
                        help="a room to be in, the first is the current one (default: lobby)")
    parser.add_argument("--cafile", help="CA certificates to trust for TLS gateways")
    parser.add_argument("-v", "--verbose", action="store_true", help="log to stderr")
    return parser


def _read_stdin(prompt: str) -> str:
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    return line


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not args.name:
        _parser().error("--name is required (or set CHAT_NAME)")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    interactive = (sys.stdin.isatty() and sys.stdout.isatty()
                   and os.environ.get("TERM", "dumb") != "dumb")
    console = Console(sys.stdout, interactive)
    ended = threading.Event()
    name: str = args.name

    def on_event(event: ev.ClientEvent) -> None:
        text = describe(event, name)
        if text is not None:
            console.show(text)
        if isinstance(event, ev.Closed):
            ended.set()

    tls_context = ssl.create_default_context(cafile=args.cafile) if args.cafile else None
    try:
        client = ChatClient(name, args.gateways or _gateways_from_env(), args.rooms or [LOBBY],
                            on_event=on_event, tls_context=tls_context)
    except ValueError as exc:
        _parser().error(str(exc))
    return run(client, console, input if interactive else _read_stdin, ended)


if __name__ == "__main__":
    sys.exit(main())
