"""The Tk application: the root window, the event pump, log-in, then chat.

Threading rule: only the Tk main thread touches widgets. The client calls
``on_event`` on its own reader thread, which only puts the event on a
``queue.Queue``; connecting (which blocks) runs on a worker thread that puts
its outcome on the same queue. ``root.after`` drains the queue on the main
thread. Each log-in attempt tags what it queues, so the events of an attempt
that failed are dropped instead of reaching the next one.

"Create an account" is a guest log-in followed by ``register``: the log-in
screen stays (busy) until ``Registered`` arrives; a refusal closes the
client and the screen says why, so an account either exists or nothing
happened.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import tkinter as tk
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from tkinter import ttk

from client.errors import LoginRefused, NoGatewayAvailable
from client.events import Closed, Disconnected, Registered, ServerError
from client.gui import wording
from client.gui.chat_controller import ChatController
from client.gui.login_view import LoginRequest, LoginView, split_addresses
from client.gui.ports import ChatClientLike, ClientFactory
from client.gui.theme import Theme, apply_theme
from protocol.errors import ChatError, ErrorCode, ProtocolError
from protocol.frames import Welcome
from protocol.limits import Limits
from protocol.names import check_name, check_password

logger = logging.getLogger(__name__)

DEFAULT_GATEWAYS = "localhost:5050"


def default_gateways(environ: Mapping[str, str] | None = None) -> str:
    """What the gateway field starts with: ``$CHAT_GATEWAYS`` or localhost:5050."""
    value = (os.environ if environ is None else environ).get("CHAT_GATEWAYS", "").strip()
    return value or DEFAULT_GATEWAYS


POLL_MS = 25
"""How often the pump looks at the queue when it was empty."""

BATCH = 500
"""At most this many events per pump run, so a flood cannot freeze the window."""


@dataclass(frozen=True, slots=True)
class LoginSucceeded:
    welcome: Welcome


@dataclass(frozen=True, slots=True)
class LoginFailed:
    message: str
    wrong_password: bool = False
    """The password was refused: the cursor goes back to the password field."""


@dataclass(frozen=True, slots=True)
class _Registering:
    """A "create account" log-in waiting for the answer to ``register``."""

    welcome: Welcome
    name: str


@dataclass(frozen=True, slots=True)
class Delivery:
    """What the queue carries: an event (client or log-in outcome) and its attempt."""

    attempt: int
    event: object


def _max_text(welcome: Welcome) -> int:
    """The gateway's announced text limit (PROTOCOL.md ``limits``), else the default."""
    value = welcome.limits.get("max_text")
    return value if isinstance(value, int) and value > 0 else Limits().max_text


def _close_quietly(client: ChatClientLike) -> None:
    try:
        client.close()
    except (ChatError, OSError):
        logger.warning("closing a cancelled client failed", exc_info=True)


def _select_all_on_ctrl_a(root: tk.Misc) -> None:
    """Ctrl+A selects everything in a text field (Tk's default moves to the line start)."""
    def select_all(event: tk.Event[tk.Misc]) -> str:
        widget = event.widget
        if isinstance(widget, tk.Entry | ttk.Entry):
            widget.selection_range(0, "end")
            widget.icursor("end")
        return "break"

    for widget_class in ("TEntry", "Entry"):
        root.bind_class(widget_class, "<Control-Key-a>", select_all)
        root.bind_class(widget_class, "<Control-Key-A>", select_all)


