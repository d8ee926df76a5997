"""Chaos: 30 clients chat for a minute while gateways and Redis fail; no promise is broken.

Three ``python -m gateway`` processes (fast timings: heartbeat 0.5 s, lease
2 s) share one redis-server (AOF, ``appendfsync always``). Thirty
``ChatClient``s, each given all three addresses (first choices spread over
the gateways), are each in two of the rooms alpha, beta and gamma (20
members each) and send to one of them every 0.5-1 s. Meanwhile, at offsets
from the first send:

====  ====================================================================
 5 s  SIGKILL gw1; started again 2.5 s later (same id and port)
15 s  SIGTERM gw3 (must exit 0); started again 1 s later
24 s  ``CLIENT KILL TYPE normal`` and ``TYPE pubsub``: every connection cut
29 s  the same again
34 s  SIGSTOP redis-server for 5 s, then SIGCONT
47 s  redis-server restarted gracefully, its data kept
57 s  chatting stops
====  ====================================================================

After a drain that waits for conditions (every send resolved, every client
caught up with every room's last id) the verdict, from what every client
recorded and what Redis stored: every stored (and so every acked) message
reached every member of its room exactly once, in id order, with the id its
``ack`` gave; every send ended in exactly one ``Acked``/``SendFailed`` and
every failure says ``unavailable`` (or is the documented ``SendAborted``)
and was not published; no epoch changed; no client ended; nobody was shown
leaving after the Redis stall; ``who`` of each room is exactly its members;
every gateway runs, answers ``/healthz`` with 200 and ``ping`` with
``pong``; no gateway logged an unexpected exception, the client library no
error. One line sums it up::

    chaos: sent=N acked=N failed=N delivered=N lost=0 duplicated=0 reordered=0

It is printed in the "chaos summary" section at the end of pytest's output.
``CHAT_CHAOS_LOG_LEVEL=INFO`` makes the gateways log more, for diagnosis, and
``CHAT_CHAOS_LOG_DIR=<dir>`` keeps their logs; a failure message ends with
the tail of their logs.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from client import events as ev
from protocol.frames import Message
from tests.chaos.harness import (
    CRASH,
    NOTES_KEY,
    SUMMARY_KEY,
    Crowd,
    caught_up,
    judge,
    library_errors,
    room_seq,
    stored_messages,
)
from tests.support.gateways import GatewayProcess, address
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_for
from tests.support.wire import WireClient

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(180)]

ROOMS = ("alpha", "beta", "gamma")
CLIENTS = 30
CHAT_SECONDS = 57.0
DRAIN_TIMEOUT = 45.0
LOG_LEVEL = os.environ.get("CHAT_CHAOS_LOG_LEVEL", "WARNING")
LOG_DIR = os.environ.get("CHAT_CHAOS_LOG_DIR")
"""If set, the gateways' logs of every run are written there (chaos-gateways.log)."""
STALL = "SIGSTOP redis 5 s, SIGCONT"



class GatewayLogs:
    """Every gateway process's stderr, kept across restarts, for crash lines and reports."""

    def __init__(self, procs: list[GatewayProcess]) -> None:
        self._procs = procs
        self._previous: list[str] = []

    def before_restart(self, proc: GatewayProcess) -> None:
        self._previous.append(f"--- {proc.gateway_id} (run {proc.starts}) ---\n"
                              + proc.stderr_tail(1 << 20))

    def everything(self) -> str:
        current = [f"--- {p.gateway_id} (run {p.starts}) ---\n" + p.stderr_tail(1 << 20)
                   for p in self._procs]
        return "\n".join(self._previous + current)

    def crashes(self) -> list[str]:
        """Each unexpected exception a gateway logged, with the traceback lines after it."""
        lines = self.everything().splitlines()
        found = []
        for i, line in enumerate(lines):
            if CRASH.search(line) and not line.startswith("Traceback"):
                tail = []
                for follow in lines[i + 1:i + 40]:
                    if re.match(r"\d{4}-\d\d-\d\d |--- ", follow):
                        break
                    tail.append(follow)
                found.append("\n".join([line, *tail]))
        return found


