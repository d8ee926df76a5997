"""Connection caps: ``--max-connections`` and ``--max-per-address`` refuse cleanly.

A refused connection gets one ``error``/``unavailable`` and is closed; the
connections already in are unharmed, and a freed place is usable again.
"""

from __future__ import annotations

from tests.load.conftest import StartGateways
from tests.load.swarm import Conn, Swarm, Target, outcomes
from tests.support.waiting import wait_for
from tests.support.wire import WireClient


def assert_refused(conn: Conn) -> None:
    assert conn.first is not None and conn.first["type"] == "error", conn.outcome
    assert conn.first["code"] == "unavailable"
    assert isinstance(conn.first["message"], str) and conn.first["message"]
    assert conn.closed_by_peer, "the refused connection was left open"


def still_answers(conns: list[Conn]) -> None:
    """Each admitted connection still works: ping, pong."""
    for i, conn in enumerate(conns):
        conn.sock.settimeout(5)
        conn.sock.sendall(b'{"type":"ping","ref":"r%d"}\n' % i)
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = conn.sock.recv(4096)
            assert chunk, "closed instead of answering"
            answer += chunk
        assert answer == b'{"type":"pong","ref":"r%d"}\n' % i


def test_connection_past_max_connections_gets_unavailable_and_is_closed(
        start_gateways: StartGateways) -> None:
    limit = 3
    (gw,) = start_gateways(1, "--max-connections", str(limit))
    with Swarm() as swarm:
        admitted = swarm.login([Target(gw.address, f"a{i}") for i in range(limit)])
        assert outcomes(admitted) == {"welcome": limit}
        (extra,) = swarm.login([Target(gw.address, "extra")])
        assert_refused(extra)
        still_answers(admitted)

        admitted[0].sock.close()  # a place frees up once the gateway has cleaned up

        def admitted_again() -> bool:
            probe = WireClient(gw.address, timeout=5)
            try:
                probe.send(type="hello", name="late", rooms=[])
                return bool(probe.recv()["type"] == "welcome")
            finally:
                probe.close()

        wait_for(admitted_again, timeout=10, interval=0.05, what="a freed place")


def test_connection_past_max_per_address_is_refused_but_other_address_accepted(
        start_gateways: StartGateways) -> None:
    per_address = 2
    (gw,) = start_gateways(1, "--max-per-address", str(per_address))
    with Swarm() as swarm:
        local = swarm.login([Target(gw.address, f"l{i}", source="127.0.0.1")
                             for i in range(per_address)])
        assert outcomes(local) == {"welcome": per_address}
        (third,) = swarm.login([Target(gw.address, "l-extra", source="127.0.0.1")])
        assert_refused(third)
        # 127.0.0.2 is another loopback address: its own count
        (other,) = swarm.login([Target(gw.address, "other", source="127.0.0.2")])
        assert other.outcome == "welcome", other.first
        still_answers([*local, other])
