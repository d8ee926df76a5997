"""A session's reader thread: recv, decode, dispatch, and the close with its linger.

``run`` is the thread's body (``Session.run``); it owns the socket's receive
side and its close. It decodes lines with ``protocol.codec``, charges the
frame and refusal budgets, dispatches each frame to the session's request
handlers (``hello`` to ``gateway.front.login``), and on the way out releases the
name (``gateway.front.login.release``), drains the output and lingers.

Lock order: takes no lock of its own; the session's ``_lock`` only through
the session's methods, never across socket or Redis calls.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import time
from typing import TYPE_CHECKING

import orjson

from gateway.front import login, rooms
from gateway.redis.broker import BrokerUnavailable
from protocol import codec
from protocol.errors import ErrorCode, FrameTooLarge, ProtocolError
from protocol.frames import (
    ByeReason,
    ByeRequest,
    ClientFrame,
    DmHistoryQuery,
    DmRequest,
    Hello,
    HistoryQuery,
    Join,
    Leave,
    Passwd,
    Ping,
    Pong,
    Read,
    Register,
    Send,
    TypingRequest,
    Who,
    WhoList,
)
from protocol.names import check_ref

if TYPE_CHECKING:
    from gateway.front.session import Session

_RECV_SIZE = 65536
_CLOSE_FLUSH_S = 1.0
_LINGER_S = 1.0
_LINGER_BYTES = 1 << 20
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


def run(s: Session) -> None:
    """The session's thread: read frames until the connection ends."""
    svc = s._svc
    svc.metrics.connections.inc()
    reader = codec.LineReader(s._limits.max_frame)
    poller = select.poll()
    poller.register(s.sock.fileno(), select.POLLIN)
    started = last_in = time.monotonic()
    limits = s._limits
    try:
        while s._closing_reason() is None:
            if s._out.backlog and s._out.stalled(limits.send_timeout_s):
                s._overflowed()  # not one byte reached the client: it does not read
                break
            if s.name is None:
                timeout = started + limits.login_timeout_s - time.monotonic()
            else:
                timeout = last_in + limits.idle_timeout_s - time.monotonic()
            wait = min(timeout, _STALL_CHECK_S) if s._out.backlog else timeout
            if timeout <= 0 or not poller.poll(wait * 1000):
                if timeout > wait:
                    continue  # only a look at the output
                if s._closing_reason() is None:
                    s.log.info("event=timeout logged_in=%s", s.name is not None)
                    s.kick(ByeReason.IDLE)
                break
            data = _recv(s)
            if not data:
                break
            last_in = time.monotonic()
            for line in reader.feed(data):
                _handle_line(s, line)
                if s._closing_reason() is not None:
                    break
            s.inflight.settle(s)
    except FrameTooLarge as exc:
        _fatal(s, exc)
    except Exception:
        s.log.exception("event=session_crashed")
    finally:
        _cleanup(s)
        svc.metrics.connections.dec()


def _fatal(s: Session, exc: ProtocolError) -> None:
    """The stream cannot be resynchronised: ``exc`` is the last line the client
    gets (a room message racing in must not follow it), then the close."""
    s._close_with(ByeReason.CLIENT)
    s._svc.metrics.errors.labels(exc.code.value).inc()
    s._svc.metrics.frames_out.labels("error").inc()
    s.log.info("event=refused code=%s", exc.code.value)
    s._out.enqueue_final(codec.encode_error(exc))
    s._out.flush()


def _recv(s: Session) -> bytes:
    while True:
        try:
            return s.sock.recv(_RECV_SIZE)
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
            # spurious wake-up or TLS record not complete: wait again
            if not select.select([s.sock], [], [], s._limits.idle_timeout_s)[0]:
                return b""
        except OSError:
            return b""