class Schedule:
    """Runs each fault at its offset from the start, and notes when it ran and how long."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.notes: list[str] = []
        self.marks: list[tuple[float, str]] = []
        """(monotonic time, what) of each step, to tell which fault an event followed."""
        self._clock = threading.Event()  # never set: its wait() is the schedule's clock

    def at(self, offset: float, what: str, action: Callable[[], object]) -> None:
        self._clock.wait(max(0.0, self.started + offset - time.monotonic()))
        began = time.monotonic()
        self.marks.append((began, what))
        result = action()
        took = time.monotonic() - began
        suffix = f" -> {result}" if result is not None else ""
        self.notes.append(f"{began - self.started:5.1f}s {what} ({took:.1f}s){suffix}")


@pytest.fixture
def gateway_procs(redis_server: RedisServer) -> Iterator[list[GatewayProcess]]:
    procs: list[GatewayProcess] = []
    try:
        for i in range(3):
            procs.append(GatewayProcess(redis_server.url, f"gw{i + 1}", "--log-level", LOG_LEVEL))
        yield procs
    finally:
        for proc in procs:
            proc.close()


def plan(procs: list[GatewayProcess]) -> tuple[dict[str, tuple[str, ...]], dict[str, list[str]]]:
    """Client ``cNN``: first choice gateway NN % 3, every room but one.

    The room left out is ROOMS[(NN + NN // 10) % 3]: each room has 20 members,
    and every (first gateway, room left out) pair occurs.
    """
    rooms_of: dict[str, tuple[str, ...]] = {}
    addresses_of: dict[str, list[str]] = {}
    for i in range(CLIENTS):
        name = f"c{i:02d}"
        rooms_of[name] = tuple(r for r in ROOMS if r != ROOMS[(i + i // 10) % 3])
        addresses_of[name] = [address(procs[(i + k) % 3]) for k in range(3)]
    return rooms_of, addresses_of


def who_is_everyone(observer: WireClient, expected: dict[str, set[str]]) -> bool:
    """Ask ``who`` for every room; True when each answer is exactly the expected names."""
    for room, names in expected.items():
        observer.send(type="who", room=room)
        if set(observer.recv_type("who", room=room)["names"]) != names:
            return False
    return True


def ping_problem(proc: GatewayProcess) -> str | None:
    """None when the gateway logs a new user in and answers ``ping``; else what went wrong."""
    client = WireClient(proc.address, timeout=5)
    try:
        client.hello(f"ping-{proc.gateway_id}", rooms=[])
        client.send(type="ping", ref="chaos")
        client.recv_type("pong", ref="chaos")
        return None
    except (AssertionError, OSError) as exc:
        return f"{proc.gateway_id} did not log in and answer ping: {exc}"
    finally:
        client.close()


def spurious_presence(crowd: Crowd, schedule: Schedule) -> dict[str, list[int]]:
    """[left, joined] seen by clients, per fault they followed: nobody really left.

    A gateway's SIGTERM shows its users leaving and coming back (it frees
    their rooms at once, as docs/protocol.md wants, and they return on another
    gateway some 50 ms later); a SIGKILL may too, for a client slower than
    the restart. A Redis stall must not: see test_redis_stall.py.
    """
    counts: dict[str, list[int]] = {what: [0, 0] for _, what in schedule.marks}
    for log in crowd.logs.values():
        for at, event in log.timed():
            if not isinstance(event, ev.MemberLeft | ev.MemberJoined):
                continue
            after = [what for mark, what in schedule.marks if mark <= at]
            if after:
                counts[after[-1]][isinstance(event, ev.MemberJoined)] += 1
    return counts


def healthy(proc: GatewayProcess) -> Callable[[], bool]:
    return lambda: proc.health() == 200


def settle(what: str, condition: Callable[[], object], timeout: float,
           problems: list[str]) -> None:
    """Wait for ``condition``; a timeout becomes a problem (the verdict still runs)."""
    try:
        wait_for(condition, timeout, interval=0.1, what=what)
    except AssertionError as exc:
        problems.append(str(exc))


def test_thirty_clients_lose_nothing_while_gateways_and_redis_fail(
        redis_server: RedisServer, gateway_procs: list[GatewayProcess],
        record_property: Callable[[str, object], None],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="client")
    gw1, gw2, gw3 = gateway_procs
    logs = GatewayLogs(gateway_procs)
    rooms_of, addresses_of = plan(gateway_procs)
    crowd = Crowd(rooms_of, addresses_of)
    problems: list[str] = []
    verdict = None
    schedule: Schedule | None = None
    try:
        landed = crowd.connect_all()
        assert list(landed.values()).count("gw1") == CLIENTS // 3, landed
        crowd.start_chatting()
        schedule = Schedule()

        def kill_and_restart(proc: GatewayProcess, pause: float) -> str:
            proc.kill()
            schedule_wait(pause)
            logs.before_restart(proc)
            proc.start()
            return "restarted"

        def terminate_and_restart(proc: GatewayProcess, pause: float) -> str:
            code = proc.terminate()
            if code != 0:
                problems.append(f"{proc.gateway_id} exited with {code} on SIGTERM")
            schedule_wait(pause)
            logs.before_restart(proc)
            proc.start()
            return f"exit {code}, restarted"

        def cut_redis_connections() -> str:
            admin = redis_server.client()
            normal = admin.client_kill_filter(_type="normal")
            pubsub = admin.client_kill_filter(_type="pubsub")
            admin.close()
            if pubsub < 3:
                problems.append(f"CLIENT KILL TYPE pubsub cut only {pubsub} connections")
            return f"killed {normal} normal, {pubsub} pubsub"

        def pause_redis(seconds: float) -> None:
            redis_server.pause()
            try:
                schedule_wait(seconds)
            finally:
                redis_server.resume()

        def schedule_wait(seconds: float) -> None:
            threading.Event().wait(seconds)  # part of the timed schedule, not a wait for an event

        schedule.at(5, "SIGKILL gw1, start it 2.5 s later", lambda: kill_and_restart(gw1, 2.5))
        schedule.at(15, "SIGTERM gw3, start it 1 s later",
                    lambda: terminate_and_restart(gw3, 1.0))
        schedule.at(24, "CLIENT KILL normal + pubsub", cut_redis_connections)
        schedule.at(29, "CLIENT KILL normal + pubsub", cut_redis_connections)
        schedule.at(34, STALL, lambda: pause_redis(5.0))
        schedule.at(47, "restart redis (data kept)", redis_server.restart)
        schedule.at(CHAT_SECONDS, "stop chatting", crowd.stop_chatting)

        # ---- drain: conditions, not sleeps
        admin = redis_server.client()
        settle("an outcome for every send", lambda: not crowd.unresolved(), DRAIN_TIMEOUT,
               problems)
        settle("every client caught up with every room",
               lambda: caught_up(crowd, lambda room: room_seq(admin, room)), DRAIN_TIMEOUT,
               problems)
        stored: dict[str, list[Message]] = {r: stored_messages(admin, r) for r in ROOMS}
        admin.close()
        verdict = judge(crowd.sent, crowd.logs, crowd.rooms_of, stored)
        problems.extend(crowd.refused)
        problems.extend(verdict.problems)
        moves = sum(len(log.of(ev.Connected)) - 1 for log in crowd.logs.values())
        drops = sum(len(log.of(ev.Disconnected)) for log in crowd.logs.values())
        schedule.notes.append(f"clients: {drops} disconnects, {moves} resumed logins")
        flaps = spurious_presence(crowd, schedule)
        schedule.notes.extend(f"presence after '{what}': {left} left, {joined} joined"
                              for what, (left, joined) in flaps.items() if left or joined)
        if flaps[STALL][0]:
            problems.append(f"{flaps[STALL][0]} 'left' seen after the Redis stall: nobody left")
        if moves < 2 * CLIENTS // 3:
            problems.append(f"only {moves} resumed logins: the gateway faults did not bite")

        # ---- no ghost in who; every gateway healthy and answering
        observer = WireClient(gw2.address)
        try:
            observer.hello("chaos-observer", rooms=[])
            expected = {room: crowd.members(room) for room in ROOMS}
            settle("who == members in every room", lambda: who_is_everyone(observer, expected),
                   20, problems)
        except (AssertionError, OSError) as exc:
            problems.append(f"the who observer failed: {exc}")
        finally:
            observer.close()
        for proc in gateway_procs:
            if not proc.running:
                problems.append(f"{proc.gateway_id} is not running")
                continue
            settle(f"{proc.gateway_id} /healthz 200", healthy(proc), 15, problems)
            if (trouble := ping_problem(proc)) is not None:
                problems.append(trouble)
        problems.extend(f"gateway log: {line}" for line in logs.crashes())
        problems.extend(library_errors(caplog.records))
    finally:
        crowd.close_all()
        if LOG_DIR:
            Path(LOG_DIR, "chaos-gateways.log").write_text(logs.everything())
        summary = verdict.summary() if verdict else "chaos: no verdict (the test stopped early)"
        record_property(SUMMARY_KEY, summary)
        record_property(NOTES_KEY, schedule.notes if schedule else [])

    detail = "\n".join([summary, "schedule:", *(schedule.notes if schedule else []),
                        "problems:", *problems[:60]])
    if problems or not verdict or verdict.lost or verdict.duplicated or verdict.reordered:
        pytest.fail(f"{detail}\n\ngateway logs (tail):\n{logs.everything()[-4000:]}")
    assert verdict.sent > 1500 and verdict.acked > 0.9 * verdict.sent, summary
    assert summary == (f"chaos: sent={verdict.sent} acked={verdict.acked} "
                       f"failed={verdict.failed} delivered={verdict.delivered} "
                       "lost=0 duplicated=0 reordered=0")
