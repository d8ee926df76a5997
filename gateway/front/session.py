"""One client connection: its state, its output, its rooms and the subscriber's fan-out.

A session is four modules: this one (the state, the output helpers, sends
and dms, the fan-out the subscriber calls), its reader thread
(``gateway.front.reader``: recv, decode, dispatch, close, linger), its login
(``gateway.front.login``: hello, claim, takeover, undo, release, restore) and
its rooms (``gateway.front.rooms``: join, leave, history, typing, going live).
Where it stands in each room and conversation is the pure core
(``gateway.core``): moved under ``_lock``, its bytes queued under it in move
order. Account requests are ``gateway.front.account_requests``'; a password is
checked on the reader thread, before the name is claimed.

Other threads reach a session only through the ``deliver_*``/``catch_up``/
``reset_room``/``position`` methods (the subscriber's fan-out), ``kick``
(replacement, shutdown, any thread) and ``restore_presence`` (housekeeper);
to end the session they shut the socket's read side so the reader wakes.

Who writes which field:

=====================================  =========================================
``sid``, ``sock``, ``peer``, ``_svc``,  set in ``__init__``, never written again
``_limits``, ``_out``
``_closing``                            ``_lock`` (any thread: ``_close_with``;
                                        read through ``_closing_reason()``)
``_rooms`` (keys), cursors in it,       ``_lock``; keys written by the reader
``_dms``                                thread only, so it alone may read the
                                        keys without the lock
``name``, ``_token_hash``, ``_account``, reader thread only; published to other
``log.extra``                           threads by ``registry.bind_name`` (its
                                        lock orders the writes before any
                                        lookup); ``_account`` may turn True
                                        later (``register``): a dm racing it
                                        goes out as a guest's would
``_wanted_rooms``                       reader thread only (a frozenset swapped
                                        whole; successors read it)
``_bucket``, ``_refusals``,             reader thread only
``_history_budget``, ``_typing``,
``inflight``
=====================================  =========================================

Lock order: ``Session._lock`` may be held while calling ``Outbound.enqueue``
(whose lock is taken inside it); it is never held across socket or Redis
calls and is never taken together with the registry's lock.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator, MutableMapping, Sequence
from typing import Any

from gateway.context import Services
from gateway.core import cursor as core
from gateway.core.conversations import ConversationCursors
from gateway.core.cursor import RoomCursor
from gateway.front import account_requests, login, reader, sends
from gateway.front.outbound import Outbound
from gateway.front.ratelimit import ByteBudget, TokenBucket
from gateway.redis.broker import BrokerUnavailable, HistoryBatch
from protocol import codec
from protocol.errors import ErrorCode, ProtocolError
from protocol.frames import (
    Ack,
    Bye,
    ByeReason,
    DmHistoryQuery,
    DmRequest,
    Passwd,
    Read,
    Register,
)
from protocol.limits import TypingThrottle
from protocol.names import name_key

log = logging.getLogger(__name__)

class SessionLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefixes every line with the session's id and name as key=value fields."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]
                ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = self.extra or {}
        return f"sid={extra.get('sid')} user={extra.get('user') or '-'} {msg}", kwargs


class Session:
    def __init__(self, sock: socket.socket, peer: tuple[str, int], services: Services) -> None:
        self.sid = uuid.uuid4().hex[:16]
        self.sock = sock
        self.peer_host = peer[0]
        self.peer = f"{peer[0]}:{peer[1]}"
        self.name: str | None = None
        self._svc = services
        self._limits = services.config.limits
        self._lock = threading.Lock()
        self._rooms: dict[str, RoomCursor] = {}
        self._out = Outbound(sock, self._limits.max_outbound, services.flusher)
        self._bucket = TokenBucket(self._limits.rate_per_s, self._limits.burst)
        self._refusals = TokenBucket(self._limits.rate_per_s, self._limits.max_refused)
        self._history_budget = ByteBudget(
            self._limits.history_bytes_per_s, self._limits.history_burst_bytes)
        self._typing = TypingThrottle(self._limits.typing_interval_s)
        self._closing: ByeReason | None = None
        self._wanted_rooms: frozenset[str] = frozenset()
        """The rooms of this session's ``hello``, known before it claims the name."""
        self._token_hash = ""
        self._account = False
        """Logged in to the name's account (``hello`` with its password, or ``register``)."""
        self._dms = ConversationCursors()
        self.inflight = sends.Inflight()
        """Sends and dms handed to the broker, not yet answered (``gateway.front.sends``)."""
        self.log = SessionLog(log, {"sid": self.sid, "user": None})

    # ------------------------------------------------------------------ output

    @property
    def backlog(self) -> int:
        return self._out.backlog

    @contextlib.contextmanager
    def _sending(self, kind: str | None = None, *, locked: bool = True) -> Iterator[Outbound]:
        """The one way output goes out (websockets' ``send_context``): the body queues
        on the ``Outbound`` it is given, then what is queued is flushed and a backlog
        past the limit ends the session (both never under ``_lock``: ``kick`` takes it).

        ``locked``: the body runs under ``_lock``, so cursor moves and their bytes keep
        one order; without it the body may ``write`` (send now, or queue). ``kind``:
        count one frame of that kind as sent.
        """
        if kind is not None:
            self._svc.metrics.frames_out.labels(kind).inc()
        if locked:
            with self._lock:
                yield self._out
        else:
            yield self._out
        self._out.flush()
        if self._out.overflowed and self._closing_reason() is None:
            self._overflowed()

    def _send(self, data: bytes, kind: str | None = None) -> None:
        """``_sending`` for one line that needs no lock: send it now or queue it.

        The fan-out's path, once per delivery, so it skips the context manager
        and the second flush: ``write`` sends (or finds a sender that will), and
        says False only when closed or over the limit.
        """
        if kind is not None:
            self._svc.metrics.frames_out.labels(kind).inc()
        if (not self._out.write(data) and self._out.overflowed
                and self._closing_reason() is None):
            self._overflowed()

    def _may_answer(self) -> None:
        """Refuse a request for history (``history``, ``join``) with ``rate_limited``
        while the previous answer is unsent or the client's byte budget is spent:
        what one client can make its gateway hold or draw from Redis is bounded."""
        if self._out.answer_pending:
            raise ProtocolError(
                ErrorCode.RATE_LIMITED,
                "the previous history answer is still being sent; read it before asking again")
        if not self._history_budget.ready():
            raise ProtocolError(
                ErrorCode.RATE_LIMITED,
                f"history answers are limited to {self._limits.history_bytes_per_s:.0f} bytes "
                "a second; wait a moment before asking again")

    def _error(self, exc: ProtocolError) -> None:
        self._send(self._error_line(exc))

    def _error_line(self, exc: ProtocolError) -> bytes:
        """The ``error`` line for ``exc``, counted and logged as sent."""
        self._svc.metrics.errors.labels(exc.code.value).inc()
        self._svc.metrics.frames_out.labels("error").inc()
        self.log.info("event=refused code=%s", exc.code.value)
        return codec.encode_error(exc)

    def _refused(self, exc: ProtocolError) -> None:
        """Answer a refusal the client caused; one too many ends the session with
        ``bye``/``abuse``. The budget is ``max_refused``, refilled at the frame rate,
        so a client that errs now and then never runs out, and one that sends junk
        as fast as it can costs at most ``max_refused`` error lines."""
        self._error(exc)
        self._charge_refusal()

    def _charge_refusal(self) -> None:
        """One refusal token for an error frame the client caused; none left: ``abuse``."""
        if not self._refusals.take() and self._closing_reason() is None:
            self._svc.metrics.abusers.inc()
            self.log.warning("event=abuse refused_budget=%d", self._limits.max_refused)
            self.kick(ByeReason.ABUSE)

    def _send_history(self, lines: Sequence[bytes]) -> None:
        """Queue a history answer (counted, charged to the byte budget) and flush."""
        self._svc.metrics.frames_out.labels("history").inc(len(lines))
        self._history_budget.spend(sum(map(len, lines)))
        with self._sending(locked=False) as out:
            out.enqueue_answer(lines)

    def _answers_sent(self) -> bool:
        """Wait until every queued history answer reached the kernel: True. A client
        that stalls ``send_timeout_s`` meanwhile is a slow consumer, ended: False."""
        if self._out.wait_answers_sent(self._limits.send_timeout_s):
            return True
        if self._closing_reason() is None:
            self._overflowed()
        return False

    def _queue(self, step: core.Step) -> None:
        """Queue a cursor move's bytes, its answer first (under ``_lock``: in move order)."""
        if step.answer:
            self._out.enqueue_answer(step.answer)
        if step.write:
            self._out.enqueue(step.write)

    def _overflowed(self) -> None:
        self._svc.metrics.slow_consumers.inc()
        self.log.warning("event=slow_consumer backlog=%d", self._out.backlog)
        self.kick(ByeReason.SLOW_CONSUMER)

    def _closing_reason(self) -> ByeReason | None:
        """Why the session is ending, None while it is not. Read fresh each time (a call,
        never a narrowed attribute): ``kick`` sets it from other threads."""
        with self._lock:
            return self._closing

    def _close_with(self, reason: ByeReason) -> bool:
        """Mark the session as ending with ``reason``; False when it already was."""
        with self._lock:
            if self._closing is not None:
                return False
            self._closing = reason
            return True

    def kick(self, reason: ByeReason) -> None:
        """End the session from any thread: ``bye`` with ``reason``, then close."""
        if not self._close_with(reason):
            return
        self._out.enqueue_final(codec.encode(Bye(reason)))
        self._out.flush()
        with contextlib.suppress(OSError):  # already gone: the reader is on its way out
            self.sock.shutdown(socket.SHUT_RD)

    # -------------------------------------------------------- fan-out (subscriber)

    def deliver_messages(self, room: str, epoch: str, ids: list[int], lines: list[bytes],
                         joined: bytes, contiguous: bool) -> bool:
        """Send live room messages; True when the room has a gap to fill.

        Called by the subscriber thread only, which is the only writer of a
        live room's cursor: so the decision is made under ``_lock`` and the
        bytes are written after it, in the same order.
        """
        with self._lock:
            cursor = self._rooms.get(room)
            if cursor is None:
                return False
            if cursor.live:  # once per delivery: ``advance`` itself, no ``Step`` to build
                payload, fill = core.advance(cursor, epoch, ids, lines,
                                             joined if contiguous else None)
            else:
                step = core.deliver(cursor, epoch, ids, lines, joined if contiguous else None)
                payload, fill = step.write, step.fill
        if payload:
            self._send(payload)
        return fill

    def deliver_event(self, room: str, line: bytes, typist: str | None = None) -> None:
        """Queue a ``joined``/``left``/``typing`` line for a room this session is in."""
        if typist is not None and self.name is not None and typist == name_key(self.name):
            return
        with self._sending() as out:
            cursor = self._rooms.get(room)
            if cursor is not None and (line := core.deliver_event(cursor, line)):
                out.enqueue(line)

    def deliver_direct(self, line: bytes) -> None:
        """Queue a ``dm`` line (from the subscriber, or the sender's own copy).

        Before the login's catch-up is out it waits; a stored conversation's dm
        to an account goes through the conversation's cursor (in order, once).
        """
        fill = None
        with self._lock:
            payload, fill = self._dms.route(line, self.name, self._account)
        if payload:
            self._send(payload)
        if fill is not None:
            self._fill_conversation(fill)

    def _fill_conversation(self, peer_key: str) -> None:
        """A conversation's live dms had a gap: send what its log holds past our last id."""
        gate, name = self._svc.accounts, self.name
        if gate is None or name is None:
            return
        with self._lock:
            position = self._dms.position(peer_key)
        if position is None:
            return
        try:
            batch = gate.conversations.read_history(name, peer_key, after=position[1])
            if batch.epoch != position[0]:
                batch = gate.conversations.read_history(name, peer_key, after=0)
        except BrokerUnavailable as exc:
            self.log.warning("event=dm_fill_failed error=%r", exc)
            return
        with self._sending() as out:
            lines = self._dms.catch_up(peer_key, batch)
            if lines:
                out.enqueue_answer(lines)

    def position(self, room: str) -> tuple[str, int] | None:
        """(epoch, last id) of a live room, for the subscriber's gap fill."""
        with self._lock:
            cursor = self._rooms.get(room)
            if cursor is None or not cursor.live:
                return None
            return cursor.epoch, cursor.last_id

    def catch_up(self, room: str, batch: HistoryBatch) -> bool:
        """Deliver what ``batch`` holds past this session's last id.

        Returns False when the batch is of another epoch than the session's:
        the caller then resets the room with ``reset_room``.
        """
        with self._sending():
            cursor = self._rooms.get(room)
            step = core.NOTHING if cursor is None else core.catch_up(cursor, room, batch)
            if step is not None:
                self._queue(step)
        return step is not None

    def reset_room(self, room: str, batch: HistoryBatch) -> None:
        """The room's epoch changed: send the new epoch's retained history."""
        with self._sending():
            cursor = self._rooms.get(room)
            if cursor is None or not cursor.live:
                return
            self._queue(core.reset(cursor, room, batch))
        self.log.info("event=epoch_reset room=%s epoch=%s", room, batch.epoch)

    # ------------------------------------------------------------- reader thread

    def run(self) -> None:
        """The session's thread (``gateway.front.reader``): read until the connection ends."""
        reader.run(self)

    def restore_presence(self) -> None:
        """Redis forgot this gateway: claim name and memberships back (``front.login``)."""
        login.restore(self)

    def _on_accounts_pending(self, frame: Register | Passwd | Read | DmHistoryQuery) -> None:
        """Protocol v1.1 account and conversation requests: ``gateway.front.account_requests``."""
        account_requests.answer(self, frame)

    # ------------------------------------------------------------------ requests

    def _check_room_count(self, rooms: int) -> None:
        """Refuse being in ``rooms`` rooms at once when that passes ``max_rooms``."""
        if rooms > self._limits.max_rooms:
            raise ProtocolError(
                ErrorCode.BAD_ROOM, f"a session is in at most {self._limits.max_rooms} rooms")

    def _require_room(self, room: str) -> None:
        if room not in self._rooms:
            raise ProtocolError(ErrorCode.NOT_IN_ROOM, f"you are not in room {room!r}")

    def _on_dm(self, frame: DmRequest) -> None:
        assert self.name is not None
        gate = self._svc.accounts
        if gate is not None:
            stored = gate.conversations.send(
                self.name, self._account, frame.to, frame.text, time.time(), frame.ref)
            if stored is not None:
                if not stored.duplicate and name_key(frame.to) != name_key(self.name):
                    self.deliver_direct(stored.line + b"\n")
                if frame.ref is not None:
                    self._send(codec.encode(Ack(frame.ref, stored.id)), "ack")
                return
        sent = self._svc.broker.send_dm(self.name, frame.to, frame.text, time.time(), frame.ref)
        if not sent.duplicate and name_key(frame.to) != name_key(self.name):
            self._send(sent.line + b"\n", "dm")
        if frame.ref is not None:
            self._send(codec.encode(Ack(frame.ref)), "ack")

    # ------------------------------------------------------------------ cleanup

    def wants_room(self, room: str) -> bool:
        """In the room, or about to join it as part of its ``hello``."""
        return room in self._wanted_rooms or self.in_room(room)

    def in_room(self, room: str) -> bool:
        with self._lock:
            return room in self._rooms