def _handle_line(s: Session, line: bytes) -> None:
    """Every line costs a frame token, junk included; every refusal the client
    caused also costs a refusal token (see ``Session._refused``). A ``send`` (and a
    ``dm`` without stored conversations) is handed to the broker without waiting
    (``gateway.front.sends``); whatever else comes first settles those in flight."""
    try:
        frame = codec.decode_client(line, s._limits, logged_in=s.name is not None)
    except ProtocolError as exc:
        s._svc.metrics.frames_in.labels("invalid").inc()
        s.inflight.settle(s)
        s._refused(exc if s._bucket.take() else ProtocolError(
            ErrorCode.RATE_LIMITED, "too many frames; slow down"))
        return
    kind = type(frame).__name__.lower().removesuffix("request")
    s._svc.metrics.frame_in(kind)
    if not s._bucket.take():
        s.inflight.settle(s)
        s._refused(ProtocolError(
            ErrorCode.RATE_LIMITED, "too many frames; slow down", _ref_of(frame, line)))
        return
    if isinstance(frame, Send) or (isinstance(frame, DmRequest) and s._svc.accounts is None):
        try:
            s.inflight.submit(s, frame, line)
        except Exception as exc:
            s.inflight.settle(s)
            _answer_failure(s, exc, frame, line)
        return
    s.inflight.settle(s)
    try:
        _dispatch(s, frame)
    except Exception as exc:
        _answer_failure(s, exc, frame, line)


def _answer_failure(s: Session, exc: Exception, frame: ClientFrame, line: bytes) -> None:
    """Answer a request that raised ``exc``: a refusal the client caused costs a
    refusal token (``Session._refused``), an outage or a bug does not."""
    answer = refusal(s, exc, frame, line)
    if isinstance(exc, ProtocolError):
        s._refused(answer)
    else:
        s._error(answer)


def refusal(s: Session, exc: Exception, frame: ClientFrame, line: bytes) -> ProtocolError:
    """The error frame that answers a request that raised ``exc``."""
    if isinstance(exc, BrokerUnavailable):
        return ProtocolError(ErrorCode.UNAVAILABLE,
                             "the message broker is unavailable; try again",
                             _ref_of(frame, line))
    if isinstance(exc, ProtocolError):
        return exc.with_ref(_ref_of(frame, line)) if exc.ref is None else exc
    s.log.error("event=handler_failed frame=%s", type(frame).__name__.lower(), exc_info=exc)
    return ProtocolError(ErrorCode.INTERNAL, "internal error", _ref_of(frame, line))


def _dispatch(s: Session, frame: ClientFrame) -> None:
    match frame:
        case Ping():
            s._send(codec.encode(Pong(frame.ref)), "pong")
        case TypingRequest():
            rooms.typing(s, frame)
        case Hello():
            login.hello(s, frame)
        case DmRequest():
            s._on_dm(frame)  # stored conversations (accounts enabled)
        case Join():
            rooms.join(s, frame)
        case Leave():
            rooms.leave(s, frame)
        case HistoryQuery():
            rooms.history(s, frame)
        case Who():
            names = s._svc.broker.who(frame.room)
            s._send(codec.encode(WhoList(frame.room, tuple(names))), "who")
        case ByeRequest():
            s.kick(ByeReason.CLIENT)
        case Register() | Passwd() | Read() | DmHistoryQuery():
            s._on_accounts_pending(frame)


def _cleanup(s: Session) -> None:
    svc = s._svc
    if svc.registry.remove(s):  # rooms left with no local member
        svc.subscriber.rooms_changed()
    name = s.name
    if name is not None:
        svc.metrics.logged_in.dec()
        if not svc.stopping():
            login.release(s, name)
    s._out.wait_drained(_CLOSE_FLUSH_S)
    s._out.close()
    _linger(s)
    with contextlib.suppress(OSError):
        s.sock.close()
    reason = s._closing_reason()
    s.log.info("event=closed reason=%s", reason.value if reason else "eof")


def _linger(s: Session) -> None:
    """Close gracefully: FIN first, then read and drop what the client still sends.

    Closing a socket with unread input makes the kernel send a reset, and a
    reset destroys the answers the client has not read yet (the
    ``frame_too_large`` it must see, say). Bounded in time and bytes.
    """
    with contextlib.suppress(OSError):
        s.sock.shutdown(socket.SHUT_WR)
    deadline = time.monotonic() + _LINGER_S
    dropped = 0
    with contextlib.suppress(OSError, ValueError):
        while dropped < _LINGER_BYTES:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([s.sock], [], [], remaining)[0]:
                return
            data = s.sock.recv(_RECV_SIZE)
            if not data:
                return
            dropped += len(data)


__all__ = ["run"]
