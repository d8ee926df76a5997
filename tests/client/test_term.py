"""chat-term: event lines, commands carried out on a client, and main() end to end on a pipe."""

from __future__ import annotations

import dataclasses
import io
import threading

import pytest

from client import events as ev
from client import term
from client.backoff import NoBackoff
from client.connection import ChatClient
from client.errors import SendAborted
from protocol import frames as fr
from protocol.errors import ErrorCode, ProtocolError
from tests.client.fake_gateway import FakeConnection, FakeGateway, history, message
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(60)


def without_ref(frame: fr.ClientFrame) -> fr.ClientFrame:
    """Refs are random: compare sends without them."""
    if isinstance(frame, fr.Send | fr.Dm):
        assert frame.ref
        return dataclasses.replace(frame, ref=None)
    return frame


@pytest.mark.parametrize(
    ("event", "line"),
    [
        (ev.RoomMessage(message(3)), "[lobby] bob: message 3"),
        (ev.RoomMessage(fr.Message("dev", 1, "bob", "/me waves", 0.0)), "[dev] * bob waves"),
        (ev.HistoryLoaded("lobby", history([1, 2]).messages, True, False),
         "[lobby] bob: message 1\n[lobby] bob: message 2"),
        (ev.HistoryLoaded("lobby", history([1]).messages, False, True),
         "-- earlier in lobby:\n[lobby] bob: message 1"),
        (ev.HistoryLoaded("lobby", (), True, False), None),
        (ev.DirectReceived(fr.DirectMessage("bob", "alice", "psst", 0.0)), "[dm] bob: psst"),
        (ev.DirectReceived(fr.DirectMessage("Alice", "bob", "hi", 0.0)), "[dm to bob] Alice: hi"),
        (ev.MemberJoined("dev", "bob"), "-- bob joined dev"),
        (ev.MemberLeft("dev", "bob"), "-- bob left dev"),
        (ev.Members("dev", ("alice", "bob")), "-- in dev: alice, bob"),
        (ev.Connected("gw1", "alice", False), "-- connected to gw1 as alice"),
        (ev.Connected("gw2", "alice", True), "-- reconnected to gw2 as alice"),
        (ev.Disconnected("shutdown"), "-- disconnected: shutdown"),
        (ev.Reconnecting("h:1", 0.25, 2), "-- reconnecting to h:1 in 0.2 s (attempt 2)"),
        (ev.EpochReset("dev", "e2"), "-- the history of dev restarted"),
        (ev.SendFailed("r", ProtocolError(ErrorCode.RATE_LIMITED, "slow down")),
         "-- not sent: slow down"),
        (ev.SendFailed("r", SendAborted()), "-- not sent: " + SendAborted().message),
        (ev.ServerError(ProtocolError(ErrorCode.BAD_ROOM, "nope")), "-- error: nope"),
        (ev.Closed("replaced"), "-- closed: replaced"),
        (ev.Typing("dev", "bob"), None),
        (ev.Acked("r", 1), None),
    ],
)
def test_describe_prints_each_event_as_one_readable_line(event: ev.ClientEvent,
                                                         line: str | None) -> None:
    assert term.describe(event, "alice") == line


def test_commands_are_carried_out_on_the_client() -> None:
    received: list[fr.ClientFrame] = []

    def script(conn: FakeConnection) -> None:
        conn.login(histories={"lobby": history([1])})
        conn.serve()
        received.extend(conn.received)

    typed = iter(["hello all\n", "/join dev\n", "/me waves\n", "/msg bob hi bob\n", "/who\n",
                  "/frob\n", "/join Bad!\n", "/leave\n", "/help\n", "after leave\n", "/quit\n",
                  "never read\n"])
    out = io.StringIO()
    console = term.Console(out, interactive=False)

    def read_line(prompt: str) -> str:
        # A person reads the history before typing; a script has to wait for it.
        wait_for(lambda: "[lobby] bob: message 1" in out.getvalue(), what="history shown")
        return next(typed)

    with FakeGateway(script) as gw:
        client = ChatClient("alice", [gw.address], backoff=NoBackoff(),
                            on_event=lambda e: console.show(term.describe(e, "alice") or "."))
        assert term.run(client, console, read_line, threading.Event()) == 0
        wait_for(lambda: received, what="the connection to end")
    sent = [without_ref(f) for f in received if not isinstance(f, fr.Hello | fr.Ping)]
    assert sent == [
        fr.Send("lobby", "hello all"), fr.Join("dev"), fr.Send("dev", "/me waves"),
        fr.Dm("bob", "hi bob"), fr.Who("dev"), fr.Leave("dev"),
        fr.Send("lobby", "after leave"),  # back to the first room
        fr.Bye(),
    ]
    assert next(typed) == "never read\n"
    text = out.getvalue()
    assert "[lobby] bob: message 1" in text
    assert "unknown command /frob" in text
    assert "-- room must be" in text  # the protocol's bad_room message
    assert "/msg NAME TEXT" in text  # help


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


def test_console_redraws_the_typed_line_when_readline_is_active() -> None:
    class FakeReadline:
        @staticmethod
        def get_line_buffer() -> str:
            return "half typed"

    out = io.StringIO()
    console = term.Console(out, interactive=False)
    console._readline = FakeReadline()  # type: ignore[assignment]
    console.prompt = "[lobby] "
    console.show("[lobby] bob: hi")
    assert out.getvalue() == "\r\x1b[K[lobby] bob: hi\n[lobby] half typed"
