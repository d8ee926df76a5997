"""Abuse and operations (issue 9, findings 2, 3, 4, 7; docs/reliability.md).

Rolling restarts hand out no name, cleanups a Redis blip broke are redone,
one process per gateway id, and rooms do not live forever.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from deploy.spawn import owns_port
from gateway.config import parse_config
from gateway.front.registry import Registry
from gateway.redis import keys
from gateway.server import DuplicateGateway, Gateway
from tests.gateway.conftest import Connect, StartGateway
from tests.gateway.live import error, login
from tests.support.gateways import GatewayProcess, config
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_for
from tests.support.wire import WireClient


def who(client: WireClient, room: str) -> list[str] | None:
    """The room's names, or None when the gateway answered an error (Redis loading, say)."""
    client.send(type="who", room=room)
    while True:
        frame = client.recv()
        if frame["type"] == "error":
            return None
        if frame["type"] == "who" and frame["room"] == room:
            names: list[str] = frame["names"]
            return names


def until_marker(observer: WireClient, sender: WireClient, room: str,
                 text: str) -> list[dict[str, Any]]:
    """Every frame the observer gets up to a message ``sender`` sends now: what came
    before it, in order."""
    sender.send(type="send", room=room, text=text)
    got: list[dict[str, Any]] = []
    while True:
        frame = observer.recv()
        got.append(frame)
        if frame["type"] == "message" and frame["text"] == text:
            return got


def hello_reply(client: WireClient, name: str, **extra: Any) -> dict[str, Any]:
    client.send(type="hello", name=name, **extra)
    return client.recv()


def gateway_gone(redis_server: RedisServer, gateway_id: str) -> bool:
    return redis_server.client().zscore(keys.GATEWAYS, gateway_id) is None


# ---------------------------------------------------------------- 2. rolling restart

@pytest.mark.slow
def test_a_graceful_shutdown_keeps_names_for_their_tokens_and_the_takeover_is_quiet(
        redis_server: RedisServer, start_gateway: StartGateway, connect: Connect) -> None:
    other = start_gateway("other")
    observer = connect(other.address)
    login(observer, "observer", ["lobby"])
    doomed = start_gateway("doomed")
    victim, absent = connect(doomed.address), connect(doomed.address)
    token = login(victim, "victim", ["lobby"])[0]["token"]
    login(absent, "absent", ["lobby"])
    observer.recv_type("joined", name="victim")
    observer.recv_type("joined", name="absent")

    doomed.shutdown()
    assert victim.recv_type("bye")["reason"] == "shutdown"
    thief = connect(other.address)
    assert hello_reply(thief, "victim")["code"] == "name_taken"  # was: welcome
    assert hello_reply(thief, "Absent")["code"] == "name_taken"
    back = connect(other.address)
    login(back, "victim", ["lobby"], token=token)  # the token takes it back, quietly
    back.send(type="dm", to="observer", text="still me")
    assert observer.recv_type("dm")["from"] == "victim"

    # Once the lease passed, whoever did not come back is gone, as from a dead gateway.
    assert observer.recv_type("left", name="absent")
    wait_for(lambda: gateway_gone(redis_server, "doomed"), 10, what="doomed reaped")
    login(thief, "absent")
    seen = until_marker(observer, back, "lobby", "marker")
    assert [f for f in seen if f.get("name") == "victim" and f["type"] in ("left", "joined")
            ] == []
    assert who(observer, "lobby") == ["absent", "observer", "victim"]


@pytest.mark.slow
def test_a_gateway_restarted_under_its_id_keeps_its_predecessors_reservations(
        redis_server: RedisServer, start_gateway: StartGateway, connect: Connect) -> None:
    other = start_gateway("other")
    observer = connect(other.address)
    login(observer, "observer", ["lobby"])
    first = start_gateway("phoenix")
    absent = connect(first.address)
    token = login(absent, "absent", ["lobby"])[0]["token"]
    observer.recv_type("joined", name="absent")
    first.shutdown()
    second = start_gateway("phoenix")  # at once: a graceful stop leaves no live instance
    thief = connect(other.address)
    assert hello_reply(thief, "absent")["code"] == "name_taken"
    assert observer.recv_type("left", name="absent")  # the reservation ended, nobody came
    wait_for(lambda: hello_reply(connect(other.address), "absent")["type"] == "welcome", 5,
             what="the name freed (just after its left)")
    late = connect(second.address)
    assert hello_reply(late, "absent", token=token)["code"] == "name_taken"  # too late


# ----------------------------------------------------------------- 3. reconciliation

