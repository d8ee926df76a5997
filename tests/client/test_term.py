"""chat-term: the session (events -> lines and status, commands -> client calls), the line
editor, and main() end to end on a pipe. What a terminal shows is in test_term_tmux.py."""

from __future__ import annotations

import dataclasses
import io
import os
import queue
import threading
import time
from collections.abc import Sequence

import pytest

from client import events as ev
from client import term
from client import termtext as tt
from client.backoff import NoBackoff
from client.connection import ChatClient
from protocol import frames as fr
from protocol.errors import ErrorCode, ProtocolError
from tests.client.fake_gateway import FakeConnection, FakeGateway, history
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(60)


def without_ref(frame: fr.ClientFrame) -> fr.ClientFrame:
    """Refs are random: compare sends without them."""
    if isinstance(frame, fr.Send | fr.Dm):
        assert frame.ref
        return dataclasses.replace(frame, ref=None)
    return frame


class RecordingScreen:
    """A ``Screen`` that keeps what it was told, for assertions."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.statuses: list[tuple[str, str]] = []
        self.typing = ""
        self.prompt = ""
        self._lock = threading.Lock()

    def show(self, lines: Sequence[str]) -> None:
        with self._lock:
            self.lines.extend(lines)

    def set_status(self, kind: str, text: str) -> None:
        if not self.statuses or self.statuses[-1] != (kind, text):
            self.statuses.append((kind, text))

    def set_typing(self, text: str) -> None:
        self.typing = text

    def set_prompt(self, text: str) -> None:
        self.prompt = text

    def text(self) -> str:
        with self._lock:
            return "\n".join(self.lines)


class StubClient:
    """Just enough of ChatClient for the session's event handling."""

    name = "alice"
    rooms = ("lobby",)

    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []
        self._refs = 0

    def send(self, room: str, text: str) -> str:
        self._refs += 1
        self.calls.append(("send", room, text))
        return f"r{self._refs}"

    def typing(self, room: str) -> None:
        self.calls.append(("typing", room))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def session_with(screen: RecordingScreen, clock: Clock) -> tuple[term.TermSession, StubClient]:
    client = StubClient()
    session = term.TermSession(client, screen, tt.LineFormatter(None), clock=clock)  # type: ignore[arg-type]
    return session, client


def test_history_is_shown_as_history_with_times_and_own_lines_once() -> None:
    screen, clock = RecordingScreen(), Clock()
    session, client = session_with(screen, clock)
    ts = time.mktime((2024, 6, 3, 12, 0, 0, 0, 0, -1))  # noon: the minute before is the same day
    session.handle(ev.HistoryLoaded("lobby", (fr.Message("lobby", 1, "bob", "old", ts - 60),),
                                    True, False))
    assert session.submit("hello all")
    assert client.calls == [("send", "lobby", "hello all")]
    assert "hello all" not in screen.text(), "shown once: when the gateway has it"
    session.handle(ev.RoomMessage(fr.Message("lobby", 2, "alice", "hello all", ts)))
    session.handle(ev.Acked("r1", 2))
    stamp = tt.clock(ts - 60)
    assert screen.lines == [
        "-- history in [lobby]: 1 message --",
        "-- Monday, 03 June 2024 --",
        f"{stamp} [lobby] bob: old",
        "-- end of history in [lobby] --",
        f"{tt.clock(ts)} [lobby] alice: hello all",
    ]
    assert screen.text().count("hello all") == 1
    assert screen.prompt == "[lobby] "


def test_reconnecting_is_one_status_line_not_a_line_per_attempt() -> None:
    screen, clock = RecordingScreen(), Clock()
    session, _ = session_with(screen, clock)
    session.handle(ev.Disconnected("gateway went away"))
    for attempt in range(1, 6):
        session.handle(ev.Reconnecting("127.0.0.1:5051", 2.0, attempt))
        clock.now += 2
        session.tick()
    assert screen.lines == [], "no scrollback line per attempt"
    kinds = {kind for kind, _ in screen.statuses}
    assert kinds == {"reconnecting"}
    assert screen.statuses[-1][1] == ("connection lost (gateway went away); reconnecting to "
                                      "127.0.0.1:5051 now (attempt 5)…")
    session.handle(ev.Connected("gw2", "alice", True))
    assert screen.lines == ["-- reconnected to gw2 after 10 s"]
    assert screen.statuses[-1] == ("", "")


