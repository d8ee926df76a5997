"""An ``on_event`` for tests that keeps every event and waits for them without sleeping."""

from __future__ import annotations

import threading
from typing import TypeVar

from client import events as ev
from protocol import frames as fr
from tests.support.waiting import wait_for

E = TypeVar("E", bound=ev.ClientEvent)


class Recorder:
    """``on_event`` that keeps every event, with the thread it came on."""

    def __init__(self) -> None:
        self.events: list[ev.ClientEvent] = []
        self.threads: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, event: ev.ClientEvent) -> None:
        with self._lock:
            self.events.append(event)
            self.threads.add(threading.current_thread().name)

    def of(self, kind: type[E]) -> list[E]:
        with self._lock:
            return [e for e in self.events if isinstance(e, kind)]

    def wait(self, kind: type[E], count: int = 1, timeout: float = 10.0) -> E:
        """The ``count``-th event of ``kind``, once it came."""
        found = wait_for(lambda: len(self.of(kind)) >= count, timeout,
                         what=f"{count} x {kind.__name__}")
        assert found
        return self.of(kind)[count - 1]

    def room_messages(self, room: str = "lobby") -> list[fr.Message]:
        """Messages as the caller saw them: fresh history, then live messages."""
        out: list[fr.Message] = []
        with self._lock:
            for e in self.events:
                if isinstance(e, ev.HistoryLoaded) and e.room == room and not e.older:
                    out.extend(e.messages)
                elif isinstance(e, ev.RoomMessage) and e.message.room == room:
                    out.append(e.message)
        return out

    def room_ids(self, room: str = "lobby") -> list[int]:
        return [m.id for m in self.room_messages(room)]
