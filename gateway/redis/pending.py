"""Messages and dms handed to the publisher: a thread's batch, and each request's outcome."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Generic, TypeVar

from gateway.redis.errors import BrokerUnavailable
from gateway.redis.publisher import Submitter
from gateway.redis.scripts import ScriptCall

GIVE_UP_S = 120.0
"""How long a session waits for the publisher at most: far beyond every deadline, so only a
publisher bug could make it matter (the request is then answered ``unavailable``)."""


T = TypeVar("T")


class PublishBatch:
    """Messages and dms collected by one thread, handed to the publisher together.

    ``Broker.batch()`` makes one; ``message``/``dm`` add requests (nothing is
    sent yet), ``submit`` queues them all, in order, behind one future;
    ``Pending.result`` submits its batch if nobody did.
    """

    __slots__ = ("_calls", "_future", "_publisher")

    def __init__(self, publisher: Submitter) -> None:
        self._publisher = publisher
        self._calls: list[ScriptCall] = []
        self._future: concurrent.futures.Future[list[Any]] | None = None

    def __len__(self) -> int:
        return len(self._calls)

    def add(self, call: ScriptCall) -> int:
        if self._future is not None:
            raise RuntimeError("this batch was already submitted")
        self._calls.append(call)
        return len(self._calls) - 1

    def submit(self) -> concurrent.futures.Future[list[Any]]:
        if self._future is None:
            self._future = self._publisher.submit_all(self._calls)
        return self._future

    def run(self) -> concurrent.futures.Future[list[Any]]:
        """``submit`` by a thread that waits for the outcome now: written from it when
        the publisher is idle (``Publisher.run_all``)."""
        if self._future is None:
            self._future = self._publisher.run_all(self._calls)
        return self._future


class Pending(Generic[T]):
    """A message or dm handed to the publisher: ``result()`` waits for its outcome."""

    __slots__ = ("_batch", "_guard", "_index", "_interpret", "_what")

    def __init__(self, batch: PublishBatch, index: int, what: str,
                 guard: Callable[[str], AbstractContextManager[None]],
                 interpret: Callable[[Any], T]) -> None:
        self._batch = batch
        self._index = index
        self._what = what
        self._guard = guard
        self._interpret = interpret

    def result(self) -> T:
        """The outcome; raises ``BrokerUnavailable`` or the request's refusal."""
        try:
            outcome = self._batch.run().result(GIVE_UP_S)[self._index]
        except concurrent.futures.TimeoutError as exc:
            raise BrokerUnavailable("the publisher did not answer") from exc
        if isinstance(outcome, Exception):
            with self._guard(self._what):  # Redis out of reach or refusing: unavailable
                raise outcome
        return self._interpret(outcome)


__all__ = ["GIVE_UP_S", "Pending", "PublishBatch"]
