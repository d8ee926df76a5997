"""``ChatClient``: a logged-in chat session that survives the loss of its gateway.

One reader thread per client does every read: the login, then the frames of
the current ``Link``, pings when idle, and, when the connection ends, the
reconnect to the next address with backoff, logging in again with the
``token`` and ``since`` and resending unacknowledged sends with their
``ref``. All decisions about frames are made by the pure ``ClientState``;
this module only moves frames and events between it, the socket and the
caller. Callers' threads write directly (under the link's write lock).

Locks: ``ChatClient._lock`` guards the state, the current link and the
phase, and is never held across I/O. A link's write lock may be held while
taking ``_lock`` (so that what the state records is in wire order), never
the reverse.
"""

from __future__ import annotations

import enum
import logging
import queue
import secrets
import ssl
import threading
import time
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from client.backoff import Backoff, ExponentialBackoff
from client.errors import ClientClosed, ClientError, LoginRefused, NoGatewayAvailable
from client.events import (
    Acked,
    ClientEvent,
    Closed,
    Disconnected,
    Reconnecting,
    SendDelayed,
    SendFailed,
)
from client.link import Link, login
from client.state import ClientState, Outcome
from protocol import frames as fr
from protocol.address import Address, parse_address
from protocol.errors import ConnectionLost, ErrorCode, ProtocolError
from protocol.limits import DEFAULT_HISTORY_LIMIT, Limits, TypingThrottle
from protocol.names import LOBBY, check_room, check_text

__all__ = ["ChatClient", "parse_address"]

logger = logging.getLogger(__name__)

RETRY_CODES = frozenset({ErrorCode.UNAVAILABLE, ErrorCode.INTERNAL})
"""Login refusals worth another gateway or another try: the broker is down."""

CLOSE_GRACE_S = 2.0
"""How long ``close()`` lets the gateway answer ``bye`` and close before cutting the connection."""

NAME_RECLAIM_S = 20.0
"""How long a reconnect retries ``name_taken``: a dead gateway's names are free within 15 s."""

TYPING_INTERVAL_S = Limits().typing_interval_s
"""The gateway relays one ``typing`` per user and room this often; sending more wastes rate."""

FINAL_BYES = frozenset({fr.ByeReason.REPLACED, fr.ByeReason.CLIENT, fr.ByeReason.ABUSE})


class _Phase(enum.Enum):
    IDLE = "idle"  # not connected yet, or connect() failed
    CONNECTING = "connecting"  # connect() under way
    RUNNING = "running"  # logged in, or reconnecting
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class _Ending:
    """Why a connection ended; ``final`` when no reconnect may follow."""

    reason: str
    final: bool = False


