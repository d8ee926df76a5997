"""chat-term and accounts, without a terminal: the password asked at log-in, /register and
/passwd on the input line (never shown, never recalled), /msg NAME, unread conversations
at log-in and read marks. On a real terminal: test_term_tmux.py."""

from __future__ import annotations

import io
import queue
import time
from pathlib import Path

import pytest

from client import events as ev
from client import term
from client import termtext as tt
from client.errors import LoginRefused
from protocol import frames as fr
from protocol.errors import ErrorCode, ProtocolError
from tests.client.test_term import Clock, RecordingScreen

PW = "correct horse battery"


class SecretScreen(RecordingScreen):
    def __init__(self) -> None:
        super().__init__()
        self.secret = False

    def set_secret(self, secret: bool) -> None:
        self.secret = secret


class AccountClient:
    """The part of ChatClient a session uses for accounts."""

    name = "alice"
    rooms = ("lobby",)

    def __init__(self, account: bool = False) -> None:
        self.account = account
        self.calls: list[tuple[object, ...]] = []

    def register(self, password: str) -> None:
        self.calls.append(("register", password))

    def passwd(self, old: str, new: str) -> None:
        self.calls.append(("passwd", old, new))

    def dm_history(self, peer: str, before: int | None = None, limit: int = 50) -> None:
        self.calls.append(("dm_history", peer, before, limit))

    def mark_read(self, room: str | None = None, *, peer: str | None = None,
                  up_to: int) -> None:
        self.calls.append(("mark_read", room, peer, up_to))


def session(account: bool = False) -> tuple[term.TermSession, AccountClient, SecretScreen,
                                             Clock]:
    screen, clock, client = SecretScreen(), Clock(), AccountClient(account)
    s = term.TermSession(client, screen, tt.LineFormatter(None), clock=clock)  # type: ignore[arg-type]
    return s, client, screen, clock


def test_register_asks_twice_on_the_input_line_and_never_shows_the_password() -> None:
    s, client, screen, _ = session()
    assert s.submit("/register")
    assert screen.secret and screen.prompt == "new password: "
    assert s.submit(PW)
    assert screen.prompt == "repeat it: "
    assert s.submit(PW)
    assert not screen.secret and screen.prompt == "[lobby] "
    assert client.calls == [("register", PW)]
    s.handle(ev.Registered("alice"))
    assert "alice is an account now" in screen.text()
    assert PW not in screen.text()


def test_register_refuses_different_or_weak_passwords_locally() -> None:
    s, client, screen, _ = session()
    for first, second in ((PW, PW + "!"), ("tiny1", "tiny1")):
        s.submit("/register")
        s.submit(first)
        s.submit(second)
    s.submit("/register")
    s.submit("")  # an empty line cancels
    assert client.calls == []
    text = screen.text()
    assert "the two passwords differ" in text
    assert "8 to 1024 characters" in text
    assert "/register cancelled" in text
    assert "tiny1" not in text and PW not in text


def test_passwd_asks_the_current_password_and_reports_a_refusal() -> None:
    s, client, screen, _ = session(account=True)
    for line in ("/passwd", "old password", "a new password", "a new password"):
        s.submit(line)
    assert client.calls == [("passwd", "old password", "a new password")]
    s.handle(ev.ServerError(ProtocolError(ErrorCode.AUTH_FAILED, "wrong name or password")))
    assert "The current password is wrong" in screen.text()
    s.submit("/register")
    assert "is an account already" in screen.text()


def test_msg_name_shows_the_conversations_recent_messages() -> None:
    s, client, screen, _ = session(account=True)
    assert s.submit("/msg bob")
    assert client.calls == [("dm_history", "bob", None, term.DM_HISTORY_SHOWN)]
    ts = time.time()
    s.handle(ev.DmHistoryLoaded("bob", (
        fr.DirectMessage("bob", "alice", "are you there?", ts, 1, "e"),
        fr.DirectMessage("alice", "bob", "yes!", ts, 2, "e")), True))
    lines = screen.lines
    start = lines.index("-- recent messages with bob: 2 messages --")
    assert lines[start + 1].startswith("-- ")  # the day line
    assert lines[start + 2].endswith("[dm] bob: are you there?")
    assert lines[start + 3].endswith("[dm to bob] alice: yes!")
    assert lines[start + 4] == "-- end of messages with bob --"