class ChatApp:
    """Owns the root window, the queue and the current view."""

    def __init__(self, root: tk.Tk, client_factory: ClientFactory, gateways: str,
                 name: str = "", connect_timeout: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.root = root
        self.theme: Theme = apply_theme(root)
        self._factory = client_factory
        self._connect_timeout = connect_timeout
        self._clock = clock
        self.queue: queue.Queue[Delivery] = queue.Queue()
        self._attempt = 0
        self._early: list[object] = []
        self.client: ChatClientLike | None = None
        self.chat: ChatController | None = None
        self._registering: _Registering | None = None
        self._closed = False

        root.title("ChatService")
        root.minsize(600, 400)
        root.geometry("1000x660")
        root.columnconfigure(0, weight=1)
        root.rowconfigure(0, weight=1)
        root.protocol("WM_DELETE_WINDOW", self.shutdown)
        self.login_view: LoginView | None = LoginView(root, self.theme, gateways,
                                                      self._login, name, self.cancel_login)
        _select_all_on_ctrl_a(root)
        self.login_view.frame.grid(row=0, column=0, sticky="nsew")
        self.login_view.focus()
        self._pump_id: str | None = root.after(POLL_MS, self._pump)

    # -- log-in ------------------------------------------------------------

    def _login(self, request: LoginRequest) -> None:
        view = self.login_view
        assert view is not None
        name, gateways_text = request.name, request.gateways
        if not name:
            view.show_error(wording.EMPTY_NAME)
            return
        try:
            check_name(name)
        except ProtocolError as exc:
            view.show_error(wording.login_refusal(exc, name))
            return
        if request.create:
            if not request.password:
                view.show_error(wording.CREATE_NEEDS_PASSWORD)
                view.focus_password()
                return
            try:
                check_password(request.password)
            except ProtocolError:
                view.show_error(wording.WEAK_PASSWORD)
                view.focus_password()
                return
        addresses = split_addresses(gateways_text)
        if not addresses:
            view.show_error(wording.EMPTY_GATEWAYS)
            return
        self._attempt += 1
        attempt = self._attempt
        self._early.clear()
        self._registering = None
        hello_password = request.password if request.password and not request.create else None
        try:
            client = self._factory(name, addresses, lambda event: self._deliver(attempt, event),
                                   hello_password)
        except (ValueError, ChatError) as exc:
            view.show_error(wording.bad_addresses(str(exc)))
            return
        self.client = client
        view.set_busy(True)
        worker = threading.Thread(target=self._connect, args=(attempt, client, request,
                                                              addresses),
                                  name=f"chat-connect-{attempt}", daemon=True)
        worker.start()

    def cancel_login(self) -> None:
        """Escape while connecting: drop this attempt (its outcome is ignored), close its
        client in the background, and let the person edit the fields again."""
        client, self.client = self.client, None
        if self.login_view is None or not self.login_view.busy:
            return
        self._attempt += 1
        self._early.clear()
        self._registering = None
        if client is not None:
            threading.Thread(target=_close_quietly, args=(client,), name="chat-cancel",
                             daemon=True).start()
        self.login_view.set_busy(False)
        self.login_view.show_error(wording.CANCELLED)

    def _connect(self, attempt: int, client: ChatClientLike, request: LoginRequest,
                 addresses: Sequence[str]) -> None:
        """Worker thread: block in ``connect`` and queue the outcome; no widget here.

        Daemon, because it only waits in ``connect()`` (bounded by its timeout),
        and closing the window must not wait for it.
        """
        wrong_password = False
        try:
            welcome = client.connect(self._connect_timeout)
        except LoginRefused as exc:
            message = wording.login_refusal(exc, request.name,
                                            password=bool(request.password) and not request.create,
                                            create=request.create)
            wrong_password = exc.code is ErrorCode.AUTH_FAILED and bool(request.password)
        except NoGatewayAvailable:
            message = wording.no_gateway(addresses)
        except (ChatError, OSError) as exc:
            logger.warning("log-in failed: %s", exc, exc_info=True)
            message = f"Could not log in: {exc}"
        else:
            if request.create:
                self._register(attempt, client, welcome, request)
            else:
                self._deliver(attempt, LoginSucceeded(welcome))
            return
        self._refused(attempt, client, LoginFailed(message, wrong_password))

    def _register(self, attempt: int, client: ChatClientLike, welcome: Welcome,
                  request: LoginRequest) -> None:
        """Worker thread: logged in as a guest; now make the name an account. The answer
        (``Registered`` or ``ServerError``) comes through the queue to ``_dispatch``."""
        self._deliver(attempt, _Registering(welcome, request.name))
        try:
            client.register(request.password)
        except (ChatError, OSError) as exc:
            logger.warning("register failed: %s", exc)
            self._refused(attempt, client, LoginFailed(wording.REGISTER_LOST))

    def _refused(self, attempt: int, client: ChatClientLike, failure: LoginFailed) -> None:
        try:
            client.close()
        except (ChatError, OSError):
            logger.warning("closing the refused client failed", exc_info=True)
        self._deliver(attempt, failure)

    def _deliver(self, attempt: int, event: object) -> None:
        """Any thread: hand an event to the main thread."""
        self.queue.put(Delivery(attempt, event))

    # -- the pump -------------------------------------------------------------

    def _pump(self) -> None:
        self._pump_id = None
        try:
            for _ in range(BATCH):
                try:
                    delivery = self.queue.get_nowait()
                except queue.Empty:
                    break
                if delivery.attempt == self._attempt and not self._closed:
                    self._dispatch(delivery.event)
        finally:
            if not self._closed:
                delay = 0 if not self.queue.empty() else POLL_MS
                self._pump_id = self.root.after(delay, self._pump)

    def _dispatch(self, event: object) -> None:
        if isinstance(event, LoginSucceeded):
            self._enter_chat(event.welcome)
        elif isinstance(event, _Registering):
            self._registering = event
        elif isinstance(event, LoginFailed):
            self.client = None
            self._early.clear()
            self._registering = None
            if self.login_view is not None:
                self.login_view.set_busy(False)
                self.login_view.show_error(event.message)
                if event.wrong_password:
                    self.login_view.focus_password()
        elif self._registering is not None:
            self._while_registering(self._registering, event)
        elif self.chat is not None:
            self.chat.handle(event)
        else:
            self._early.append(event)

    def _while_registering(self, registering: _Registering, event: object) -> None:
        """Events of a "create account" log-in before ``register`` was answered."""
        refusal: str | None = None
        if isinstance(event, Registered):
            self._registering = None
            self._enter_chat(registering.welcome)
            if self.chat is not None:
                self.chat.account_created(event.name)
            return
        if isinstance(event, ServerError) and event.error.code in (
                ErrorCode.BAD_PASSWORD, ErrorCode.NAME_TAKEN, ErrorCode.AUTH_FAILED,
                ErrorCode.RATE_LIMITED, ErrorCode.UNAVAILABLE):
            refusal = wording.register_refusal(event.error, registering.name)
        elif isinstance(event, Disconnected | Closed):
            refusal = wording.REGISTER_LOST
        if refusal is None:
            self._early.append(event)
            return
        client, self.client = self.client, None
        self._attempt += 1  # what the abandoned client still reports is dropped
        self._dispatch(LoginFailed(refusal))
        if client is not None:
            threading.Thread(target=_close_quietly, args=(client,), name="chat-refused",
                             daemon=True).start()

    def _enter_chat(self, welcome: Welcome) -> None:
        assert self.client is not None
        if self.login_view is not None:
            self.login_view.frame.destroy()
            self.login_view = None
        self.chat = ChatController(self.root, self.theme, self.client, welcome.name,
                                   welcome.gateway, welcome.rooms, on_quit=self.shutdown,
                                   clock=self._clock, max_text=_max_text(welcome))
        self.chat.view.frame.grid(row=0, column=0, sticky="nsew")
        self.root.update_idletasks()
        if self.chat.view.active is not None:
            self.chat.view.composer.focus()
        self.chat.shown()
        early, self._early = self._early, []
        for event in early:
            self.chat.handle(event)

    # -- closing ----------------------------------------------------------------

    def shutdown(self) -> None:
        """Window closed or /quit: say bye, stop the timers, destroy the window."""
        if self._closed:
            return
        self._closed = True
        if self._pump_id is not None:
            self.root.after_cancel(self._pump_id)
            self._pump_id = None
        if self.chat is not None:
            self.chat.close()
        if self.client is not None:
            try:
                self.client.close()
            except (ChatError, OSError):
                logger.warning("closing the client failed", exc_info=True)
        self.root.destroy()

    @property
    def closed(self) -> bool:
        return self._closed
