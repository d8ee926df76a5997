"""ChatClient with accounts and stored conversations, on real gateways and a real redis-server.

The client registers, logs in with its password, resumes a conversation with
``since`` "@name" after its gateway went away (each dm exactly once, in
order), pages a conversation back, and gets its read marks on the next login.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from client import events as ev
from client.backoff import ConstantBackoff
from client.connection import ChatClient
from client.errors import LoginRefused
from gateway.server import Gateway
from protocol.errors import ErrorCode
from tests.client.recorder import Recorder
from tests.support.gateways import gateways
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(90)
PW = "correct horse battery"


@pytest.fixture
def cluster(redis_server: RedisServer) -> Iterator[list[Gateway]]:
    with gateways(redis_server.url, 2) as gws:
        yield gws


def client(name: str, gws: list[Gateway], recorder: Recorder, **kw: Any) -> ChatClient:
    kw.setdefault("backoff", ConstantBackoff(0.05))
    return ChatClient(name, [f"{g.address[0]}:{g.address[1]}" for g in gws],
                      on_event=recorder, **kw)


def dm_texts(recorder: Recorder) -> list[str]:
    return [e.dm.text for e in recorder.of(ev.DirectReceived)]


def test_register_then_resume_a_conversation_exactly_once(cluster: list[Gateway]) -> None:
    gw1, gw2 = cluster
    alice_log, bob_log = Recorder(), Recorder()
    with client("alice", [gw1, gw2], alice_log) as alice:
        assert alice.connect().account is False
        alice.register(PW)
        assert alice_log.wait(ev.Registered).name == "alice"
        assert alice.account
    with client("alice", [gw1], Recorder()) as guest:  # the name is the account's now
        with pytest.raises(LoginRefused) as refused:
            guest.connect()
        assert refused.value.code is ErrorCode.NAME_TAKEN
    with client("alice", [gw1, gw2], alice_log, password="wrong password!") as wrong:
        with pytest.raises(LoginRefused) as refused:
            wrong.connect()
        assert refused.value.code is ErrorCode.AUTH_FAILED
    with client("bob", [gw2], bob_log) as bob:
        bob.connect()
        bob.dm("alice", "while you were away")  # stored for the offline account
        bob_log.wait(ev.Acked)
        with client("alice", [gw1, gw2], alice_log, password=PW) as alice:
            alice.connect()
            state = alice_log.wait(ev.AccountState)
            assert state.account and [d.peer for d in state.dms] == ["bob"]
            wait_for(lambda: dm_texts(alice_log) == ["while you were away"], what="offline dm")
            bob.dm("alice", "one")
            wait_for(lambda: dm_texts(alice_log)[-1:] == ["one"], what="live dm")
            gw1.shutdown()  # alice resumes on gw2 with since "@bob"
            bob.dm("alice", "two")
            wait_for(lambda: dm_texts(alice_log)[-1:] == ["two"], timeout=20,
                     what="dm after the resume")
            assert dm_texts(alice_log) == ["while you were away", "one", "two"]
            assert [e.dm.id for e in alice_log.of(ev.DirectReceived)] == [1, 2, 3]
            position = alice.dm_position("bob")
            assert position is not None and position.id == 3
            alice.dm_history("bob", before=3, limit=5)
            older = alice_log.wait(ev.DmHistoryLoaded)
            assert [m.text for m in older.messages] == ["while you were away", "one"]
            alice.mark_read(peer="bob", up_to=3)
            alice.mark_read("lobby", up_to=0)
    again_log = Recorder()
    with client("alice", [gw2], again_log, password=PW) as again:
        again.connect()
        state = again_log.wait(ev.AccountState)
        assert [(d.peer, d.last_id, d.read) for d in state.dms] == [("bob", 3, 3)]
        assert state.read == {"lobby": 0}