def test_a_held_send_is_waiting_not_lost() -> None:
    screen, clock = RecordingScreen(), Clock()
    session, _ = session_with(screen, clock)
    session.submit("typed while Redis was frozen")
    session.handle(ev.SendDelayed("r1", ProtocolError(ErrorCode.UNAVAILABLE, "broker down")))
    kind, text = screen.statuses[-1]
    assert kind == "delayed" and text.startswith("1 message waiting")
    assert "not sent" not in screen.text()
    session.handle(ev.Acked("r1", 7))
    assert screen.statuses[-1] == ("", "")


def test_a_failed_send_is_quoted_so_it_can_be_sent_again() -> None:
    screen, clock = RecordingScreen(), Clock()
    session, _ = session_with(screen, clock)
    session.submit("hello\nworld")
    session.handle(ev.SendFailed("r1", ProtocolError(ErrorCode.RATE_LIMITED, "slow down")))
    assert screen.lines == ["-- not sent to [lobby]: slow down", "   > hello", "     world"]


def test_a_too_long_line_is_refused_with_the_reason_and_kept() -> None:
    screen, clock = RecordingScreen(), Clock()
    session, client = session_with(screen, clock)
    assert not session.submit("x" * 4050)
    assert client.calls == []
    assert "Too long to send: 4,050 characters, the limit is 4,000" in screen.text()


def test_typing_line_for_the_current_room_expires() -> None:
    screen, clock = RecordingScreen(), Clock()
    session, client = session_with(screen, clock)
    session.handle(ev.Typing("lobby", "bob"))
    session.handle(ev.Typing("dev", "carol"))
    assert screen.typing == "bob is typing…"
    clock.now += 5
    session.tick()
    assert screen.typing == ""
    session.edited("hel")
    session.edited("/jo")
    assert client.calls == [("typing", "lobby")]


def test_line_editor_keys() -> None:
    decoder, editor = term.KeyDecoder(), term.LineEditor()
    keys = decoder.feed("héllo wörld".encode()[:3]) + decoder.feed("héllo wörld".encode()[3:])
    for key in keys:
        editor.press(key)
    assert editor.text == "héllo wörld"
    for key in decoder.feed(b"\x1b[D\x1b[D\x17"):
        editor.press(key)
    assert (editor.text, editor.cursor) == ("héllo ld", 6)
    for key in decoder.feed(b"\x01X\x05!"):
        editor.press(key)
    assert editor.text == "Xhéllo ld!"
    assert editor.press("enter") == term.Submitted("Xhéllo ld!")
    editor.clear()
    assert decoder.feed(b"\x1b[A") == ["up"]
    editor.press("up")
    assert editor.text == "Xhéllo ld!"
    editor.clear()
    assert editor.press("eof") == term.Quit()
    assert decoder.feed(b"\x03\t") == ["quit", "tab"]


