"""A session's sends and dms in flight: handed to the broker's publisher without
waiting, answered together and in order.

The frames of one read join the same publisher batch (``submit``); their answers
(acks, a dm's own copy, refusals) go out in one write, in the order the frames
came (``settle``), before anything else the session answers. The reader thread
settles after each read, before any other request, and when ``MAX_INFLIGHT``
are waiting. Owned by the session's reader thread alone: no lock.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from gateway.front.reader import refusal
from gateway.redis.broker import Pending, PublishBatch
from protocol import codec
from protocol.errors import ProtocolError
from protocol.frames import Ack, DmRequest, Send
from protocol.names import name_key

if TYPE_CHECKING:
    from gateway.front.session import Session

MAX_INFLIGHT = 256
"""Sends and dms of one session awaiting their answers at most."""

CREDIT_AFTER_S = 0.5
"""A wait for the broker longer than this is credited to the session's frame bucket
(``TokenBucket.credit``): a send in doubt may wait up to the publisher's settle time
(``gateway.redis.publisher.SETTLE_S``), and the frames the client sent meanwhile, at
its rate, must not be refused as a burst when the reader gets to them."""


class Inflight:
    """Sends and dms handed to the broker, not yet answered (the reader thread's only)."""

    __slots__ = ("_batch", "_items")

    def __init__(self) -> None:
        self._items: list[tuple[Send | DmRequest, bytes, Pending[Any]]] = []
        self._batch: PublishBatch | None = None
        """Where ``submit`` collects them until ``settle`` submits them at once."""

    def submit(self, s: Session, frame: Send | DmRequest, line: bytes) -> None:
        """Hand a ``send`` or ``dm`` to the broker without waiting."""
        assert s.name is not None
        broker = s._svc.broker
        if self._batch is None:
            self._batch = broker.batch()
        if isinstance(frame, Send):
            s._require_room(frame.room)
            pending: Pending[Any] = broker.submit_message(
                frame.room, s.name, frame.text, time.time(), frame.ref, self._batch)
        else:
            pending = broker.submit_dm(
                s.name, frame.to, frame.text, time.time(), frame.ref, self._batch)
        self._items.append((frame, line, pending))
        if len(self._items) >= MAX_INFLIGHT:
            self.settle(s)

    def settle(self, s: Session) -> None:
        """Wait for the submitted sends and dms, and write their answers in one go."""
        if not self._items:
            return
        inflight, self._items = self._items, []
        # the first result() hands the batch over (``PublishBatch.run``): this thread
        # writes it itself when the publisher is idle, with no wake-up of another thread
        self._batch = None
        out: list[bytes] = []
        acks = refusals = 0
        started = time.monotonic()
        for frame, line, pending in inflight:
            try:
                result = pending.result()
            except Exception as exc:
                out.append(s._error_line(refusal(s, exc, frame, line)))
                refusals += isinstance(exc, ProtocolError)
                continue
            if isinstance(frame, DmRequest):
                assert s.name is not None
                if not result.duplicate and name_key(frame.to) != name_key(s.name):
                    s._svc.metrics.frames_out.labels("dm").inc()
                    out.append(result.line + b"\n")
                if frame.ref is not None:
                    out.append(codec.encode(Ack(frame.ref)))
                    acks += 1
            elif frame.ref is not None:
                out.append(codec.encode(Ack(frame.ref, result.id)))
                acks += 1
        waited = time.monotonic() - started
        if waited > CREDIT_AFTER_S:
            s._bucket.credit(waited)
        if acks:
            s._svc.metrics.frames_out.labels("ack").inc(acks)
        if out:
            s._send(b"".join(out))
        for _ in range(refusals):
            s._charge_refusal()


__all__ = ["CREDIT_AFTER_S", "MAX_INFLIGHT", "Inflight"]
