"""Chatting clients, what each one saw, and the verdict over all of it.

A ``Crowd`` logs ``ChatClient``s in and makes them chat at a steady rate
from one sender thread, each message text unique (sender, counter, room).
Every client's events land in its ``EventLog``. ``judge`` then compares what
every client received with what Redis stored (the authoritative record: ids
1..seq of each room, while no more than ``history`` messages were sent) and
with every send's outcome, and counts what the protocol forbids: lost,
duplicated and reordered deliveries, sends without exactly one outcome,
failures without a clear error, acks that do not match what was stored.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis

from client import events as ev
from client.backoff import ExponentialBackoff
from client.connection import ChatClient
from client.errors import ClientError, SendAborted
from gateway.redis import keys
from protocol import frames as fr
from protocol.codec import decode_server
from protocol.errors import ErrorCode
from tests.support.gateways import GatewayProcess
from tests.support.waiting import wait_for

E = TypeVar("E", bound=ev.ClientEvent)

SUMMARY_KEY = "chaos_summary"
"""``record_property`` key of a chaos test's one-line summary (printed by conftest)."""
NOTES_KEY = "chaos_notes"
"""``record_property`` key of a list of lines printed under the summary: what ran when."""



@dataclass(frozen=True, slots=True)
class Sent:
    """One ``send()`` that returned a ref."""

    sender: str
    room: str
    text: str
    ref: str
    at: float
    """When ``send()`` was called, in seconds since the crowd started chatting."""


@dataclass(frozen=True, slots=True)
class Received:
    """One room message as the caller saw it (fresh history or live)."""

    segment: int
    """0 until the room's first ``EpochReset`` at this client, then 1, 2 ..."""
    id: int
    sender: str
    text: str


@dataclass(slots=True)
class _RoomView:
    segment: int = 0
    received: list[Received] = field(default_factory=list)


class EventLog:
    """``on_event`` of one client: keeps every event, and each room's deliveries, thread-safe."""

    def __init__(self, name: str, rooms: Iterable[str]) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._events: list[tuple[float, ev.ClientEvent]] = []
        self._rooms = {room: _RoomView() for room in rooms}
        self._outcomes: dict[str, list[ev.Acked | ev.SendFailed]] = {}

    def __call__(self, event: ev.ClientEvent) -> None:
        with self._lock:
            self._events.append((time.monotonic(), event))
            match event:
                case ev.Acked(ref=ref) | ev.SendFailed(ref=ref):
                    self._outcomes.setdefault(ref, []).append(event)
                case ev.EpochReset(room=room) if room in self._rooms:
                    self._rooms[room].segment += 1
                case ev.HistoryLoaded(room=room, older=False) if room in self._rooms:
                    view = self._rooms[room]
                    view.received.extend(_received(view.segment, m) for m in event.messages)
                case ev.RoomMessage(message=m) if m.room in self._rooms:
                    view = self._rooms[m.room]
                    view.received.append(_received(view.segment, m))
                case _:
                    pass

    def of(self, kind: type[E]) -> list[E]:
        with self._lock:
            return [e for _, e in self._events if isinstance(e, kind)]

    def timed(self) -> list[tuple[float, ev.ClientEvent]]:
        """Every event with the ``time.monotonic()`` it arrived at."""
        with self._lock:
            return list(self._events)

    def received(self, room: str) -> list[Received]:
        with self._lock:
            return list(self._rooms[room].received)

    def last_delivered(self, room: str) -> tuple[int, int]:
        """(segment, id) of the newest message of ``room`` delivered, id 0 if none yet."""
        with self._lock:
            view = self._rooms[room]
            last = view.received[-1].id if view.received else 0
            return view.segment, last

    def outcomes(self) -> dict[str, list[ev.Acked | ev.SendFailed]]:
        with self._lock:
            return {ref: list(found) for ref, found in self._outcomes.items()}

    def has_outcome(self, ref: str) -> bool:
        with self._lock:
            return ref in self._outcomes


def _received(segment: int, m: fr.Message) -> Received:
    return Received(segment, m.id, m.sender, m.text)