@pytest.mark.slow
def test_a_bye_during_a_redis_outage_leaves_no_ghost_once_redis_is_back(
        redis_server: RedisServer, start_gateway: StartGateway, connect: Connect,
        caplog: pytest.LogCaptureFixture) -> None:
    gw1, gw2 = start_gateway("gw1"), start_gateway("gw2")
    leaver = connect(gw1.address)
    login(leaver, "leaver", ["lobby"])
    observer = connect(gw2.address)
    login(observer, "observer", ["lobby"])
    redis_server.stop()
    leaver.send(type="bye")
    leaver.wait_closed()
    wait_for(lambda: "event=release_failed" in caplog.text, 20, what="the cleanup failed")
    redis_server.start()
    back = time.monotonic()
    wait_for(lambda: who(observer, "lobby") == ["observer"], 10, interval=0.1,
             what="no ghost in who")
    ghost_s = time.monotonic() - back
    login(connect(gw2.address), "LEAVER")  # no token: the name is free
    print(f"reconciled: ghost gone {ghost_s:.2f} s after Redis was back (lease 2 s)")


def test_a_name_and_membership_no_session_holds_are_given_back_within_a_lease(
        redis_server: RedisServer, start_gateway: StartGateway, connect: Connect) -> None:
    """What a ``hello`` refused ``unavailable`` after its claim leaves when its undo fails
    too: a name record and a membership of a live gateway, with no session behind them."""
    gw = start_gateway("gw1")
    observer = connect(gw.address)
    login(observer, "observer", ["lobby"])
    gw.broker.claim_name("orphan", "no-such-session", None)
    gw.broker.join("lobby", "orphan")
    observer.recv_type("joined", name="orphan")
    assert observer.recv_type("left", name="orphan")  # was: never
    assert who(observer, "lobby") == ["observer"]
    login(connect(gw.address), "Orphan")


def test_reconciliation_never_reaps_a_claim_in_flight_and_claims_wait_for_it() -> None:
    registry = Registry()
    session: Any = object()
    registry.begin_claim("alice", session)
    assert registry.begin_reap("alice") == (False, None)
    registry.end_claim("alice", session)
    assert registry.begin_reap("alice") == (True, None)
    claimed = threading.Event()

    def claim() -> None:
        registry.begin_claim("alice", session)
        claimed.set()

    thread = threading.Thread(target=claim)
    thread.start()
    assert not claimed.wait(0.2)  # held back while the name is reconciled
    registry.end_reap("alice")
    assert claimed.wait(5)
    thread.join(5)


# ----------------------------------------------------------------- 4. duplicate id

