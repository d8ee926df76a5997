"""``python -m client`` as a person starts it: a real process, a real gateway, xdotool keys."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from client.connection import ChatClient
from client.events import ClientEvent, MemberJoined, MemberLeft
from gateway.server import Gateway, run_gateway
from tests.conftest import require_program
from tests.support.gateways import config
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_for


@pytest.fixture
def gateway(redis_server: RedisServer) -> Iterator[Gateway]:
    with run_gateway(config(redis_server.url, "gw1")) as gw:
        yield gw


def xdotool(*args: str) -> str:
    done = subprocess.run([require_program("xdotool", "xdotool"), *args], check=True,
                          capture_output=True, text=True, timeout=30)
    return done.stdout.strip()


def find_window(name: str) -> str:
    """The first visible window whose name matches; xdotool's search can fail when a
    window vanishes while it looks (the log-in view's widgets do), so ask again."""
    found: list[str] = []

    def search() -> bool:
        try:
            found[:] = xdotool("search", "--onlyvisible", "--name", name).splitlines()
        except subprocess.CalledProcessError:
            return False
        return bool(found)

    wait_for(search, timeout=20, interval=0.1, what=f"a window named {name}")
    return found[0]


def test_chat_client_logs_in_with_enter_and_quits_with_bye(xvfb: str, gateway: Gateway) -> None:
    host, port = gateway.address
    with ChatClient("bob", [f"{host}:{port}"]) as bob:
        bob.connect(timeout=10)
        proc = subprocess.Popen(
            [sys.executable, "-m", "client", "--name", "alice", "--gateways", f"{host}:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        try:
            window = find_window("ChatService")
            xdotool("windowfocus", "--sync", window)
            xdotool("key", "Return")  # the name is prefilled; the cursor is in its field
            seen: list[ClientEvent] = []

            def bob_saw(kind: type[MemberJoined | MemberLeft]) -> bool:
                while not bob.events.empty():
                    seen.append(bob.events.get_nowait())
                return any(isinstance(e, kind) and e.name == "alice" for e in seen)

            wait_for(lambda: bob_saw(MemberJoined), timeout=20, what="alice to join")
            # the chat view is up when the window is titled after the room
            find_window("^#lobby")
            xdotool("type", "--delay", "5", "/quit")
            xdotool("key", "Return")
            wait_for(lambda: bob_saw(MemberLeft), timeout=20, what="alice to leave")
            assert proc.wait(20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            assert proc.stderr is not None
            errors = proc.stderr.read().decode()
            proc.stderr.close()
        assert "Traceback" not in errors, errors
