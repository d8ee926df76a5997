"""Reading rooms' history for the subscriber, on a thread of its own (``Filler``), and what
to read so every local member of a room is brought up to date (``read_missing``)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from gateway.redis.broker import Broker, HistoryBatch

log = logging.getLogger(__name__)


class Filler:
    """Reads rooms' history on a thread of its own, so that reading one room's history never
    holds up the fan-out of the others (``fill`` hands what it read back to the subscriber's
    thread, which delivers it).

    ``request`` may be called from any thread; a room asked for twice before its turn is
    read once. A fill that fails (Redis unavailable) is tried again ``retry_s`` later.
    """

    def __init__(self, fill: Callable[[str], bool], *, retry_s: float = 0.5) -> None:
        self._fill = fill
        self._retry_s = retry_s
        self._changed = threading.Condition()
        self._wanted: dict[str, None] = {}
        """Rooms to fill, oldest request first (an ordered set)."""
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="filler")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._changed:
            self._stopping = True
            self._changed.notify()
        if self._thread.is_alive():
            self._thread.join(5)

    def request(self, room: str) -> None:
        with self._changed:
            if room not in self._wanted:
                self._wanted[room] = None
                self._changed.notify()

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._wanted and not self._stopping:
                    self._changed.wait()
                if self._stopping:
                    return
                room = next(iter(self._wanted))
                del self._wanted[room]
            try:
                done = self._fill(room)
            except Exception:
                log.exception("event=fill_crashed room=%s", room)
                done = True
            if not done:
                with self._changed:
                    self._changed.wait_for(lambda: self._stopping, self._retry_s)
                self.request(room)


def read_missing(broker: Broker, room: str, positions: Sequence[tuple[str, int]]
                 ) -> tuple[HistoryBatch, HistoryBatch | None]:
    """What the members at ``positions`` (epoch, last id) miss of ``room``: every message after
    the lowest id, and, when some member holds another epoch, the room's whole retained
    history too (for a reset). Raises ``BrokerUnavailable``."""
    batch = broker.read_history(room, after=min(last for _, last in positions))
    fresh = None
    if any(epoch != batch.epoch for epoch, _ in positions):
        fresh = broker.read_history(room, after=0)
    return batch, fresh


__all__ = ["Filler", "read_missing"]