@pytest.mark.slow
def test_a_second_gateway_with_a_live_ones_id_refuses_to_start_and_harms_nobody(
        redis_server: RedisServer, start_gateway: StartGateway, connect: Connect) -> None:
    live = start_gateway("gw1")
    alice = connect(live.address)
    login(alice, "alice", ["lobby"])
    twin = Gateway(config(redis_server.url, "gw1"))
    started = time.monotonic()
    with pytest.raises(DuplicateGateway, match="in use by another running gateway"):
        twin.start()
    assert time.monotonic() - started < 5
    twin.shutdown()  # harmless after a refused start
    assert who(alice, "lobby") == ["alice"]
    thief = connect(live.address)
    assert hello_reply(thief, "alice")["code"] == "name_taken"
    # the command line: one clear line, a non-zero exit
    proc = subprocess.run(
        [sys.executable, "-m", "gateway", "--host", "127.0.0.1", "--port", "0",
         "--health-port", "-1", "--redis-url", redis_server.url, "--id", "gw1",
         "--heartbeat", "0.5", "--lease-ms", "2000", "--log-level", "WARNING"],
        capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 3
    lines = [line for line in proc.stderr.splitlines() if "duplicate_gateway_id" in line]
    assert len(lines) == 1 and "another --id" in lines[0], proc.stderr
    assert who(alice, "lobby") == ["alice"]


@pytest.mark.slow
def test_a_gateway_restarted_right_after_its_crash_starts_and_drops_its_old_state(
        redis_server: RedisServer, connect: Connect) -> None:
    proc = GatewayProcess(redis_server.url, "crashy")
    try:
        login(connect(proc.address), "alice", ["lobby"])
        proc.kill()
        proc.start()  # its instance key is still fresh: nobody listens, no beat comes
        login(connect(proc.address), "alice")  # no token: the crashed self's name is gone
    finally:
        proc.close()


@pytest.mark.slow
def test_gateways_on_port_0_report_the_ports_they_hold_and_restart_on_them(
        redis_server: RedisServer, connect: Connect) -> None:
    """``--ports-file``: no port probed in advance, so none another process can take first."""
    procs = [GatewayProcess(redis_server.url, f"zero{i}") for i in range(2)]
    try:
        ports = {p.port for p in procs} | {p.health_port for p in procs}
        assert len(ports) == 4 and 0 not in ports
        for p in procs:
            assert "--port" in p.args and p.args[p.args.index("--port") + 1] == str(p.port)
            assert owns_port(p.proc.pid, p.port) and owns_port(p.proc.pid, p.health_port)
            assert p.health() == 200
            login(connect(p.address), f"user-{p.gateway_id}")
        first = procs[0]
        before = (first.port, first.health_port)
        first.kill()
        first.start()
        assert (first.port, first.health_port) == before
        assert owns_port(first.proc.pid, first.port)
        login(connect(first.address), "again")
    finally:
        for p in procs:
            p.close()


def test_a_ports_file_that_cannot_be_written_stops_the_gateway_with_one_line(
        redis_server: RedisServer, tmp_path: Path) -> None:
    target = tmp_path / "missing-dir" / "ports.json"
    proc = subprocess.run(
        [sys.executable, "-m", "gateway", "--host", "127.0.0.1", "--port", "0",
         "--health-port", "0", "--redis-url", redis_server.url, "--id", "nofile",
         "--ports-file", str(target), "--log-level", "WARNING"],
        capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if "cannot_write_ports_file" in line]
    assert len(lines) == 1 and str(target) in lines[0], proc.stderr
    assert not target.exists()


def test_the_ports_file_holds_both_ports_as_json(redis_server: RedisServer,
                                                  tmp_path: Path) -> None:
    target = tmp_path / "ports.json"
    child = subprocess.Popen(
        [sys.executable, "-m", "gateway", "--host", "127.0.0.1", "--port", "0",
         "--health-port", "-1", "--redis-url", redis_server.url, "--id", "json",
         "--ports-file", str(target), "--log-level", "WARNING"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(target.exists, 15, what="the ports file")
        data = json.loads(target.read_text())
        assert data["health_port"] is None  # the health endpoint disabled
        assert isinstance(data["port"], int) and owns_port(child.pid, data["port"])
        assert [p.name for p in tmp_path.iterdir()] == ["ports.json"]  # no temporary left
    finally:
        child.terminate()
        assert child.wait(15) == 0


# ------------------------------------------------------------------ 7. rooms expire

@pytest.mark.slow
def test_an_empty_room_expires_and_comes_back_with_a_new_epoch_while_a_member_keeps_one(
        redis_server: RedisServer, start_gateway: StartGateway, connect: Connect) -> None:
    gw = start_gateway("gw1", room_ttl_s=1.0)
    raw = redis_server.client()
    stayer, visitor = connect(gw.address), connect(gw.address)
    login(stayer, "stayer", ["kept"])
    epoch = login(visitor, "visitor", ["brief", "kept"])[1]["brief"]["epoch"]
    for room in ("brief", "kept"):
        visitor.send(type="send", room=room, text="hi", ref=room)
        visitor.recv_type("ack", ref=room)
    visitor.send(type="leave", room="brief")
    visitor.recv_type("left", room="brief")
    assert raw.pttl(keys.room_epoch("brief")) > 0
    brief = [keys.room_seq("brief"), keys.room_epoch("brief"), keys.room_log("brief"),
             keys.room_members("brief")]
    wait_for(lambda: raw.exists(*brief) == 0, 10, what="the empty room expired")
    # (its refs live their own 5 minutes: the dedup window)
    assert raw.exists(keys.room_seq("kept"), keys.room_epoch("kept"), keys.room_log("kept")) == 3
    assert raw.pttl(keys.room_epoch("kept")) == -1  # a member keeps it
    visitor.send(type="join", room="brief")
    history = visitor.recv_type("history", room="brief")
    assert history["epoch"] != epoch and history["messages"] == []


def test_new_rooms_are_rate_limited_per_user_and_existing_ones_are_not(
        start_gateway: StartGateway, connect: Connect) -> None:
    gw = start_gateway("gw1", new_rooms_per_min=1.0, new_rooms_burst=3)
    other = connect(gw.address)
    login(other, "other", ["old"])
    maker = connect(gw.address)
    login(maker, "maker", ["a", "b", "c"])
    maker.send(type="join", room="d")
    assert "new rooms" in error(maker, "rate_limited")["message"]
    maker.send(type="join", room="old")  # exists: free
    assert maker.recv_type("history", room="old")["room"] == "old"
    maker.send(type="bye")
    maker.wait_closed()
    again = connect(gw.address)
    again.send(type="hello", name="maker", rooms=["e"])  # the bucket is the name's
    assert error(again, "rate_limited")
    login(again, "maker", ["old"])


def test_connection_churn_per_address_is_limited_when_asked(
        start_gateway: StartGateway, connect: Connect) -> None:
    gw = start_gateway("gw1", connect_rate_per_address=0.2)  # burst: 1
    first = connect(gw.address)
    login(first, "first")
    second = connect(gw.address)
    assert error(second, "rate_limited")["message"].startswith("too many new connections")
    assert second.wait_closed() == []


def test_the_new_flags_parse_from_the_command_line_and_the_environment() -> None:
    cfg = parse_config(["--room-ttl", "12h", "--new-rooms-per-min", "5",
                        "--connect-rate-per-address", "2"], {})
    assert (cfg.room_ttl_s, cfg.new_rooms_per_min, cfg.connect_rate_per_address) == (
        43200.0, 5.0, 2.0)
    defaults = parse_config([], {"CHAT_ROOM_TTL": "30d"})
    assert defaults.room_ttl_s == 30 * 86400 and defaults.new_rooms_burst == 60
    assert defaults.connect_rate_per_address == 0