class _ClientLog(logging.LoggerAdapter[logging.Logger]):
    """Prefixes every record with the client's user name."""

    def process(self, msg: Any,
                kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        return f"[{self.extra['name'] if self.extra else '?'}] {msg}", kwargs


class ChatClient:
    """A chat session for one user name; see ``client.events`` for what it reports.

    ``connect()`` blocks until logged in. From then on the client reconnects
    by itself (unless ``reconnect=False``) until ``close()``, a ``bye`` with
    reason ``replaced``, or a re-login the gateway refuses for good; the
    ``Closed`` event marks that end. Every method may be called from any thread.
    """

    def __init__(
        self,
        name: str,
        gateways: Sequence[str] = ("localhost:5050",),
        rooms: Sequence[str] = (LOBBY,),
        *,
        on_event: Callable[[ClientEvent], None] | None = None,
        reconnect: bool = True,
        ping_interval: float = 30.0,
        backoff: Backoff | None = None,
        connect_timeout: float = 5.0,
        tls_context: ssl.SSLContext | None = None,
        hold_unavailable: float = 0.0,
        retry_interval: float = 1.0,
        password: str | None = None,
    ) -> None:
        if isinstance(gateways, str):
            gateways = (gateways,)
        if not gateways:
            raise ValueError("at least one gateway address is needed")
        if ping_interval <= 0 or connect_timeout <= 0 or retry_interval <= 0:
            raise ValueError("ping_interval, connect_timeout and retry_interval must be positive")
        self._addresses: tuple[Address, ...] = tuple(parse_address(g) for g in gateways)
        self._on_event = on_event
        self._reconnect = reconnect
        self._ping_interval = ping_interval
        self._backoff = backoff or ExponentialBackoff()
        self._connect_timeout = connect_timeout
        self._tls_context = tls_context
        self._log = _ClientLog(logger, {"name": name})
        self._ref_prefix = secrets.token_hex(4)
        self._stop = threading.Event()
        self.events: queue.Queue[ClientEvent] = queue.Queue()
        # Guarded by _lock:
        self._lock = threading.Lock()
        self._state = ClientState(name, rooms, hold_unavailable=hold_unavailable > 0,
                                  password=password)
        self._hold_unavailable = hold_unavailable
        self._retry_interval = retry_interval
        self._held_since: dict[str, float] = {}  # ref -> when first answered unavailable
        self._retry_at: float | None = None
        self._phase = _Phase.IDLE
        self._link: Link | None = None
        self._gateway: str | None = None
        self._max_text = Limits().max_text
        self._refs_made = 0
        self._typing = TypingThrottle(TYPING_INTERVAL_S)
        self._thread: threading.Thread | None = None
        self._finished = False

    # ------------------------------------------------------------- properties

    @property
    def name(self) -> str:
        return self._state.name

    @property
    def gateway(self) -> str | None:
        """Id of the gateway now connected, or None."""
        with self._lock:
            return self._gateway

    @property
    def rooms(self) -> tuple[str, ...]:
        with self._lock:
            return self._state.rooms

    @property
    def connected(self) -> bool:
        with self._lock:
            return self._link is not None

    @property
    def addresses(self) -> tuple[Address, ...]:
        return self._addresses

    # -------------------------------------------------------------- lifecycle

    def connect(self, timeout: float = 10.0) -> fr.Welcome:
        """Log in on the first address that accepts, within ``timeout`` seconds.

        Raises ``LoginRefused`` (``name_taken``, ``bad_name``, ``bad_room`` ...),
        ``NoGatewayAvailable`` when no address logs us in, ``ClientError``
        when already connected or closed. After a failure ``connect`` may be
        called again.
        """
        outcome: Future[fr.Welcome] = Future()  # connect()'s answer, from the reader thread
        with self._lock:
            if self._phase is _Phase.CLOSED:
                raise ClientClosed("the client is closed")
            if self._phase is not _Phase.IDLE:
                raise ClientError("connect() was already called")
            self._phase = _Phase.CONNECTING
            self._thread = threading.Thread(
                target=self._run, args=(timeout, outcome), name=f"chat-client-{self.name}",
                daemon=True,
            )
            self._thread.start()
        return outcome.result()

    def close(self) -> None:
        """Say ``bye``, stop the reader thread, end pending sends with ``SendFailed``.

        The reader keeps handling frames (a late ``ack`` still counts) until
        the gateway closes its side, for at most ``CLOSE_GRACE_S``: closing a
        socket with unread input would reset the connection and could lose
        the ``bye``. Idempotent; ``Closed`` is reported once. Safe to call
        from ``on_event``.
        """
        with self._lock:
            previous, self._phase = self._phase, _Phase.CLOSED
            link, thread = self._link, self._thread
        self._stop.set()
        on_reader = thread is threading.current_thread()
        if previous is not _Phase.CLOSED and link is not None:
            link.send(fr.ByeRequest())
            link.finish_sending()
        if previous is _Phase.IDLE:
            self._finish("closed")  # no reader thread is left to do it
        elif on_reader or thread is None:
            if link is not None:
                link.abort()  # the reader returns to its loop and stops there
        else:
            thread.join(CLOSE_GRACE_S)
            if thread.is_alive() and link is not None:
                link.abort()
            thread.join()

    def __enter__(self) -> ChatClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # --------------------------------------------------------------- requests

    def send(self, room: str, text: str) -> str:
        """Post ``text`` to ``room``; returns the ``ref`` its ``Acked``/``SendFailed`` will carry.

        Raises ``ProtocolError`` (``bad_room``, ``bad_text``) for invalid input
        and ``ClientClosed`` before ``connect()`` or after ``close()``. While
        reconnecting the message waits and is sent after the login.
        """
        return self._submit(lambda ref, limit: fr.Send(room, check_text(text, limit), ref))

    def dm(self, to: str, text: str) -> str:
        """A private message to user ``to``; like ``send``."""
        return self._submit(lambda ref, limit: fr.DmRequest(to, check_text(text, limit), ref))

    def join(self, room: str) -> None:
        """Join ``room``; its history arrives as ``HistoryLoaded``. Also while reconnecting."""
        with self._lock:
            self._require_running()
            added = self._state.join(room)
            link = self._link
        if added and link is not None:
            link.send(fr.Join(room))

    def leave(self, room: str) -> None:
        with self._lock:
            self._require_running()
            removed = self._state.leave(room)
            link = self._link
        if removed and link is not None:
            link.send(fr.Leave(room))

    def who(self, room: str) -> None:
        """Ask for the room's members (answered by ``Members``); dropped while disconnected."""
        self._send_now(fr.Who(check_room(room)))

    def typing(self, room: str) -> None:
        """Tell the room we are typing; call it on every keystroke.

        At most one ``typing`` per room every 2 s leaves the client (the
        gateway relays no more, and every frame counts against the rate
        limit); dropped while disconnected.
        """
        check_room(room)
        now = time.monotonic()
        with self._lock:
            if not self._typing.due(room, now):
                return
        self._send_now(fr.TypingRequest(room))

    def history(self, room: str, before: int | None = None,
                limit: int = DEFAULT_HISTORY_LIMIT) -> None:
        """Ask for older messages (scroll-back), answered by ``HistoryLoaded(older=True)``.

        Dropped while disconnected: ask again after ``Connected``.
        """
        frame = fr.HistoryQuery(room, before, limit)
        self._ask(frame, lambda: self._state.expect_history(room))

    def _ask(self, frame: fr.ClientFrame, expect: Callable[[], object]) -> None:
        """Send a request whose answer the state must expect, on the current link only
        (``expect`` runs under ``_lock`` as the frame is written). Dropped while
        disconnected: ask again after ``Connected``."""
        with self._lock:
            self._require_running()
            link = self._link
        if link is None:
            return

        def record() -> tuple[fr.ClientFrame, ...]:
            with self._lock:
                if self._link is not link:
                    return ()
                expect()
            return (frame,)

        link.send_first(record)

    # ---------------------------------------------------- accounts (protocol v1.1)

    @property
    def account(self) -> bool:
        """Logged in to an account (the last ``welcome``, or ``Registered`` since)."""
        with self._lock:
            return self._state.account

    def register(self, password: str) -> None:
        """Make our (guest) name an account with ``password``: answered by ``Registered``,
        or ``ServerError`` (``bad_password``, ``name_taken``, ``auth_failed`` when the
        server admits no new accounts). Raises ``ProtocolError`` (``bad_password``) for a
        password outside the rules; dropped while disconnected."""
        self._send_password(fr.Register(password), password)

    def passwd(self, old: str, new: str) -> None:
        """Change the account's password: ``Registered``, or ``ServerError``
        (``auth_failed`` for a wrong ``old``, ``rate_limited``, ``bad_password``)."""
        self._send_password(fr.Passwd(old, new), new)

    def _send_password(self, frame: fr.Register | fr.Passwd, password: str) -> None:
        with self._lock:
            self._require_running()
            link = self._link
        if link is None:
            return

        def record() -> tuple[fr.ClientFrame, ...]:
            with self._lock:
                if self._link is not link:
                    return ()
                self._state.expect_password(password)
            return (frame,)

        link.send_first(record)

    def mark_read(self, room: str | None = None, *, peer: str | None = None,
                  up_to: int) -> None:
        """Tell the server we have read ``room`` (or the conversation with ``peer``) up to
        id ``up_to``; an account gets it back in the next ``AccountState``. No answer;
        dropped while disconnected (send it again after ``Connected``)."""
        self._send_now(fr.Read(room=room, peer=peer, id=up_to))

    def dm_history(self, peer: str, before: int | None = None,
                   limit: int = DEFAULT_HISTORY_LIMIT) -> None:
        """Ask for older dms of the conversation with ``peer`` (accounts): answered by
        ``DmHistoryLoaded``, or ``ServerError`` (``auth_failed`` for a guest). Dropped
        while disconnected."""
        frame = fr.DmHistoryQuery(peer, before, limit)
        self._ask(frame, lambda: self._state.expect_dm_history(peer))

    def dm_position(self, peer: str) -> fr.Position | None:
        """Where the conversation with ``peer`` stands (epoch, last id delivered)."""
        with self._lock:
            return self._state.dm_position(peer)

    def _submit(self, make: Callable[[str, int], fr.Send | fr.DmRequest]) -> str:
        with self._lock:
            self._require_running()
            self._refs_made += 1
            frame = make(f"{self._ref_prefix}-{self._refs_made}", self._max_text)
            self._state.add_pending(frame)
            link = self._link
        if link is not None:
            link.send(frame)  # on failure the frame stays pending and is resent
        assert frame.ref is not None
        return frame.ref

    def _send_now(self, frame: fr.ClientFrame) -> None:
        with self._lock:
            self._require_running()
            link = self._link
        if link is not None:
            link.send(frame)

    def _require_running(self) -> None:
        if self._phase is not _Phase.RUNNING:
            raise ClientClosed(
                "the client is closed" if self._phase is _Phase.CLOSED else "not connected yet"
            )

    # ------------------------------------------------------------ reader thread

    def _run(self, timeout: float, outcome: Future[fr.Welcome]) -> None:
        try:
            adopted = self._first_login(timeout)
        except BaseException as exc:
            with self._lock:
                closing = self._phase is _Phase.CLOSED
                if not closing:
                    self._phase = _Phase.IDLE
            outcome.set_exception(exc)
            if closing:
                self._finish("closed")
            return
        if adopted is None:
            outcome.set_exception(ClientClosed("the client was closed while connecting"))
            self._finish("closed")
            return
        link, welcome, first = adopted
        outcome.set_result(welcome)
        self._serve(link, first)

    def _serve(self, link: Link, first: Outcome) -> None:
        """Read frames, reconnect when the connection ends, until the end is final."""
        reason = "closed"
        try:
            self._emit_all(first.events)
            while True:
                ending = self._pump(link)
                self._drop(link)
                if self._stop.is_set():
                    break
                if ending.final:
                    reason = ending.reason
                    break
                self._log.info("disconnected from %s: %s", link.address, ending.reason)
                self._emit(Disconnected(ending.reason))
                if not self._reconnect:
                    reason = ending.reason
                    break
                resumed = self._reconnect_from(link.index + 1)
                if isinstance(resumed, str):
                    reason = resumed
                    break
                link, first = resumed
                self._emit_all(first.events)
        except Exception:
            self._log.exception("the reader thread failed")
            reason = "internal error"
        finally:
            self._finish(reason)

    def _pump(self, link: Link) -> _Ending:
        """Handle the link's frames until it ends; ping when idle, give up when silent."""
        wake = self._ping_interval / 2
        if self._hold_unavailable > 0:
            wake = min(wake, self._retry_interval)  # held sends are retried on time
        link.settimeout(wake)
        while True:  # after close() too: drain until the gateway closes (see close)
            try:
                frame = link.receive()
            except ConnectionLost as exc:
                return _Ending(str(exc), final=self._stop.is_set())
            if frame is None and self._stop.is_set():
                return _Ending("closed", final=True)
            if frame is None and link.silent_for() > 2 * self._ping_interval:
                return _Ending(f"{link.address} stopped answering")
            if not self._stop.is_set():
                link.keep_alive(self._ping_interval)
            if frame is not None:
                if isinstance(frame, fr.Bye):
                    return _Ending(frame.reason.value, final=frame.reason in FINAL_BYES)
                self._emit_all(self._apply(link, frame))
            if not self._stop.is_set():
                self._emit_all(self._retry_held(link))

    def _retry_held(self, link: Link) -> list[ClientEvent]:
        """Send again the sends held after ``unavailable``; fail those held too long."""
        now = time.monotonic()
        with self._lock:
            if self._retry_at is None or now < self._retry_at:
                return []
            self._retry_at = None

        def resend() -> tuple[list[ClientEvent], tuple[fr.ClientFrame, ...]]:
            failed: list[ClientEvent] = []
            with self._lock:
                if self._link is not link:
                    return failed, ()
                for ref in self._state.held:
                    held_for = now - self._held_since.get(ref, now)
                    if held_for >= self._hold_unavailable:
                        self._held_since.pop(ref, None)
                        failed.extend(self._state.give_up(ref, ProtocolError(
                            ErrorCode.UNAVAILABLE,
                            f"the server could not take the message for {held_for:.0f} s",
                            ref)))
                return failed, self._state.take_held()

        return link.send_first_with(resend)

    def _apply(self, link: Link, frame: fr.ServerFrame) -> tuple[ClientEvent, ...]:
        """Feed ``frame`` to the state under the write lock, so its requests go out in order."""
        def record() -> tuple[tuple[ClientEvent, ...], tuple[fr.ClientFrame, ...]]:
            with self._lock:
                result = self._state.handle(frame)
                self._note_held(result.events)
            return result.events, result.requests

        return link.send_first_with(record)

    def _note_held(self, events: Iterable[ClientEvent]) -> None:
        """Under ``_lock``: when held sends were first refused, and when to retry them."""
        for event in events:
            if isinstance(event, SendDelayed):
                now = time.monotonic()
                self._held_since.setdefault(event.ref, now)
                if self._retry_at is None:
                    self._retry_at = now + self._retry_interval
            elif isinstance(event, Acked | SendFailed):
                self._held_since.pop(event.ref, None)

    def _drop(self, link: Link) -> None:
        with self._lock:
            if self._link is link:
                self._link = None
                self._gateway = None
            self._state.on_disconnect()
        link.close()

    def _first_login(self, timeout: float) -> tuple[Link, fr.Welcome, Outcome] | None:
        """One pass over the addresses; None if closed meanwhile."""
        deadline = time.monotonic() + timeout
        failures: list[str] = []
        last: BaseException | None = None
        for index, address in enumerate(self._addresses):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._stop.is_set():
                break
            try:
                link, welcome, hello = self._login(index, min(self._connect_timeout, remaining))
            except LoginRefused as exc:
                if exc.code not in RETRY_CODES:
                    raise
                failures.append(f"{address}: {exc.code.value}")
                last = exc
                continue
            except (OSError, ConnectionLost) as exc:
                failures.append(f"{address}: {exc}")
                last = exc
                continue
            adopted = self._adopt(link, welcome, hello)
            return None if adopted is None else (link, welcome, adopted)
        if self._stop.is_set():
            return None
        detail = "; ".join(failures) or f"timed out after {timeout:g} s"
        raise NoGatewayAvailable(f"no gateway logged us in ({detail})") from last

    def _reconnect_from(self, start: int) -> tuple[Link, Outcome] | str:
        """Try the addresses in turn from ``start`` with backoff; the final reason on failure."""
        began = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            index = (start + attempt - 1) % len(self._addresses)
            address = self._addresses[index]
            delay = self._backoff.delay(attempt)
            self._emit(Reconnecting(str(address), delay, attempt))
            if self._stop.wait(delay):
                return "closed"
            try:
                link, welcome, hello = self._login(index, self._connect_timeout)
            except LoginRefused as exc:
                reclaiming = (exc.code is ErrorCode.NAME_TAKEN and (
                    time.monotonic() - began < NAME_RECLAIM_S
                )) or exc.code is ErrorCode.RATE_LIMITED  # others' guesses lock our name
                if exc.code not in RETRY_CODES and not reclaiming:
                    self._log.warning("%s refused the login: %s", address, exc)
                    return f"login refused: {exc.code.value}"
                self._log.info("%s refused the login for now: %s", address, exc.code.value)
                continue
            except (OSError, ConnectionLost) as exc:
                self._log.info("reconnect to %s failed: %s", address, exc)
                continue
            adopted = self._adopt(link, welcome, hello)
            return "closed" if adopted is None else (link, adopted)

    def _login(self, index: int, timeout: float) -> tuple[Link, fr.Welcome, fr.Hello]:
        with self._lock:
            try:
                hello = self._state.hello()
            except ProtocolError as exc:
                raise LoginRefused(exc.code, exc.message) from None
        link, welcome = login(self._addresses[index], index, hello, timeout, self._tls_context)
        return link, welcome, hello

    def _adopt(self, link: Link, welcome: fr.Welcome, hello: fr.Hello) -> Outcome | None:
        """Make ``link`` current and send what must precede everything else on it.

        Runs under the link's write lock so no caller's frame overtakes the
        rejoins and resends. None (and the link closed) if the client closed.
        """
        def take_over() -> tuple[Outcome | None, tuple[fr.ClientFrame, ...]]:
            with self._lock:
                if self._phase is _Phase.CLOSED:
                    return None, ()
                self._phase = _Phase.RUNNING
                self._link = link
                self._gateway = welcome.gateway
                self._max_text = int(welcome.limits.get("max_text", self._max_text))
                outcome = self._state.on_welcome(welcome, hello)
            return outcome, outcome.requests

        adopted = link.send_first_with(take_over)
        if adopted is None:
            link.close()
            return None
        self._log.info("logged in on %s (gateway %s)", link.address, welcome.gateway)
        return adopted

    def _finish(self, reason: str) -> None:
        """The end: fail what is pending, report ``Closed`` once."""
        with self._lock:
            if self._finished:
                return
            self._finished = True
            self._phase = _Phase.CLOSED
            link, self._link, self._gateway = self._link, None, None
            failed = self._state.abort_pending()
        self._stop.set()
        if link is not None:
            link.close()
        self._emit_all(failed)
        self._emit(Closed(reason))

    # ---------------------------------------------------------------- events

    def _emit_all(self, events: Iterable[ClientEvent]) -> None:
        for event in events:
            self._emit(event)

    def _emit(self, event: ClientEvent) -> None:
        if self._on_event is None:
            self.events.put(event)
            return
        try:
            self._on_event(event)
        except Exception:
            self._log.exception("on_event failed for %s", type(event).__name__)