class Crowd:
    """Clients that chat: each sends to one of its rooms every ``interval`` seconds.

    ``rooms_of`` gives each client's rooms and ``addresses_of`` its gateways,
    first choice first. One thread sends for all (a heap of due times), from
    a seeded random generator, so the sequence of texts and rooms is the same
    on every run; only the timing of faults around it varies.
    """

    def __init__(self, rooms_of: Mapping[str, Sequence[str]],
                 addresses_of: Mapping[str, Sequence[str]], *, seed: int = 7,
                 interval: tuple[float, float] = (0.5, 1.0), ping_interval: float = 5.0,
                 connect_timeout: float = 3.0, hold_unavailable: float = 0.0) -> None:
        """``hold_unavailable``: seconds a send answered ``unavailable`` is kept and resent
        with its ref (ChatClient's option, as the Tk app and chat-term use it); 0: it fails."""
        self.rooms_of = {name: tuple(rooms) for name, rooms in rooms_of.items()}
        backoff = ExponentialBackoff(base=0.05, cap=0.5)  # 25 ms to 0.5 s: jitter, no long sleeps
        self.logs = {name: EventLog(name, rooms) for name, rooms in self.rooms_of.items()}
        self.clients = {
            name: ChatClient(name, list(addresses_of[name]), rooms, on_event=self.logs[name],
                             ping_interval=ping_interval, backoff=backoff,
                             connect_timeout=connect_timeout,
                             hold_unavailable=hold_unavailable)
            for name, rooms in self.rooms_of.items()
        }
        self._rng = random.Random(seed)
        self._interval = interval
        self._lock = threading.Lock()
        self._sent: list[Sent] = []
        self._refused: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._chat, name="chaos-sender", daemon=True)
        self._started = 0.0

    def members(self, room: str) -> set[str]:
        return {name for name, rooms in self.rooms_of.items() if room in rooms}

    @property
    def rooms(self) -> tuple[str, ...]:
        return tuple(sorted({r for rooms in self.rooms_of.values() for r in rooms}))

    def connect_all(self, timeout: float = 10.0) -> dict[str, str]:
        """Log every client in; returns the gateway each one landed on."""
        return {name: c.connect(timeout).gateway for name, c in self.clients.items()}

    def start_chatting(self) -> None:
        self._started = time.monotonic()
        self._thread.start()

    def stop_chatting(self) -> None:
        self._stop.set()
        self._thread.join(30)
        assert not self._thread.is_alive(), "the sender thread hangs in send()"

    def close_all(self) -> None:
        for client in self.clients.values():
            client.close()

    @property
    def sent(self) -> list[Sent]:
        with self._lock:
            return list(self._sent)

    @property
    def refused(self) -> list[str]:
        """``send()`` calls that raised (the client was closed): each one a problem."""
        with self._lock:
            return list(self._refused)

    def elapsed(self) -> float:
        """Seconds since chatting started, on the clock of ``Sent.at``."""
        return time.monotonic() - self._started

    def unresolved(self) -> list[Sent]:
        """Sends with neither ``Acked`` nor ``SendFailed`` yet."""
        return [s for s in self.sent if not self.logs[s.sender].has_outcome(s.ref)]

    def _chat(self) -> None:
        counters = dict.fromkeys(self.clients, 0)
        due = [(self._started + self._rng.uniform(0, self._interval[1]), name)
               for name in sorted(self.clients)]
        heapq.heapify(due)
        while due:
            when, name = heapq.heappop(due)
            if self._stop.wait(max(0.0, when - time.monotonic())):
                return
            counters[name] += 1
            room = self._rng.choice(self.rooms_of[name])
            text = f"{name} #{counters[name]} in {room}"
            at = self.elapsed()
            try:
                ref = self.clients[name].send(room, text)
            except ClientError as exc:
                with self._lock:
                    self._refused.append(f"{name}: send() raised {exc!r}")
            else:
                with self._lock:
                    self._sent.append(Sent(name, room, text, ref, at))
            heapq.heappush(due, (when + self._rng.uniform(*self._interval), name))


# ---------------------------------------------------------------- the record


