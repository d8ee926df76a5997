"""ChatClient against real gateways on one real redis-server.

Two clients on different gateways chat; the gateway one of them is on goes
away (``shutdown()`` with ``bye``, or SIGKILL of a gateway process) and the
client resumes on another with every message in order exactly once, and
its unacknowledged sends delivered once. Refusals raise the documented
exceptions; a token takeover ends the old client with ``bye``/``replaced``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from client import events as ev
from client.backoff import ConstantBackoff
from client.connection import ChatClient
from client.errors import LoginRefused, NoGatewayAvailable
from gateway.server import Gateway
from protocol.errors import ErrorCode
from tests.client.recorder import Recorder
from tests.support.gateways import GatewayProcess, address, gateways
from tests.support.redis_server import RedisEndpoint
from tests.support.waiting import wait_for
from tests.support.wire import WireClient

pytestmark = pytest.mark.timeout(90)



@pytest.fixture
def cluster(gateway_redis: RedisEndpoint) -> Iterator[list[Gateway]]:
    with gateways(gateway_redis.url, 3) as gws:
        yield gws


def chat_client(name: str, gws: list[Any], recorder: Recorder | None = None,
                **kwargs: Any) -> ChatClient:
    """A client whose first choice is ``gws[0]``, then the others in order."""
    kwargs.setdefault("backoff", ConstantBackoff(0.05))
    return ChatClient(name, [address(g) for g in gws], on_event=recorder, **kwargs)


def texts(recorder: Recorder, room: str = "lobby") -> list[str]:
    return [m.text for m in recorder.room_messages(room)]


def test_two_clients_on_different_gateways_chat(cluster: list[Gateway]) -> None:
    gw1, gw2, gw3 = cluster
    alice_log, bob_log = Recorder(), Recorder()
    with chat_client("alice", [gw1, gw2], alice_log) as alice, \
            chat_client("bob", [gw2, gw3], bob_log) as bob:
        assert alice.connect().gateway == "gw1"
        assert bob.connect().gateway == "gw2"
        alice.send("lobby", "hi bob")
        wait_for(lambda: texts(bob_log) == ["hi bob"], what="bob sees alice")
        bob.send("lobby", "hi alice")
        wait_for(lambda: texts(alice_log) == ["hi bob", "hi alice"], what="alice sees both")
        bob.dm("alice", "psst")
        dm = alice_log.wait(ev.DirectReceived).dm
        assert (dm.sender, dm.to, dm.text) == ("bob", "alice", "psst")
        alice.who("lobby")
        assert alice_log.wait(ev.Members).names == ("alice", "bob")
        assert [a.id for a in alice_log.of(ev.Acked)] == [1]
        assert [a.id for a in bob_log.of(ev.Acked)] == [2, None]  # room message, then dm


def _survive(kill: Any, alice_gateways: list[Any], bob_gateways: list[Any]) -> None:
    """Alice loses her gateway while both keep sending: all arrive once, in order."""
    alice_log, bob_log = Recorder(), Recorder()
    with chat_client("alice", alice_gateways, alice_log) as alice, \
            chat_client("bob", bob_gateways, bob_log) as bob:
        first = alice.connect().gateway
        bob.connect()
        before = [f"bob {i}" for i in range(10)]
        for text in before:
            bob.send("lobby", text)
        wait_for(lambda: texts(alice_log) == before, what="alice sees the first ten")

        kill()
        during = [f"bob {i}" for i in range(10, 25)]
        for text in during:
            bob.send("lobby", text)
        mine = [f"alice {i}" for i in range(5)]
        refs = [alice.send("lobby", text) for text in mine]  # some while disconnected

        assert alice_log.wait(ev.Connected, 2, timeout=30).resumed
        assert alice.gateway != first
        wait_for(lambda: len(alice_log.room_ids()) == 30, timeout=30, what="30 messages")
        wait_for(lambda: len(alice_log.of(ev.Acked)) == 5, what="alice's acks")
        ids = alice_log.room_ids()
        assert ids == list(range(1, 31))  # every id once, in order
        got = texts(alice_log)
        assert [t for t in got if t.startswith("bob")] == before + during
        assert sorted(t for t in got if t.startswith("alice")) == mine
        assert sorted(a.ref for a in alice_log.of(ev.Acked)) == sorted(refs)
        assert alice_log.of(ev.SendFailed) == []
        wait_for(lambda: len(bob_log.room_ids()) == 30, what="bob sees 30")
        assert bob_log.room_ids() == list(range(1, 31))


def test_gateway_shutdown_moves_the_client_to_another_gateway(cluster: list[Gateway]) -> None:
    gw1, gw2, gw3 = cluster
    _survive(gw1.shutdown, [gw1, gw2, gw3], [gw2, gw3])


def test_bye_shutdown_is_reported_then_resumed(cluster: list[Gateway]) -> None:
    gw1, gw2, _ = cluster
    log = Recorder()
    with chat_client("alice", [gw1, gw2], log) as alice:
        alice.connect()
        gw1.shutdown()
        assert log.wait(ev.Connected, 2).resumed
        assert log.of(ev.Disconnected)[0] == ev.Disconnected("shutdown")
        assert log.of(ev.Reconnecting)[0].address == address(gw2)
        assert alice.gateway == "gw2" and alice.connected


@pytest.mark.slow
def test_killed_gateway_process_is_survived(shared_redis: RedisEndpoint,
                                            cluster: list[Gateway]) -> None:
    """SIGKILL: no bye, the name still held by a dead gateway; the token takes it over."""
    doomed = GatewayProcess(shared_redis.url, "gw-doomed")
    try:
        _, gw2, gw3 = cluster
        _survive(doomed.kill, [doomed, gw2, gw3], [gw3, gw2])
    finally:
        doomed.close()


def test_refusals_raise_the_documented_exceptions(cluster: list[Gateway]) -> None:
    gw1, gw2, gw3 = cluster
    with chat_client("alice", [gw1]) as alice:
        alice.connect()
        with chat_client("ALICE", [gw2]) as impostor, pytest.raises(LoginRefused) as info:
            impostor.connect()
        assert info.value.code is ErrorCode.NAME_TAKEN
    with chat_client("not a name", [gw1]) as bad, pytest.raises(LoginRefused) as info:
        bad.connect()
    assert info.value.code is ErrorCode.BAD_NAME
    with chat_client("carol", [gw1], rooms=["Bad Room"]) as bad, \
            pytest.raises(LoginRefused) as info:
        bad.connect()
    assert info.value.code is ErrorCode.BAD_ROOM
    gone = address(gw3)
    gw3.shutdown()
    with ChatClient("dave", [gone, gone]) as nobody, pytest.raises(NoGatewayAvailable):
        nobody.connect(timeout=5)


def test_token_takeover_closes_the_old_client_as_replaced(cluster: list[Gateway]) -> None:
    gw1, gw2, _ = cluster
    log = Recorder()
    with chat_client("alice", [gw1, gw2], log) as alice:
        token = alice.connect().token
        other = WireClient(gw2.address)
        try:
            assert other.hello("alice", token=token)["gateway"] == "gw2"
            assert log.wait(ev.Closed) == ev.Closed("replaced")
            assert log.of(ev.Reconnecting) == [] and not alice.connected
        finally:
            other.close()
