"""One client connection: its reader thread, its rooms, its output.

The reader thread (``run``) owns the socket's receive side and its close;
other threads reach a session only through the ``deliver_*`` methods (the
subscriber's fan-out) and ``kick`` (replacement, shutdown), which queue
output and, to end the session, shut the socket's read side so the reader
wakes and cleans up.

Lock order: ``Session._lock`` (room cursors) may be held while calling
``Outbound.enqueue``; it is never held across socket or Redis calls and is
never taken together with the registry's lock.

Room cursors make delivery exactly-once and in order: a room is *pending*
from the moment the session is registered in it until its history frame is
queued; live messages that arrive meanwhile wait in the cursor and are
released after the history, skipping ids the history already held. Live
rooms accept id ``last + 1`` only; a gap or a new epoch asks the subscriber
to fill the room from Redis.

Stored DM conversations (accounts, protocol v1.1) have cursors too
(``gateway.dm_cursors``, guarded by the same ``_lock``, moved by the same
``gateway.cursors.advance``): their dms wait until the login's catch-up is
queued, and a gap is filled by the session itself from the conversation's
log. Account requests (``hello``'s password, ``register``, ``passwd``) are
``gateway.account_requests``'; a password is checked on this thread, before
the name is claimed.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
import threading
import time
import uuid
from collections.abc import MutableMapping
from typing import Any

import orjson

from gateway.context import Services
from gateway.cursors import RoomCursor, advance
from gateway.dm_cursors import CatchUp, ConversationCursors, dm_history, load_catch_up
from gateway.outbound import Outbound
from gateway.ratelimit import ByteBudget, TokenBucket
from gateway.redis.broker import BrokerUnavailable, HistoryBatch, Pending, PublishBatch, token_hash
from protocol import codec
from protocol.errors import ErrorCode, FrameTooLarge, ProtocolError
from protocol.frames import (
    Ack,
    Bye,
    ByeReason,
    ClientFrame,
    Dm,
    DmHistoryQuery,
    Goodbye,
    Hello,
    HistoryQuery,
    Join,
    Leave,
    Left,
    Passwd,
    Ping,
    Pong,
    Position,
    Read,
    Register,
    Send,
    Typing,
    Welcome,
    Who,
    WhoList,
)
from protocol.names import check_ref, name_key

log = logging.getLogger(__name__)

_RECV_SIZE = 65536
_CLOSE_FLUSH_S = 1.0
_LINGER_S = 1.0
_LINGER_BYTES = 1 << 20
_MAX_INFLIGHT = 256
"""Sends and dms of one session awaiting their answers at most."""
_STALL_CHECK_S = 0.5
"""While output waits, the reader looks this often whether the client stalled."""


def _ref_of(frame: ClientFrame, line: bytes) -> str | None:
    """The request's ``ref``, to echo in an error whatever the frame's type.

    Only ``send``, ``dm`` and ``ping`` keep theirs in the frame; for the others
    the line is read again, which happens on the (rare) error path only.
    """
    ref: str | None = getattr(frame, "ref", None)
    if ref is not None:
        return ref
    try:
        raw = orjson.loads(line)
        return check_ref(raw.get("ref") if isinstance(raw, dict) else None)
    except (orjson.JSONDecodeError, ProtocolError):
        return None


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
        self._closing: ByeReason | None = None
        self._wanted_rooms: frozenset[str] = frozenset()
        """The rooms of this session's ``hello``, known before it claims the name."""
        self._token_hash = ""
        self._inflight: list[tuple[Send | Dm, bytes, Pending[Any]]] = []
        """Sends and dms handed to the broker, not yet answered (the reader thread's only)."""
        self._batch: PublishBatch | None = None
        """Where ``_submit`` collects them until ``_settle_inflight`` submits them at once."""
        self._account = False
        """Logged in to the name's account (``hello`` with its password, or ``register``)."""
        self._dms = ConversationCursors()
        self.log = SessionLog(log, {"sid": self.sid, "user": None})

    # ------------------------------------------------------------------ output

    @property
    def backlog(self) -> int:
        return self._out.backlog

    def _send(self, data: bytes, kind: str) -> None:
        self._svc.metrics.frames_out.labels(kind).inc()
        self._write(data)

    def _write(self, data: bytes) -> None:
        """Send now or queue (never under ``_lock``); a full backlog ends the session."""
        if not self._out.write(data) and self._out.overflowed and self._closing is None:
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
        self._write(self._error_line(exc))

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

    def _flush(self) -> None:
        """Send what is queued; end the session if its backlog passed the limit.

        Never called under ``_lock``: ``kick`` takes it.
        """
        self._out.flush()
        if self._out.overflowed and self._closing is None:
            self._overflowed()

    def _overflowed(self) -> None:
        self._svc.metrics.slow_consumers.inc()
        self.log.warning("event=slow_consumer backlog=%d", self._out.backlog)
        self.kick(ByeReason.SLOW_CONSUMER)

    def _closing_reason(self) -> ByeReason | None:
        """Why the session is ending, None while it is not. Read fresh each time (a call,
        never a narrowed attribute): ``kick`` sets it from other threads."""
        with self._lock:
            return self._closing

    def kick(self, reason: ByeReason) -> None:
        """End the session from any thread: ``bye`` with ``reason``, then close."""
        with self._lock:
            if self._closing is not None:
                return
            self._closing = reason
        self._out.enqueue_final(codec.encode(Goodbye(reason)))
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
        needs_fill = False
        payload = b""
        with self._lock:
            cursor = self._rooms.get(room)
            if cursor is None:
                return False
            if not cursor.live:
                cursor.pending.extend((epoch, i, line) for i, line in zip(ids, lines, strict=True))
                return False
            payload, needs_fill = advance(cursor, epoch, ids, lines,
                                          joined if contiguous else None)
        if payload:
            self._write(payload)
        return needs_fill

    def deliver_event(self, room: str, line: bytes, typist: str | None = None) -> None:
        """Queue a ``joined``/``left``/``typing`` line for a room this session is in."""
        if typist is not None and self.name is not None and typist == name_key(self.name):
            return
        with self._lock:
            cursor = self._rooms.get(room)
            if cursor is None or line == cursor.leaving_line:
                return
            if not cursor.live:
                cursor.pending.append(("", 0, line))
                return
            self._out.enqueue(line)
        self._flush()

    def deliver_direct(self, line: bytes) -> None:
        """Queue a ``dm`` line (from the subscriber, or the sender's own copy).

        Before the login's catch-up is out it waits; a stored conversation's dm
        to an account goes through the conversation's cursor (in order, once).
        """
        fill = None
        with self._lock:
            payload, fill = self._dms.route(line, self.name, self._account)
        if payload:
            self._write(payload)
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
        with self._lock:
            lines = self._dms.catch_up(peer_key, batch)
            if lines:
                self._out.enqueue_answer(lines)
        self._flush()

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
        with self._lock:
            cursor = self._rooms.get(room)
            if cursor is None or not cursor.live:
                return True
            if batch.epoch != cursor.epoch:
                return False
            skip = max(0, cursor.last_id + 1 - batch.first_id)
            fresh = batch.messages[skip:]
            if fresh:
                if batch.first_id + skip > cursor.last_id + 1:
                    # Trimmed away before we could fetch it: say so in a history frame.
                    self._out.enqueue_answer(
                        list(codec.history_lines(room, batch.epoch, fresh, False)))
                else:
                    self._out.enqueue(b"\n".join(fresh) + b"\n", answer=True)
                cursor.last_id = batch.first_id + skip + len(fresh) - 1
        self._flush()
        return True

    def reset_room(self, room: str, batch: HistoryBatch) -> None:
        """The room's epoch changed: send the new epoch's retained history."""
        with self._lock:
            cursor = self._rooms.get(room)
            if cursor is None or not cursor.live:
                return
            self._out.enqueue_answer(list(
                codec.history_lines(room, batch.epoch, batch.messages, batch.complete)))
            cursor.epoch = batch.epoch
            cursor.last_id = batch.last_id
        self.log.info("event=epoch_reset room=%s epoch=%s", room, batch.epoch)
        self._flush()

    # ------------------------------------------------------------- reader thread

    def run(self) -> None:
        """The session's thread: read frames until the connection ends."""
        svc = self._svc
        svc.metrics.connections.inc()
        reader = codec.LineReader(self._limits.max_frame)
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN)
        started = last_in = time.monotonic()
        limits = self._limits
        try:
            while self._closing_reason() is None:
                if self._out.backlog and self._out.stalled(limits.send_timeout_s):
                    self._overflowed()  # not one byte reached the client: it does not read
                    break
                if self.name is None:
                    timeout = started + limits.login_timeout_s - time.monotonic()
                else:
                    timeout = last_in + limits.idle_timeout_s - time.monotonic()
                wait = min(timeout, _STALL_CHECK_S) if self._out.backlog else timeout
                if timeout <= 0 or not poller.poll(wait * 1000):
                    if timeout > wait:
                        continue  # only a look at the output
                    if self._closing_reason() is None:
                        self.log.info("event=timeout logged_in=%s", self.name is not None)
                        self.kick(ByeReason.IDLE)
                    break
                data = self._recv()
                if not data:
                    break
                last_in = time.monotonic()
                for line in reader.feed(data):
                    self._handle_line(line)
                    if self._closing_reason() is not None:
                        break
                self._settle_inflight()
        except FrameTooLarge as exc:
            self._fatal(exc)
        except Exception:
            self.log.exception("event=session_crashed")
        finally:
            self._cleanup()
            svc.metrics.connections.dec()

    def _fatal(self, exc: ProtocolError) -> None:
        """The stream cannot be resynchronised: ``exc`` is the last line the client
        gets (a room message racing in must not follow it), then the close."""
        with self._lock:
            if self._closing is None:
                self._closing = ByeReason.CLIENT
        self._svc.metrics.errors.labels(exc.code.value).inc()
        self._svc.metrics.frames_out.labels("error").inc()
        self.log.info("event=refused code=%s", exc.code.value)
        self._out.enqueue_final(codec.encode_error(exc))
        self._out.flush()

    def _recv(self) -> bytes:
        while True:
            try:
                return self.sock.recv(_RECV_SIZE)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                # spurious wake-up or TLS record not complete: wait again
                if not select.select([self.sock], [], [], self._limits.idle_timeout_s)[0]:
                    return b""
            except OSError:
                return b""

    def _handle_line(self, line: bytes) -> None:
        """Every line costs a frame token, junk included; every refusal the client
        caused also costs a refusal token (see ``_refused``)."""
        try:
            frame = codec.decode_client(line, self._limits, logged_in=self.name is not None)
        except ProtocolError as exc:
            self._svc.metrics.frames_in.labels("invalid").inc()
            self._settle_inflight()
            self._refused(exc if self._bucket.take() else ProtocolError(
                ErrorCode.RATE_LIMITED, "too many frames; slow down"))
            return
        kind = type(frame).__name__.lower()
        self._svc.metrics.frame_in(kind)
        if not self._bucket.take():
            self._settle_inflight()
            self._refused(ProtocolError(
                ErrorCode.RATE_LIMITED, "too many frames; slow down", _ref_of(frame, line)))
            return
        if isinstance(frame, Send) or (isinstance(frame, Dm) and self._svc.accounts is None):
            try:
                self._submit(frame, line)
            except Exception as exc:
                self._settle_inflight()
                self._answer_failure(exc, frame, line)
            return
        self._settle_inflight()
        try:
            self._dispatch(frame)
        except Exception as exc:
            self._answer_failure(exc, frame, line)

    def _answer_failure(self, exc: Exception, frame: ClientFrame, line: bytes) -> None:
        """Answer a request that raised ``exc``: a refusal the client caused costs a
        refusal token (``_refused``), an outage or a bug does not."""
        refusal = self._refusal(exc, frame, line)
        if isinstance(exc, ProtocolError):
            self._refused(refusal)
        else:
            self._error(refusal)

    def _refusal(self, exc: Exception, frame: ClientFrame, line: bytes) -> ProtocolError:
        """The error frame that answers a request that raised ``exc``."""
        if isinstance(exc, BrokerUnavailable):
            return ProtocolError(ErrorCode.UNAVAILABLE,
                                 "the message broker is unavailable; try again",
                                 _ref_of(frame, line))
        if isinstance(exc, ProtocolError):
            return exc.with_ref(_ref_of(frame, line)) if exc.ref is None else exc
        self.log.error("event=handler_failed frame=%s", type(frame).__name__.lower(),
                       exc_info=exc)
        return ProtocolError(ErrorCode.INTERNAL, "internal error", _ref_of(frame, line))

    def _dispatch(self, frame: ClientFrame) -> None:
        if isinstance(frame, Ping):
            self._send(codec.encode(Pong(frame.ref)), "pong")
        elif isinstance(frame, Typing):
            self._on_typing(frame)
        elif isinstance(frame, Hello):
            self._on_hello(frame)
        elif isinstance(frame, Dm):
            self._on_dm(frame)  # stored conversations (accounts enabled)
        elif isinstance(frame, Join):
            self._on_join(frame)
        elif isinstance(frame, Leave):
            self._on_leave(frame)
        elif isinstance(frame, HistoryQuery):
            self._on_history(frame)
        elif isinstance(frame, Who):
            names = self._svc.broker.who(frame.room)
            self._send(codec.encode(WhoList(frame.room, tuple(names))), "who")
        elif isinstance(frame, Bye):
            self.kick(ByeReason.CLIENT)
        elif isinstance(frame, Register | Passwd | Read | DmHistoryQuery):
            self._on_accounts_pending(frame)

    def _on_accounts_pending(self, frame: Register | Passwd | Read | DmHistoryQuery) -> None:
        """Protocol v1.1 requests: accounts (``gateway.account_requests``) and stored
        conversations (``gateway.conversations``).

        Without accounts (``Services.accounts`` None) ``register``/``passwd`` and a
        conversation's ``history`` are refused as unavailable and ``read`` is
        forgotten. A guest's ``read`` is accepted and forgotten; a guest may not read a
        stored conversation (a guest name passes from person to person): ``auth_failed``.
        """
        gate = self._svc.accounts
        assert self.name is not None
        if isinstance(frame, Read):
            if gate is not None and self._account:
                gate.conversations.set_read(self.name, frame.room, frame.peer, frame.id)
            return
        if gate is None:
            if isinstance(frame, DmHistoryQuery):
                raise ProtocolError(
                    ErrorCode.UNAVAILABLE, "stored conversations are not enabled on this gateway")
            raise ProtocolError(ErrorCode.UNAVAILABLE, "accounts are not enabled on this gateway")
        if isinstance(frame, DmHistoryQuery):
            if not self._account:
                raise ProtocolError(ErrorCode.AUTH_FAILED,
                                    "stored conversations are for accounts: register or log in")
            self._may_answer()
            batch = gate.conversations.read_history(
                self.name, frame.peer, before=frame.before, limit=frame.limit)
            with self._lock:
                shown = self._dms.display(name_key(frame.peer), frame.peer)
            lines = codec.dm_history_lines(shown, batch.epoch, batch.messages, batch.complete)
            self._svc.metrics.frames_out.labels("history").inc(len(lines))
            self._history_budget.spend(sum(map(len, lines)))
            self._out.enqueue_answer(lines)
            self._flush()
            return
        if isinstance(frame, Register):
            answer = gate.register(self.name, self.sid, frame.password)
            self._account = True
            self.log.info("event=registered")
        else:
            answer = gate.passwd(self.name, frame.old, frame.new, self.peer_host)
            self.log.info("event=password_changed")
        self._send(codec.encode(answer), "registered")

    # ------------------------------------------------------------------ requests

    def _require_room(self, room: str) -> None:
        if room not in self._rooms:
            raise ProtocolError(ErrorCode.NOT_IN_ROOM, f"you are not in room {room!r}")

    def _submit(self, frame: Send | Dm, line: bytes) -> None:
        """Hand a ``send`` or ``dm`` to the broker without waiting: the frames of one read
        join the same publisher batch, and their answers go out in order, together
        (``_settle_inflight``), before anything else this session answers."""
        assert self.name is not None
        broker = self._svc.broker
        if self._batch is None:
            self._batch = broker.batch()
        if isinstance(frame, Send):
            self._require_room(frame.room)
            pending: Pending[Any] = broker.submit_message(
                frame.room, self.name, frame.text, time.time(), frame.ref, self._batch)
        else:
            pending = broker.submit_dm(
                self.name, frame.to, frame.text, time.time(), frame.ref, self._batch)
        self._inflight.append((frame, line, pending))
        if len(self._inflight) >= _MAX_INFLIGHT:
            self._settle_inflight()

    def _settle_inflight(self) -> None:
        """Wait for the submitted sends and dms, and write their answers in one go."""
        if not self._inflight:
            return
        inflight, self._inflight = self._inflight, []
        if self._batch is not None:
            self._batch.submit()
            self._batch = None
        out: list[bytes] = []
        acks = refusals = 0
        for frame, line, pending in inflight:
            try:
                result = pending.result()
            except Exception as exc:
                out.append(self._error_line(self._refusal(exc, frame, line)))
                refusals += isinstance(exc, ProtocolError)
                continue
            if isinstance(frame, Dm):
                assert self.name is not None
                if not result.duplicate and name_key(frame.to) != name_key(self.name):
                    self._svc.metrics.frames_out.labels("dm").inc()
                    out.append(result.line + b"\n")
                if frame.ref is not None:
                    out.append(codec.encode(Ack(frame.ref)))
                    acks += 1
            elif frame.ref is not None:
                out.append(codec.encode(Ack(frame.ref, result.id)))
                acks += 1
        if acks:
            self._svc.metrics.frames_out.labels("ack").inc(acks)
        if out:
            self._write(b"".join(out))
        for _ in range(refusals):
            self._charge_refusal()

    def _on_dm(self, frame: Dm) -> None:
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

    def _on_typing(self, frame: Typing) -> None:
        self._require_room(frame.room)
        assert self.name is not None
        now = time.monotonic()
        with self._lock:
            cursor = self._rooms[frame.room]
            if now - cursor.typing_at < self._limits.typing_interval_s:
                return
            cursor.typing_at = now
        self._svc.broker.publish_typing(frame.room, self.name)

    def _on_history(self, frame: HistoryQuery) -> None:
        self._require_room(frame.room)
        self._may_answer()
        batch = self._svc.broker.read_history(frame.room, before=frame.before, limit=frame.limit)
        lines = list(
            codec.history_lines(frame.room, batch.epoch, batch.messages, batch.complete))
        self._svc.metrics.frames_out.labels("history").inc(len(lines))
        self._history_budget.spend(sum(map(len, lines)))
        self._out.enqueue_answer(lines)
        self._flush()

    def _on_join(self, frame: Join) -> None:
        if frame.room in self._rooms:
            # Already a member: answer with the newest history again, change nothing.
            self._on_history(HistoryQuery(frame.room))
            return
        if len(self._rooms) >= self._limits.max_rooms:
            raise ProtocolError(
                ErrorCode.BAD_ROOM, f"a session is in at most {self._limits.max_rooms} rooms")
        self._may_answer()
        self._join_room(frame.room)

    def _on_leave(self, frame: Leave) -> None:
        self._require_room(frame.room)
        assert self.name is not None
        left_line = codec.encode(Left(frame.room, self.name))
        with self._lock:
            self._rooms[frame.room].leaving_line = left_line
        try:
            self._svc.broker.leave(frame.room, self.name)
        except BaseException:
            with self._lock:
                if frame.room in self._rooms:
                    self._rooms[frame.room].leaving_line = None
            raise
        with self._lock:
            self._rooms.pop(frame.room, None)
        if self._svc.registry.leave(self, frame.room):
            self._svc.subscriber.unsubscribe(frame.room)
        self._send(left_line, "left")

    def _on_hello(self, frame: Hello) -> None:
        if self.name is not None:
            raise ProtocolError(ErrorCode.ALREADY_LOGGED_IN, f"already logged in as {self.name}")
        if len(frame.rooms) > self._limits.max_rooms:
            raise ProtocolError(
                ErrorCode.BAD_ROOM, f"a session is in at most {self._limits.max_rooms} rooms")
        svc = self._svc
        owner = svc.accounts.check_hello(frame, self.peer_host) if svc.accounts else False
        self._wanted_rooms = frozenset(frame.rooms)
        key = name_key(frame.name)
        svc.registry.begin_claim(key, self)  # until bound: a kicked holder must see us
        try:
            claim = svc.broker.claim_name(frame.name, self.sid, frame.token, owner=owner)
            self._account = claim.account
            self.name = claim.name
            self._token_hash = token_hash(claim.token)
            self.log.extra = {"sid": self.sid, "user": claim.name}
            displaced = svc.registry.bind_name(self)
        finally:
            svc.registry.end_claim(key, self)
        if displaced is not None:
            displaced.kick(ByeReason.REPLACED)
        # Every room is subscribed before any is announced, and nothing is sent
        # before every room is announced: a refused hello gets only its error.
        # Rooms the name's memberships came along from (a token takeover) and the
        # hello does not list are left: the old session was there, this one is not.
        unwanted = [room for room in claim.rooms if room not in self._wanted_rooms]
        entered: list[str] = []
        try:
            for room in frame.rooms:
                entered.append(room)
                self._enter_room(room)
            batches = [self._announce(room, frame.since.get(room)) for room in frame.rooms]
            for room in unwanted:
                svc.broker.leave(room, claim.name)
            caught_up = self._load_conversations(frame.since)
        except BaseException:
            self._undo_login(entered, unwanted)
            raise
        self._send(codec.encode(Welcome(
            claim.name, svc.config.gateway_id, frame.rooms, claim.token,
            self._limits.announced(), account=self._account, dms=caught_up.summaries,
            read=caught_up.room_reads)), "welcome")
        svc.metrics.logged_in.inc()
        self.log.info("event=login rooms=%d resumed=%s replaced=%s", len(frame.rooms),
                      bool(frame.since), claim.replaced_session is not None)
        for i, (room, batch) in enumerate(zip(frame.rooms, batches, strict=True)):
            # One room's history at a time: the next is queued once the previous one
            # has reached the kernel, so a catch-up of many rooms never piles up here.
            if i and not self._out.wait_answers_sent(self._limits.send_timeout_s):
                if self._closing_reason() is None:
                    self._overflowed()
                return
            self._go_live(room, batch)
        self._wanted_rooms = frozenset()  # in them now: in_room answers from here on
        self._open_conversations(caught_up, bool(frame.rooms))

    def _open_conversations(self, caught_up: CatchUp, waiting: bool) -> None:
        """After the rooms' histories: each conversation's catch-up, one answer at a time
        as rooms' are, then the dms that waited meanwhile, in order, and live ones."""
        for conv, batch in caught_up.loaded:
            lines = dm_history(conv.peer, batch)
            if not lines:
                continue
            if waiting and not self._out.wait_answers_sent(self._limits.send_timeout_s):
                if self._closing_reason() is None:
                    self._overflowed()
                return
            waiting = True
            self._svc.metrics.frames_out.labels("history").inc(len(lines))
            self._history_budget.spend(sum(map(len, lines)))
            self._out.enqueue_answer(lines)
            self._flush()
        with self._lock:
            payload, fills = self._dms.open(caught_up, self.name, self._account)
            if payload:
                self._out.enqueue(payload)
        self._flush()
        for peer_key in fills:
            self._fill_conversation(peer_key)

    def _undo_login(self, rooms: list[str], taken_over: list[str]) -> None:
        """A hello failed after its claim: give back rooms and name, as if never logged in.

        ``taken_over``: rooms whose membership came with the name and that the hello
        does not list.
        """
        assert self.name is not None
        for room in rooms:
            self._abandon_room(room)
        try:
            for room in rooms + taken_over:
                self._svc.broker.leave(room, self.name)  # a no-op where not ours
            self._svc.broker.release_name(self.name, self.sid)
        except BrokerUnavailable:
            self.log.warning("event=undo_login_failed")
        self._svc.registry.unbind_name(self)
        self._wanted_rooms = frozenset()
        self._account = False
        with self._lock:
            self._dms.reset()
        self.name = None

    def _load_conversations(self, since: dict[str, Position]) -> CatchUp:
        """An account's conversations at login: what ``since`` (or, without it, the read
        mark) shows the client has not seen, and the summaries of ``welcome``."""
        gate = self._svc.accounts
        if gate is None or not self._account or self.name is None:
            return CatchUp()
        return load_catch_up(gate.conversations, self.name, since)

    def _join_room(self, room: str) -> None:
        """``join``: enter, announce, then history; undone if a step fails."""
        try:
            self._enter_room(room)
            batch = self._announce(room, None)
        except BaseException:
            self._abandon_room(room)
            raise
        self._go_live(room, batch)

    def _enter_room(self, room: str) -> None:
        """Register and subscribe; from here live messages wait in the room's cursor."""
        with self._lock:
            self._rooms[room] = RoomCursor()
        self._svc.registry.join(self, room)
        if not self._svc.subscriber.subscribe(room).wait(5.0):
            raise BrokerUnavailable(f"could not subscribe to room {room}")

    def _announce(self, room: str, since: Position | None) -> HistoryBatch:
        """Record our presence (the room sees ``joined``), then read the history to send."""
        svc = self._svc
        assert self.name is not None
        svc.broker.join(room, self.name)
        if since is not None:
            batch = svc.broker.read_history(room, after=since.id)
            if batch.epoch == since.epoch:
                return batch
            return svc.broker.read_history(room, after=0)
        return svc.broker.read_history(room)

    def _abandon_room(self, room: str) -> None:
        with self._lock:
            self._rooms.pop(room, None)
        if self._svc.registry.leave(self, room):
            self._svc.subscriber.unsubscribe(room)

    def _go_live(self, room: str, batch: HistoryBatch) -> None:
        """Send the history, then the live messages that waited, skipping what it held."""
        svc = self._svc
        needs_fill = False
        lines = list(codec.history_lines(room, batch.epoch, batch.messages, batch.complete))
        self._history_budget.spend(sum(map(len, lines)))
        with self._lock:
            cursor = self._rooms[room]
            self._out.enqueue_answer(lines)
            cursor.epoch, cursor.last_id = batch.epoch, batch.last_id
            for epoch, msg_id, line in cursor.pending:
                if msg_id == 0:
                    self._out.enqueue(line)
                elif epoch != cursor.epoch or msg_id > cursor.last_id + 1:
                    needs_fill = True
                elif msg_id == cursor.last_id + 1:
                    self._out.enqueue(line)
                    cursor.last_id = msg_id
            cursor.pending.clear()
            cursor.live = True
        svc.metrics.frames_out.labels("history").inc()
        self._flush()
        if needs_fill:
            svc.subscriber.request_fill(room)

    # ------------------------------------------------------------------ cleanup

    def _cleanup(self) -> None:
        svc = self._svc
        for room in svc.registry.remove(self):
            svc.subscriber.unsubscribe(room)
        name = self.name
        if name is not None:
            svc.metrics.logged_in.dec()
            if not svc.stopping():
                self._release(name)
        self._out.wait_drained(_CLOSE_FLUSH_S)
        self._out.close()
        self._linger()
        with contextlib.suppress(OSError):
            self.sock.close()
        self.log.info("event=closed reason=%s", self._closing.value if self._closing else "eof")

    def _linger(self) -> None:
        """Close gracefully: FIN first, then read and drop what the client still sends.

        Closing a socket with unread input makes the kernel send a reset, and a
        reset destroys the answers the client has not read yet (the
        ``frame_too_large`` it must see, say). Bounded in time and bytes.
        """
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + _LINGER_S
        dropped = 0
        with contextlib.suppress(OSError, ValueError):
            while dropped < _LINGER_BYTES:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not select.select([self.sock], [], [], remaining)[0]:
                    return
                data = self.sock.recv(_RECV_SIZE)
                if not data:
                    return
                dropped += len(data)

    def _release(self, name: str) -> None:
        """Give back the name and memberships, unless a successor holds or wants them.

        A local successor (same name, same gateway) shares our membership
        records, so leaving a room it wants would delete its presence there.
        """
        svc = self._svc
        successors = svc.registry.successors(name_key(name), self)
        with self._lock:
            rooms = list(self._rooms)
            self._rooms.clear()
        rooms = [r for r in rooms if not any(s.wants_room(r) for s in successors)]
        try:
            for room in rooms:
                svc.broker.leave(room, name)
            if self._closing_reason() is not ByeReason.REPLACED:
                svc.broker.release_name(name, self.sid)
        except BrokerUnavailable:
            self.log.warning("event=release_failed rooms=%d", len(rooms))

    def wants_room(self, room: str) -> bool:
        """In the room, or about to join it as part of its ``hello``."""
        return room in self._wanted_rooms or self.in_room(room)

    def in_room(self, room: str) -> bool:
        with self._lock:
            return room in self._rooms

    def restore_presence(self) -> None:
        """Redis forgot this gateway (data loss, or reaped while paused): claim back
        the name with the token the client holds, and the memberships."""
        name = self.name
        if name is None or self._closing is not None:
            return
        if not self._svc.broker.restore_name(name, self.sid, self._token_hash,
                                             owner=self._account):
            self.log.info("event=name_lost_while_away")
            self.kick(ByeReason.REPLACED)
            return
        with self._lock:
            rooms = [room for room, cursor in self._rooms.items() if cursor.live]
        for room in rooms:
            self._svc.broker.join(room, name, limited=False)
