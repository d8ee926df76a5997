"""GUI tier: a real X server (Xvfb) for the whole session, a fresh Tk root per test.

Tests drive the real widgets (insert text, generate <Return>, call
``update()``) and read what the widgets show. Screenshots for people go to
``artifacts/screenshots/`` (git-ignored).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import tkinter as tk
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType

import pytest

from client.gui.app import ChatApp
from client.gui.chat_controller import ChatController
from tests.conftest import require_program
from tests.gui.stub_client import Script, StubClient, StubFactory
from tests.support.waiting import wait_for

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
SCREEN = "1280x800x24"


def _start_xvfb(binary: str) -> tuple[subprocess.Popen[bytes], str]:
    """Start Xvfb on the first free display number; return it once its socket exists."""
    first = 100 + os.getpid() % 400
    for number in range(first, first + 60):
        socket_path = Path(f"/tmp/.X11-unix/X{number}")
        if socket_path.exists() or Path(f"/tmp/.X{number}-lock").exists():
            continue
        proc = subprocess.Popen(
            [binary, f":{number}", "-screen", "0", SCREEN, "-nolisten", "tcp", "-noreset"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        def up(p: subprocess.Popen[bytes] = proc, s: Path = socket_path) -> bool:
            return s.exists() or p.poll() is not None

        wait_for(up, timeout=20, what=f"Xvfb socket {socket_path}")
        if proc.poll() is None:
            return proc, f":{number}"
        # lost a race for that number with another X server: try the next one
    raise RuntimeError("no free X display number found for Xvfb")


@pytest.fixture(scope="session")
def xvfb() -> Iterator[str]:
    """DISPLAY of a private Xvfb, set in the environment for the session."""
    binary = require_program("Xvfb", "xvfb")
    proc, display = _start_xvfb(binary)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("DISPLAY", display)
            yield display
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture
def tk_root(xvfb: str) -> Iterator[tk.Tk]:
    """A Tk root on the Xvfb display; any exception in a Tk callback fails the test."""
    root = tk.Tk(className="ChatService")
    errors: list[BaseException] = []

    def report(exc: type[BaseException], value: BaseException,
               tb: TracebackType | None) -> None:
        logger.error("exception in Tk callback", exc_info=(exc, value, tb))
        errors.append(value)

    root.report_callback_exception = report
    try:
        yield root
    finally:
        with contextlib.suppress(tk.TclError):  # the app may have destroyed it (/quit)
            root.destroy()
    assert not errors, f"exceptions in Tk callbacks: {errors!r}"


def screenshot(widget: tk.Misc, name: str) -> Path | None:
    """Save the widget's top-level window as artifacts/screenshots/<name>.png."""
    tool = shutil.which("import")
    if tool is None:
        logger.warning("imagemagick 'import' not installed: no screenshot %s", name)
        return None
    top = widget.winfo_toplevel()
    top.update()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    subprocess.run([tool, "-window", top.wm_frame(), str(path)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
    return path


def settle(root: tk.Misc, condition: Callable[[], object], timeout: float = 10.0,
           what: str = "the window to show it") -> object:
    """Let Tk run (timers, the queue pump, redraws) until ``condition`` holds."""

    def step() -> object:
        root.update()
        return condition()

    return wait_for(step, timeout=timeout, what=what)


class FakeClock:
    """A monotonic clock the test moves by hand (typing throttle and hints)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# The stub-client app most view tests drive; a test module gives its own ``factory``
# (its script) and may override ``app`` (the end-to-end tests use real clients).

@pytest.fixture
def factory() -> StubFactory:
    """A stub client factory with an empty script."""
    return StubFactory(Script())


@pytest.fixture
def app(tk_root: tk.Tk, factory: StubFactory, clock: FakeClock) -> Iterator[ChatApp]:
    from tests.gui.helpers import give_focus  # helpers import this module

    app = ChatApp(tk_root, factory, gateways="localhost:5050", clock=clock)
    give_focus(tk_root)
    yield app
    if not app.closed:
        app.shutdown()


@pytest.fixture
def chat(app: ChatApp) -> ChatController:
    """The chat view after alice logged in through the stub client."""
    from tests.gui.helpers import log_in

    return log_in(app, "alice")


@pytest.fixture
def client(chat: ChatController, factory: StubFactory) -> StubClient:
    """The stub client the logged-in chat view talks to."""
    return factory.last