def test_commands_are_carried_out_on_the_client() -> None:
    received: list[fr.ClientFrame] = []

    def script(conn: FakeConnection) -> None:
        conn.login(histories={"lobby": history([1])})
        conn.serve()
        received.extend(conn.received)

    typed = "\n".join(["hello all", "/join dev", "/me waves", "/msg bob hi bob", "/who",
                       "/frob", "/join Bad!", "/leave", "/help", "after leave", "/quit",
                       "never read"]) + "\n"
    out = io.StringIO()
    inbox: queue.Queue[object] = queue.Queue()
    screen = term.PlainScreen(out)
    with FakeGateway(script) as gw:
        client = ChatClient("alice", [gw.address], backoff=NoBackoff(), on_event=inbox.put)

        def type_after_history() -> None:
            # A person reads the history before typing; a script has to wait for it.
            wait_for(lambda: "[lobby] bob: message 1" in out.getvalue(), what="history shown")
            term._read_lines(io.StringIO(typed), inbox)

        def start_input() -> None:
            threading.Thread(target=type_after_history, daemon=True).start()

        assert term.run(client, screen, inbox, None, start_input) == 0
        wait_for(lambda: received, what="the connection to end")
    sent = [without_ref(f) for f in received if not isinstance(f, fr.Hello | fr.Ping)]
    assert sent == [
        fr.Send("lobby", "hello all"), fr.Join("dev"), fr.Send("dev", "/me waves"),
        fr.Dm("bob", "hi bob"), fr.Who("dev"), fr.Leave("dev"),
        fr.Send("lobby", "after leave"),  # back to the first room
        fr.Bye(),
    ]
    text = out.getvalue()
    assert "[lobby] bob: message 1" in text
    assert "unknown command /frob" in text
    assert "-- room must be" in text  # the protocol's bad_room message
    assert "/msg NAME TEXT" in text and "Tab               complete" in text  # help


def test_main_runs_on_a_pipe(monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    def script(conn: FakeConnection) -> None:
        conn.login()
        conn.serve()  # stdin ends at once: the client closes without waiting for acks

    with FakeGateway(script) as gw:
        monkeypatch.setenv("CHAT_GATEWAYS", f"127.0.0.1:1, {gw.address}")
        monkeypatch.setattr("sys.stdin", io.StringIO("hi there\n"))
        assert term.main(["--name", "alice", "--room", "lobby"]) == 0
        conn = gw.wait_connections(1)
        wait_for(lambda: fr.Bye() in conn.received, what="the client to say bye")
    sends = [without_ref(f) for f in conn.received if isinstance(f, fr.Send | fr.Bye)]
    assert sends == [fr.Send("lobby", "hi there"), fr.Bye()]
    out = capsys.readouterr().out
    assert "-- connected to fake-gw as alice" in out
    assert "-- closed: closed" in out


def test_main_reports_a_refused_login(monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    def script(conn: FakeConnection) -> None:
        conn.expect(fr.Hello)
        conn.send(fr.Error(ErrorCode.NAME_TAKEN, "alice is taken"))
        conn.serve()

    with FakeGateway(script) as gw:
        monkeypatch.setattr("sys.stdin", io.StringIO(""))
        assert term.main(["--name", "alice", "--gateway", gw.address]) == 1
    assert "login refused: alice is taken" in capsys.readouterr().out


def test_main_needs_a_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHAT_NAME", raising=False)
    with pytest.raises(SystemExit) as info:
        term.main([])
    assert info.value.code == 2


def test_main_keeps_a_send_typed_while_redis_was_frozen(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The gateway answers ``unavailable``: chat-term keeps the message, sends it again and
    shows it once when stored, instead of "not sent: message broker is unavailable"."""
    acked = threading.Event()

    def script(conn: FakeConnection) -> None:
        conn.login()
        first = conn.expect(fr.Send)
        conn.send(fr.Error(ErrorCode.UNAVAILABLE, "message broker is unavailable", first.ref))
        again = conn.expect(fr.Send)
        assert again == first
        conn.send(fr.Ack(again.ref or "", 1),
                  fr.Message("lobby", 1, "alice", again.text, time.time()))
        acked.set()
        conn.serve()

    read_fd, write_fd = os.pipe()
    with FakeGateway(script) as gw, os.fdopen(read_fd) as stdin:
        monkeypatch.setattr("sys.stdin", stdin)
        os.write(write_fd, b"during the freeze\n")

        def end_input_after_ack() -> None:
            acked.wait(20)
            os.close(write_fd)

        closer = threading.Thread(target=end_input_after_ack)
        closer.start()
        assert term.main(["--name", "alice", "--gateway", gw.address]) == 0
        closer.join()
    out = capsys.readouterr().out
    assert acked.is_set()
    assert "not sent" not in out
