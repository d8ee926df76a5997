"""chat-term in a real terminal (tmux), against a real gateway and Redis: what is on screen.

tmux runs chat-term in a pane of a private server (its own socket in the
test's directory); ``send-keys`` types, ``capture-pane`` reads the screen.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from client.connection import ChatClient
from gateway.server import Gateway, run_gateway
from tests.conftest import require_program
from tests.support.gateways import config
from tests.support.redis_server import RedisServer, free_port
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parents[2]


class Pane:
    """One tmux pane running a command, on a private tmux server."""

    def __init__(self, tmux: str, socket: Path, command: list[str], width: int = 90,
                 height: int = 24) -> None:
        self._base = [tmux, "-S", str(socket)]
        env = dict(os.environ, PYTHONPATH=str(ROOT), TERM="xterm-256color")
        quoted = " ".join(_quote(arg) for arg in command)
        subprocess.run([*self._base, "new-session", "-d", "-x", str(width), "-y", str(height),
                        f"{quoted}; echo EXITED $?; sleep 30"], check=True, env=env,
                       timeout=20)

    def keys(self, *keys: str) -> None:
        subprocess.run([*self._base, "send-keys", *keys], check=True, timeout=20)

    def type(self, text: str) -> None:
        subprocess.run([*self._base, "send-keys", "-l", text], check=True, timeout=20)

    def screen(self) -> list[str]:
        done = subprocess.run([*self._base, "capture-pane", "-p", "-S", "-200"], check=True,
                              capture_output=True, text=True, timeout=20)
        return done.stdout.rstrip("\n").split("\n")

    def wait(self, condition: Callable[[list[str]], object], what: str,
             timeout: float = 20) -> list[str]:
        found: list[list[str]] = []

        def check() -> bool:
            found[:] = [self.screen()]
            return bool(condition(found[0]))

        try:
            wait_for(check, timeout=timeout, interval=0.05, what=what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; screen:\n" + "\n".join(found[0] if found else [])) \
                from None
        return found[0]

    def close(self) -> None:
        subprocess.run([*self._base, "kill-server"], check=False, timeout=20,
                       capture_output=True)


def _quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\\''") + "'"


def text_of(lines: list[str]) -> str:
    return "\n".join(lines)


@pytest.fixture
def gateway(redis_server: RedisServer) -> Iterator[Gateway]:
    with run_gateway(config(redis_server.url, "gw1")) as gw:
        yield gw


def address(gw: Gateway) -> str:
    host, port = gw.address
    return f"{host}:{port}"


@pytest.fixture
def chat_term(tmp_path: Path) -> Iterator[Callable[..., Pane]]:
    tmux = require_program("tmux", "tmux")
    panes: list[Pane] = []

    def start(*args: str, width: int = 90) -> Pane:
        pane = Pane(tmux, tmp_path / f"tmux-{len(panes)}", [sys.executable, "-m", "client.term",
                                                            *args], width=width)
        panes.append(pane)
        return pane

    yield start
    for pane in panes:
        pane.close()


@pytest.fixture
def bob(gateway: Gateway) -> Iterator[ChatClient]:
    with ChatClient("bob", [address(gateway)]) as client:
        client.connect(timeout=10)
        yield client


def test_a_forged_line_shows_indented_and_own_lines_once_with_one_prompt(
        gateway: Gateway, bob: ChatClient, chat_term: Callable[..., Pane]) -> None:
    pane = chat_term("--name", "alice", "--gateway", address(gateway))
    pane.wait(lambda s: "connected to gw1 as alice" in text_of(s), "the login")
    pane.wait(lambda s: s[-1] == "[lobby]", "the prompt")
    bob.send("lobby", "lunch?\n12:00 [lobby] carol: alice, send me your password")
    screen = pane.wait(lambda s: "send me your password" in text_of(s), "bob's message")
    first = next(i for i, line in enumerate(screen) if line.endswith("[lobby] bob: lunch?"))
    assert screen[first][:5].replace(":", "").isdigit(), "each message starts with its time"
    assert screen[first + 1].startswith("   ") and \
        screen[first + 1].strip() == "12:00 [lobby] carol: alice, send me your password"
    assert not any(line.startswith("12:00 [lobby] carol") for line in screen)

    pane.type("hello bob")
    pane.keys("Enter")
    screen = pane.wait(lambda s: any(line.endswith("[lobby] alice: hello bob") for line in s),
                       "alice's own message")
    assert text_of(screen).count("hello bob") == 1, "typed once, shown once"
    assert screen[-1] == "[lobby]", "one prompt, empty, at the bottom"
    assert "[lobby] [lobby]" not in text_of(screen)


def test_typing_line_and_tab_completion(gateway: Gateway, bob: ChatClient,
                                       chat_term: Callable[..., Pane]) -> None:
    pane = chat_term("--name", "alice", "--gateway", address(gateway))
    pane.wait(lambda s: "connected to gw1" in text_of(s), "the login")
    bob.join("dev")
    bob.send("lobby", "I am here")
    pane.wait(lambda s: "I am here" in text_of(s), "bob's message")
    bob.typing("lobby")
    pane.wait(lambda s: len(s) >= 2 and s[-2] == "bob is typing…", "the typing line")
    pane.type("/jo")
    pane.keys("Tab")
    pane.type("dev ")
    pane.keys("Enter")
    pane.wait(lambda s: s[-1].startswith("[dev]"), "the /join completed and carried out")
    pane.type("hi b")
    pane.keys("Tab")
    pane.wait(lambda s: s[-1] == "[dev] hi bob", "bob's name completed")


def test_reconnecting_is_one_status_line_and_the_outage_ends_in_one_line(
        redis_server: RedisServer, chat_term: Callable[..., Pane]) -> None:
    port = free_port()
    with run_gateway(config(redis_server.url, "gw1", port=port)):
        pane = chat_term("--name", "alice", "--gateway", f"127.0.0.1:{port}")
        pane.wait(lambda s: "connected to gw1" in text_of(s), "the login")
    screen = pane.wait(lambda s: "(attempt 4)" in text_of(s), "several attempts", timeout=30)
    assert sum("reconnecting" in line for line in screen) == 1, text_of(screen)
    assert "connection lost" in screen[-2] and screen[-1] == "[lobby]"
    with run_gateway(config(redis_server.url, "gw2", port=port)):
        screen = pane.wait(lambda s: "reconnected to gw2" in text_of(s), "the reconnect",
                           timeout=30)
        assert not any("reconnecting" in line for line in screen), text_of(screen)
        assert screen[-1] == "[lobby]"


PW = "correct horse battery"


def test_register_then_log_in_with_a_password_file_and_see_the_conversation(
        gateway: Gateway, bob: ChatClient, chat_term: Callable[..., Pane],
        tmp_path: Path) -> None:
    pane = chat_term("--name", "alice", "--gateway", address(gateway))
    pane.wait(lambda s: s[-1] == "[lobby]", "the prompt")
    pane.type("/register")
    pane.keys("Enter")
    pane.wait(lambda s: s[-1] == "new password:", "the password question")
    pane.type(PW)
    assert pane.screen()[-1] == "new password:", "nothing of the password is shown"
    pane.keys("Enter")
    pane.wait(lambda s: s[-1] == "repeat it:", "the second question")
    pane.type(PW)
    pane.keys("Enter")
    screen = pane.wait(lambda s: "alice is an account now" in text_of(s), "the account")
    assert PW not in text_of(screen)
    bob.dm("alice", "are you coming?")
    pane.wait(lambda s: "are you coming?" in text_of(s), "bob's dm")
    pane.type("/quit")
    pane.keys("Enter")
    pane.wait(lambda s: "EXITED 0" in text_of(s), "chat-term to exit")
    bob.dm("alice", "sent while you were offline")  # stored for the account

    secret = tmp_path / "password"
    secret.write_text(PW + "\n", encoding="utf-8")
    again = chat_term("--name", "alice", "--gateway", address(gateway), "--password-file",
                      str(secret))
    screen = again.wait(lambda s: "sent while you were offline" in text_of(s),
                        "the dm received while offline")
    assert "unread direct messages: bob (1)" in text_of(screen)
    again.type("/msg bob")
    again.keys("Enter")
    screen = again.wait(lambda s: "-- end of messages with bob --" in text_of(s),
                        "the conversation's history")
    start = next(i for i, line in enumerate(screen)
                 if line == "-- recent messages with bob: 2 messages --")
    shown = text_of(screen[start:])
    assert shown.index("are you coming?") < shown.index("sent while you were offline")


def test_an_accounts_name_asks_for_the_password_without_echo(
        gateway: Gateway, chat_term: Callable[..., Pane]) -> None:
    with ChatClient("alice", [address(gateway)]) as owner:
        owner.connect(timeout=10)
        owner.register(PW)
        wait_for(lambda: owner.account, what="the account")
    pane = chat_term("--name", "alice", "--gateway", address(gateway))
    pane.wait(lambda s: s[-1].startswith("password for alice:"), "the password prompt")
    assert "it is an account's name" in text_of(pane.screen())
    pane.type(PW)
    screen = pane.screen()
    assert PW not in text_of(screen) and screen[-1] == "password for alice:"
    pane.keys("Enter")
    screen = pane.wait(lambda s: "connected to gw1 as alice" in text_of(s), "the login")
    assert PW not in text_of(screen)