def library_errors(records: Iterable[logging.LogRecord]) -> list[str]:
    """Errors the client library logged (a reader thread that failed, an ``on_event`` that
    raised): each one a crash the events alone would not show."""
    return [f"client log: {r.name}: {r.getMessage()}" for r in records
            if r.name.startswith("client") and r.levelno >= logging.ERROR]


def stored_messages(client: redis.Redis, room: str) -> list[fr.Message]:
    """What Redis keeps of a room, oldest first: the record deliveries are judged against."""
    messages = []
    lines: list[bytes] = client.lrange(keys.room_log(room), 0, -1)  # type: ignore[assignment]
    for line in lines:
        frame = decode_server(line)
        assert isinstance(frame, fr.Message), frame
        messages.append(frame)
    return messages


def room_seq(client: redis.Redis, room: str) -> int:
    value = client.get(keys.room_seq(room))
    return int(value) if value is not None else 0


def caught_up(crowd: Crowd, seqs: Callable[[str], int]) -> bool:
    """Every client has delivered its rooms up to their current last id."""
    for room in crowd.rooms:
        last = seqs(room)
        for name in crowd.members(room):
            if crowd.logs[name].last_delivered(room)[1] != last:
                return False
    return True


# ---------------------------------------------------------------- the verdict


@dataclass(frozen=True, slots=True)
class Verdict:
    sent: int
    acked: int
    failed: int
    delivered: int
    lost: int
    duplicated: int
    reordered: int
    problems: tuple[str, ...]
    """Everything else the protocol forbids, one line each (empty when all is well)."""

    def summary(self, label: str = "chaos") -> str:
        return (f"{label}: sent={self.sent} acked={self.acked} failed={self.failed} "
                f"delivered={self.delivered} lost={self.lost} duplicated={self.duplicated} "
                f"reordered={self.reordered}")


def _check_outcomes(sent: Sequence[Sent], logs: Mapping[str, EventLog],
                    problems: list[str]) -> tuple[dict[str, int], set[str]]:
    """Every send ends in exactly one Acked or SendFailed with a clear error.

    Returns the acked ids by text and the texts whose send failed.
    """
    acked: dict[str, int] = {}
    failed: set[str] = set()
    by_ref = {s.ref: s for s in sent}
    for name, log in logs.items():
        for ref, found in log.outcomes().items():
            s = by_ref.get(ref)
            if s is None or s.sender != name:
                problems.append(f"{name}: outcome for a ref never sent: {ref} {found}")
                continue
            if len(found) != 1:
                problems.append(f"{name}: {len(found)} outcomes for {ref} ({s.text!r}): {found}")
            outcome = found[0]
            if isinstance(outcome, ev.Acked):
                if outcome.id is None:
                    problems.append(f"{name}: ack without an id for {s.text!r}")
                else:
                    acked[s.text] = outcome.id
                continue
            failed.add(s.text)
            error = outcome.error
            if error.code is not ErrorCode.UNAVAILABLE and not isinstance(error, SendAborted):
                problems.append(f"{name}: {s.text!r} failed without a clear error: {error!r}")
    for s in sent:
        if not logs[s.sender].has_outcome(s.ref):
            problems.append(f"{s.sender}: no outcome for {s.ref} ({s.text!r}, sent at {s.at:.1f}s)")
    return acked, failed


def _check_record(stored: Mapping[str, Sequence[fr.Message]], sent: Sequence[Sent],
                  acked: Mapping[str, int], failed: set[str], record_from: float,
                  problems: list[str]) -> None:
    """What Redis stored matches what was sent: ids 1..n, each text once, acks right.

    An acked send from before ``record_from`` may be missing: it belonged to
    an epoch Redis lost.
    """
    texts = {s.text: s for s in sent}
    for room, messages in stored.items():
        ids = [m.id for m in messages]
        if ids != list(range(1, len(ids) + 1)):
            problems.append(f"{room}: stored ids are not 1..{len(ids)} (history trimmed?)")
        for text, count in Counter(m.text for m in messages).items():
            if count > 1:
                problems.append(f"{room}: {text!r} was published {count} times")
        for m in messages:
            s = texts.get(m.text)
            if s is None or s.room != room or s.sender != m.sender:
                problems.append(f"{room}: stored message {m.id} {m.text!r} was never sent here")
            elif m.text in failed:
                problems.append(f"{room}: {m.text!r} was published (id {m.id}) although its "
                                f"send failed")
    stored_ids = {m.text: m.id for messages in stored.values() for m in messages}
    for text, msg_id in acked.items():
        if text not in stored_ids and texts[text].at < record_from:
            continue
        if stored_ids.get(text) != msg_id:
            problems.append(f"acked {text!r} as id {msg_id}, stored as {stored_ids.get(text)}")