def test_a_guest_is_told_that_stored_conversations_need_an_account() -> None:
    s, client, screen, _ = session()
    assert not s.submit("/msg bob")
    assert client.calls == []
    assert "stored conversations are for accounts" in screen.text()


def test_unread_conversations_are_listed_and_what_is_printed_is_marked_read() -> None:
    s, client, screen, clock = session(account=True)
    s.handle(ev.AccountState(True, (fr.DmSummary("bob", "e", 4, 2),
                                    fr.DmSummary("carol", "e", 3, 3)), {"lobby": 7}))
    assert "unread direct messages: bob (2) (/msg NAME shows one)" in screen.text()
    s.handle(ev.DirectReceived(fr.DirectMessage("bob", "alice", "ping", time.time(), 4, "e")))
    s.handle(ev.RoomMessage(fr.Message("lobby", 7, "bob", "old news", time.time())))
    s.tick()
    clock.now += term.READ_DELAY_S
    s.tick()
    assert client.calls == [("mark_read", None, "bob", 4)], "lobby 7 was known to be read"


def test_room_history_at_login_marks_where_the_unread_messages_start() -> None:
    s, _, screen, _ = session(account=True)
    s.handle(ev.AccountState(True, (), {"lobby": 2}))
    ts = time.time()
    s.handle(ev.HistoryLoaded("lobby", tuple(
        fr.Message("lobby", i, "alice" if i == 3 else "bob", f"note {i}", ts)
        for i in range(1, 5)), True, False))
    lines = screen.lines
    assert lines[0] == "-- history in [lobby]: 4 messages, 1 unread --"
    new = lines.index("-- new since you last read --")
    assert lines[new + 1].endswith("bob: note 4")
    assert lines[new - 1].endswith("alice: note 3"), "one's own message is not unread"


def test_log_in_asks_for_the_password_when_the_name_is_an_accounts() -> None:
    attempts: list[str | None] = []
    said: list[str] = []

    class Refusing:
        def __init__(self, password: str | None) -> None:
            self.password = password
            attempts.append(password)

        def connect(self) -> fr.Welcome:
            if self.password is None:
                raise LoginRefused(ErrorCode.NAME_TAKEN, "alice is taken")
            if self.password != PW:
                raise LoginRefused(ErrorCode.AUTH_FAILED, "wrong name or password")
            return fr.Welcome("alice", "gw1", ("lobby",), "t", {}, account=True)

        def close(self) -> None:
            pass

    answers = iter(["wrong one", PW])
    inbox: queue.Queue[object] = queue.Queue()
    inbox.put(ev.Closed("closed"))  # what a refused client leaves behind: dropped
    result = term.log_in(Refusing, "alice", None, lambda _p: next(answers),  # type: ignore[arg-type]
                         said.append, inbox)
    assert not isinstance(result, int)
    assert attempts == [None, "wrong one", PW]
    assert inbox.empty()
    assert said[0].startswith("alice is taken: someone is using it, or it is an account's")
    assert said[1] == "wrong password; try again (an empty one gives up)"
    # without a way to ask (a pipe), the refusal says how to give the password
    said.clear()
    assert term.log_in(Refusing, "alice", None, None, said.append, inbox) == 1  # type: ignore[arg-type]
    assert "--password-file" in said[0]


def test_password_from_a_file_or_the_environment(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "pw"
    secret.write_text(PW + "\n", encoding="utf-8")
    options = term.parse(["--name", "alice", "--password-file", str(secret)], {})
    assert options.password == PW
    assert PW not in repr(options)
    assert term.parse(["--name", "alice"], {"CHAT_PASSWORD": "from env!"}).password == \
        "from env!"
    monkeypatch.setattr("sys.stdin", io.StringIO(PW + "\r\n"))
    assert term.parse(["--name", "alice", "--password-file", "-"], {}).password == PW
    (tmp_path / "empty").write_text("", encoding="utf-8")
    with pytest.raises(SystemExit):
        term.parse(["--name", "alice", "--password-file", str(tmp_path / "empty")], {})


def test_the_editor_keeps_no_password_for_recall() -> None:
    editor = term.LineEditor()
    editor.secret = True
    for key in "hunter22":
        editor.press(key)
    assert editor.press("enter") == term.Submitted("hunter22")
    editor.clear()
    editor.secret = False
    assert editor.press("up") is None and editor.text == ""