def judge(sent: Sequence[Sent], logs: Mapping[str, EventLog],
          rooms_of: Mapping[str, Sequence[str]], stored: Mapping[str, Sequence[fr.Message]],
          *, resets_allowed: bool = False, record_from: float = 0.0) -> Verdict:
    """Compare every client's deliveries with what Redis stored; see the module docstring.

    The newest epoch segment of each client is compared with ``stored``
    (which is that epoch's record). Without ``resets_allowed`` an
    ``EpochReset`` is itself a problem: Redis kept its data. With it, sends
    acked before ``record_from`` (``Sent.at`` time) may be absent from the
    record: Redis lost them with the old epoch.
    """
    problems: list[str] = []
    acked, failed = _check_outcomes(sent, logs, problems)
    _check_record(stored, sent, acked, failed, record_from, problems)
    delivered = lost = duplicated = reordered = 0
    for name, rooms in rooms_of.items():
        log = logs[name]
        closed = log.of(ev.Closed)
        if closed:
            problems.append(f"{name}: the client ended early: {closed}")
        for room in rooms:
            got = log.received(room)
            delivered += len(got)
            segments = {r.segment for r in got} | {log.last_delivered(room)[0]}
            if max(segments) and not resets_allowed:
                problems.append(f"{name}: {max(segments)} epoch reset(s) in {room}")
            seen_ids: set[tuple[int, int]] = set()
            seen_texts: set[str] = set()
            highest: dict[int, int] = {}
            for r in got:
                if (r.segment, r.id) in seen_ids or r.text in seen_texts:
                    duplicated += 1
                elif r.id < highest.get(r.segment, 0):
                    reordered += 1
                seen_ids.add((r.segment, r.id))
                seen_texts.add(r.text)
                highest[r.segment] = max(r.id, highest.get(r.segment, 0))
            newest = max(segments)
            have = {(r.id, r.text) for r in got if r.segment == newest}
            missing = [m for m in stored[room] if (m.id, m.text) not in have]
            if missing:
                lost += len(missing)
                problems.append(f"{name}: {len(missing)} message(s) of {room} never delivered, "
                                f"ids {[m.id for m in missing][:20]}")
            stored_pairs = {(m.id, m.text) for m in stored[room]}
            foreign = [r for r in got if r.segment == newest and (r.id, r.text) not in stored_pairs]
            if foreign:
                problems.append(f"{name}: {len(foreign)} delivery(ies) in {room} differ from the "
                                f"record: {foreign[:3]}")
    return Verdict(len(sent), len(acked), len(failed), delivered, lost, duplicated, reordered,
                   tuple(problems))


CRASH = re.compile(r"Traceback|_crashed|handler_failed")
"""A gateway log line that means something broke, whatever the fault injected."""


@contextlib.contextmanager
def gateway_processes(redis_url: str, count: int = 2) -> Iterator[list[GatewayProcess]]:
    """``count`` ``python -m gateway`` processes (gw1, gw2, ...) on ``redis_url``, closed after."""
    procs: list[GatewayProcess] = []
    try:
        for i in range(count):
            procs.append(GatewayProcess(redis_url, f"gw{i + 1}"))
        yield procs
    finally:
        for proc in procs:
            proc.close()


def sent_count(crowd: Crowd, at_least: int) -> Callable[[], bool]:
    """A condition: the crowd has made at least ``at_least`` sends."""
    return lambda: len(crowd.sent) >= at_least


# ---------------------------------------------------------------- the failover tests' steps
#
# A master or primary killed, a slot moved: the tests of tests/chaos and tests/rcluster that
# run one fault under steady chat with two gateway processes share these steps, so each test
# reads as its fault and what it must not break.


def acked_between(crowd: Crowd, start: float, end: float = float("inf"),
                  room: str | None = None) -> bool:
    """Some send made in [start, end] (crowd time), to ``room`` if given, was acknowledged:
    chat works again after a failover (or kept working somewhere during it)."""
    refs = {s.ref for s in crowd.sent
            if start <= s.at <= end and (room is None or s.room == room)}
    return any(isinstance(outcome, ev.Acked)
               for log in crowd.logs.values()
               for ref, found in log.outcomes().items() if ref in refs
               for outcome in found)


def spread_crowd(names: Sequence[str], rooms: Sequence[str],
                 procs: Sequence[GatewayProcess]) -> Crowd:
    """Clients each in every one of ``rooms``, given every gateway with first choices spread
    over them, sending every 0.1-0.2 s; a send answered ``unavailable`` is held and resent
    (60 s), so a failover may delay a send but every send must end acknowledged."""
    return Crowd({name: rooms for name in names},
                 {name: [f"127.0.0.1:{procs[(i + k) % len(procs)].port}"
                         for k in range(len(procs))]
                  for i, name in enumerate(names)},
                 interval=(0.1, 0.2), hold_unavailable=60.0)


def drain(crowd: Crowd, node_of: Callable[[str], redis.Redis],
          ) -> tuple[dict[str, list[fr.Message]], dict[str, Any]]:
    """Wait for an outcome of every send and for every client caught up with its rooms;
    return each room's stored messages and epoch, read from ``node_of(room)`` (a new client
    on the node serving the room, closed here)."""
    wait_for(lambda: not crowd.unresolved(), 30, what="an outcome for every send")
    nodes = {room: node_of(room) for room in crowd.rooms}
    try:
        wait_for(lambda: caught_up(crowd, lambda room: room_seq(nodes[room], room)), 30,
                 what="every client caught up")
        return ({room: stored_messages(node, room) for room, node in nodes.items()},
                {room: node.get(keys.room_epoch(room)) for room, node in nodes.items()})
    finally:
        for node in nodes.values():
            node.close()


def gateway_problems(procs: Iterable[GatewayProcess]) -> list[str]:
    """Assert every gateway still runs and answers ``/healthz`` with 200 (within 15 s);
    return each line of their logs that means a crash."""
    problems: list[str] = []
    for proc in procs:
        assert proc.running, f"{proc.gateway_id} exited"
        wait_for(lambda proc=proc: proc.health() == 200, 15,  # type: ignore[misc]
                 what=f"{proc.gateway_id} healthy")
        problems.extend(f"{proc.gateway_id} log: {line}"
                        for line in proc.stderr_tail(1 << 20).splitlines()
                        if CRASH.search(line))
    return problems


def verdict_of(crowd: Crowd, stored: Mapping[str, Sequence[fr.Message]],
               procs: Iterable[GatewayProcess],
               records: Iterable[logging.LogRecord]) -> tuple[Verdict, list[str]]:
    """The judge's verdict on a drained crowd, and every problem seen: the verdict's, the
    sends refused, the gateways' (``gateway_problems``) and the client library's errors
    in ``records`` (caplog's)."""
    verdict = judge(crowd.sent, crowd.logs, crowd.rooms_of, stored)
    return verdict, [*verdict.problems, *crowd.refused, *gateway_problems(procs),
                     *library_errors(records)]


def assert_every_send_acked(verdict: Verdict, summary: str, problems: Sequence[str]) -> None:
    """The failover tests' promise: no problem, nothing lost, duplicated or reordered, and
    no send failed (a held send is resent until it is acknowledged)."""
    assert list(problems) == [], "\n".join([summary, *problems[:40]])
    assert (verdict.lost, verdict.duplicated, verdict.reordered) == (0, 0, 0), summary
    assert verdict.failed == 0, f"a held send was never acknowledged: {summary}"
