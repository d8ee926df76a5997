"""ChatClient against a scripted fake gateway on real loopback TCP.

Proves login, resume with ``since`` and the token on another gateway, resend
of unacknowledged sends with the same ref, de-duplication and ordering, the
refusals (``LoginRefused``, ``NoGatewayAvailable``) and the final ends
(``bye``/``replaced``, ``close()``, reconnect disabled).
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from client import events as ev
from client.backoff import ConstantBackoff, NoBackoff
from client.connection import ChatClient, parse_address
from client.errors import (
    ClientClosed,
    ClientError,
    LoginRefused,
    NoGatewayAvailable,
    SendAborted,
)
from protocol import frames as fr
from protocol.errors import ErrorCode, ProtocolError
from tests.client.fake_gateway import EPOCH, FakeConnection, FakeGateway, history, message
from tests.client.recorder import Recorder
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(60)

@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def refused_address() -> Iterator[str]:
    """A loopback port that refuses connections (bound, never listening)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"


def client_for(recorder: Recorder | None, *addresses: str, **kwargs: Any) -> ChatClient:
    kwargs.setdefault("backoff", NoBackoff())
    kwargs.setdefault("connect_timeout", 3.0)
    return ChatClient("alice", addresses, on_event=recorder, **kwargs)


def serving(*setup: Callable[[FakeConnection], object]) -> Callable[[FakeConnection], None]:
    """A script: log in, run ``setup`` steps, then keep the connection alive."""

    def script(conn: FakeConnection) -> None:
        conn.login()
        for step in setup:
            step(conn)
        conn.serve()

    return script


# ---------------------------------------------------------------- login


def test_connect_logs_in_and_delivers_history_then_live_messages(recorder: Recorder) -> None:
    hellos: list[fr.Hello] = []

    def script(conn: FakeConnection) -> None:
        hellos.append(conn.login(histories={"lobby": history(range(1, 4))}))
        conn.send(message(4))
        conn.serve()

    with FakeGateway(script, gateway_id="gw-a") as gw, client_for(recorder, gw.address) as client:
        welcome = client.connect()
        assert welcome.gateway == "gw-a" and welcome.token == "tok-1"
        recorder.wait(ev.RoomMessage)
        assert recorder.events[0] == ev.Connected("gw-a", "alice", False)
        assert recorder.room_ids() == [1, 2, 3, 4]
        assert client.connected and client.gateway == "gw-a" and client.rooms == ("lobby",)
        assert hellos == [fr.Hello("alice", ("lobby",), {}, None)]
        assert recorder.threads == {"chat-client-alice"}


def test_events_go_to_the_queue_without_a_callback() -> None:
    with FakeGateway(serving()) as gw, client_for(None, gw.address) as client:
        client.connect()
        assert client.events.get(timeout=5) == ev.Connected("fake-gw", "alice", False)
        assert client.events.get(timeout=5) == ev.HistoryLoaded("lobby", (), True, False)


def test_name_taken_raises_login_refused_with_its_code(recorder: Recorder) -> None:
    def script(conn: FakeConnection) -> None:
        conn.expect(fr.Hello)
        conn.send(fr.Error(ErrorCode.NAME_TAKEN, "alice is taken"))
        conn.serve()

    with FakeGateway(script) as gw, client_for(recorder, gw.address) as client:
        with pytest.raises(LoginRefused) as info:
            client.connect()
        assert info.value.code is ErrorCode.NAME_TAKEN
        assert isinstance(info.value, ProtocolError) and isinstance(info.value, ClientError)
        assert not client.connected
        assert gw.accepted == 1  # a refusal is final: no other address, no retry


def test_invalid_name_is_refused_as_bad_name_before_connecting() -> None:
    with FakeGateway() as gw, ChatClient("no spaces", [gw.address]) as client:
        with pytest.raises(LoginRefused) as info:
            client.connect()
        assert info.value.code is ErrorCode.BAD_NAME


def test_no_gateway_available_when_no_address_answers(refused_address: str) -> None:
    with client_for(None, refused_address, refused_address) as client:
        with pytest.raises(NoGatewayAvailable, match="no gateway"):
            client.connect(timeout=5)
        with pytest.raises(ClientClosed):
            client.send("lobby", "nobody hears this")


def test_connect_tries_the_next_address_and_may_be_retried(refused_address: str,
                                                           recorder: Recorder) -> None:
    def bye_at_once(conn: FakeConnection) -> None:
        conn.expect(fr.Hello)
        conn.bye(fr.ByeReason.SHUTDOWN)

    def unavailable(conn: FakeConnection) -> None:
        conn.expect(fr.Hello)
        conn.send(fr.Error(ErrorCode.UNAVAILABLE, "broker down"))
        conn.serve()

    with FakeGateway(bye_at_once, unavailable, serving()) as flaky:
        client = client_for(recorder, refused_address, flaky.address, flaky.address)
        with pytest.raises(NoGatewayAvailable):
            client.connect()
        assert recorder.events == []  # a failed connect() reports nothing
        assert flaky.accepted == 2
        assert client.connect().gateway == "fake-gw"  # the third connection serves
        client.close()


def test_connect_twice_is_an_error(recorder: Recorder) -> None:
    with FakeGateway(serving()) as gw, client_for(recorder, gw.address) as client:
        client.connect()
        with pytest.raises(ClientError):
            client.connect()


# ------------------------------------------------------------- sending


def test_send_is_acked_by_ref_and_errors_fail_only_their_send(recorder: Recorder) -> None:
    def script(conn: FakeConnection) -> None:
        conn.login()
        ok = conn.expect(fr.Send)
        bad = conn.expect(fr.Dm)
        conn.send(fr.Ack(ok.ref or "", 1), message(1, sender="alice"))
        conn.send(fr.Error(ErrorCode.NO_SUCH_USER, "no carol", bad.ref))
        conn.send(fr.Error(ErrorCode.NOT_IN_ROOM, "not in dev"))
        conn.serve()

    with FakeGateway(script) as gw, client_for(recorder, gw.address) as client:
        client.connect()
        ok_ref = client.send("lobby", "  hello  ")
        bad_ref = client.dm("carol", "psst")
        assert ok_ref != bad_ref
        assert recorder.wait(ev.Acked) == ev.Acked(ok_ref, 1)
        failed = recorder.wait(ev.SendFailed)
        assert failed.ref == bad_ref and failed.error.code is ErrorCode.NO_SUCH_USER
        assert recorder.wait(ev.ServerError).error.code is ErrorCode.NOT_IN_ROOM
        sent = gw.connections[0].received
        assert fr.Send("lobby", "hello", ok_ref) in sent


def test_invalid_send_raises_before_anything_is_sent(recorder: Recorder) -> None:
    with FakeGateway(serving()) as gw, client_for(recorder, gw.address) as client:
        client.connect()
        with pytest.raises(ProtocolError) as info:
            client.send("lobby", "   ")
        assert info.value.code is ErrorCode.BAD_TEXT
        with pytest.raises(ProtocolError) as info:
            client.send("Bad Room", "hi")
        assert info.value.code is ErrorCode.BAD_ROOM
        with pytest.raises(ProtocolError):
            client.send("lobby", "x" * 4001)


def test_duplicate_and_out_of_order_ids_are_delivered_once_in_order(recorder: Recorder) -> None:
    def script(conn: FakeConnection) -> None:
        conn.login(histories={"lobby": history(range(1, 3))})
        conn.send(message(2), message(1), message(4), message(3), message(4), message(5))
        conn.send(message(7))  # 6 never comes live: the client must ask for it
        early = conn.expect(fr.HistoryQuery)  # 4 came before 3: asked for 3
        assert (early.room, early.before, early.limit) == ("lobby", 4, 1)
        conn.send(history([3]))
        query = conn.expect(fr.HistoryQuery)
        assert (query.room, query.before, query.limit) == ("lobby", 7, 1)
        conn.send(history([6]), message(6), message(8))
        conn.serve()

    with FakeGateway(script) as gw, client_for(recorder, gw.address) as client:
        client.connect()
        wait_for(lambda: recorder.room_ids()[-1:] == [8], what="message 8")
        assert recorder.room_ids() == list(range(1, 9))


# ----------------------------------------------------- reconnect and resume


def test_drop_resumes_on_the_next_gateway_with_since_token_and_same_ref(
        recorder: Recorder) -> None:
    """The core promise: no gap, no duplicate, and the unacked send is resent with its ref."""
    first_ref: list[str] = []

    def first(conn: FakeConnection) -> None:
        conn.login(token="tok-1", histories={"lobby": history(range(1, 4))})
        first_ref.append(conn.expect(fr.Send).ref or "")
        conn.drop()  # dies before the ack

    def second(conn: FakeConnection) -> None:
        hello = conn.expect(fr.Hello)
        assert hello.token == "tok-1"
        assert hello.since == {"lobby": fr.Position(EPOCH, 3)}
        conn.welcome(hello, token="tok-2")
        conn.send(history(range(2, 6)))  # 2 and 3 again, then 4 and 5 missed while away
        resent = conn.expect(fr.Send)
        assert resent.ref == first_ref[0] and resent.text == "lost ack?"
        conn.send(fr.Ack(resent.ref, 6), message(6, sender="alice"), message(7))
        conn.serve()

    a = FakeGateway(first, gateway_id="gw-a")
    b = FakeGateway(second, gateway_id="gw-b")
    with a, b, client_for(recorder, a.address, b.address) as client:
        client.connect()
        ref = client.send("lobby", "lost ack?")
        assert recorder.wait(ev.Acked) == ev.Acked(ref, 6)
        wait_for(lambda: recorder.room_ids()[-1:] == [7], what="message 7")
        assert recorder.room_ids() == list(range(1, 8))
        assert recorder.wait(ev.Connected, 2) == ev.Connected("gw-b", "alice", True)
        assert client.gateway == "gw-b"
        kinds = [type(e) for e in recorder.events]
        drop = kinds.index(ev.Disconnected)
        assert kinds[drop + 1: drop + 3] == [ev.Reconnecting, ev.Connected]
        assert recorder.of(ev.Reconnecting)[0].address == b.address
        assert len(recorder.of(ev.HistoryLoaded)) == 1  # the resume came as RoomMessages
        assert recorder.of(ev.SendFailed) == []


def test_bye_shutdown_leads_to_a_reconnect_on_the_same_list(recorder: Recorder) -> None:
    resumed: list[fr.Hello] = []

    def going_away(conn: FakeConnection) -> None:
        conn.login()
        conn.bye(fr.ByeReason.SHUTDOWN)

    def back(conn: FakeConnection) -> None:
        resumed.append(conn.login())
        conn.serve()

    with FakeGateway(going_away, back) as gw, client_for(recorder, gw.address) as client:
        client.connect()
        recorder.wait(ev.Connected, 2)
        assert recorder.of(ev.Disconnected) == [ev.Disconnected("shutdown")]
        assert resumed[0].token == "tok-1" and resumed[0].since == {"lobby": fr.Position(EPOCH, 0)}
        assert recorder.of(ev.Closed) == []


@pytest.mark.parametrize("reason", [fr.ByeReason.REPLACED, fr.ByeReason.ABUSE])
def test_bye_replaced_or_abuse_is_final_and_fails_pending_sends(
        recorder: Recorder, reason: fr.ByeReason) -> None:
    """Reconnecting after ``replaced`` would fight the new session; after ``abuse``, the
    gateway that cut us off."""
    sent = threading.Event()

    def script(conn: FakeConnection) -> None:
        conn.login()
        conn.expect(fr.Send)
        sent.set()
        conn.bye(reason)

    with FakeGateway(script, serving()) as gw, client_for(recorder, gw.address) as client:
        client.connect()
        ref = client.send("lobby", "never acked")
        assert recorder.wait(ev.Closed) == ev.Closed(reason.value)
        failed = recorder.wait(ev.SendFailed)
        assert failed.ref == ref and isinstance(failed.error, SendAborted)
        assert gw.accepted == 1 and not client.connected
        assert recorder.of(ev.Reconnecting) == []
        with pytest.raises(ClientClosed):
            client.send("lobby", "too late")


def test_reconnect_disabled_ends_in_disconnected_then_closed(recorder: Recorder) -> None:
    def script(conn: FakeConnection) -> None:
        conn.login()
        conn.drop()

    with FakeGateway(script) as gw, client_for(recorder, gw.address, reconnect=False) as client:
        client.connect()
        recorder.wait(ev.Closed)
        kinds = [type(e) for e in recorder.events]
        assert kinds[-2:] == [ev.Disconnected, ev.Closed]
        assert gw.accepted == 1


def test_reconnect_keeps_trying_with_backoff_until_a_gateway_answers(
        refused_address: str, recorder: Recorder) -> None:
    def script(conn: FakeConnection) -> None:
        conn.login()
        conn.drop()

    with FakeGateway(script) as gw:
        client = client_for(recorder, gw.address, refused_address,
                            backoff=ConstantBackoff(0.01))
        with client:
            client.connect()
            recorder.wait(ev.Reconnecting, 4)  # gw refuses now (no script), the other port too
            attempts = [e.attempt for e in recorder.of(ev.Reconnecting)[:4]]
            assert attempts == [1, 2, 3, 4]
            assert {e.delay for e in recorder.of(ev.Reconnecting)} == {0.01}
        assert recorder.of(ev.Closed) == [ev.Closed("closed")]


def test_name_taken_on_reconnect_is_retried_while_the_old_session_lingers(
        recorder: Recorder) -> None:
    def first(conn: FakeConnection) -> None:
        conn.login()
        conn.drop()

    def taken(conn: FakeConnection) -> None:
        conn.expect(fr.Hello)
        conn.send(fr.Error(ErrorCode.NAME_TAKEN, "still held"))
        conn.serve()

    def freed(conn: FakeConnection) -> None:
        conn.login()
        conn.serve()

    with FakeGateway(first, taken, freed) as gw, client_for(recorder, gw.address) as client:
        client.connect()
        assert recorder.wait(ev.Connected, 2).resumed
        assert recorder.of(ev.Closed) == []


def test_a_bad_name_on_reconnect_closes_the_client(recorder: Recorder) -> None:
    def first(conn: FakeConnection) -> None:
        conn.login()
        conn.drop()

    def refuse(conn: FakeConnection) -> None:
        conn.expect(fr.Hello)
        conn.send(fr.Error(ErrorCode.BAD_NAME, "no longer allowed"))
        conn.serve()

    with FakeGateway(first, refuse) as gw, client_for(recorder, gw.address) as client:
        client.connect()
        assert recorder.wait(ev.Closed) == ev.Closed("login refused: bad_name")


def test_epoch_change_on_resume_resets_the_room(recorder: Recorder) -> None:
    def first(conn: FakeConnection) -> None:
        conn.login(histories={"lobby": history(range(1, 6))})
        conn.drop()

    def second(conn: FakeConnection) -> None:
        hello = conn.expect(fr.Hello)
        assert hello.since == {"lobby": fr.Position(EPOCH, 5)}
        conn.welcome(hello)
        conn.send(history([1, 2], epoch="e2"), message(3))
        conn.serve()

    with FakeGateway(first, second) as gw, client_for(recorder, gw.address) as client:
        client.connect()
        wait_for(lambda: len(recorder.room_ids()) == 8, what="8 messages")
        assert recorder.of(ev.EpochReset) == [ev.EpochReset("lobby", "e2")]
        assert recorder.room_ids() == [1, 2, 3, 4, 5, 1, 2, 3]
        reset = recorder.events.index(ev.EpochReset("lobby", "e2"))
        loaded = recorder.events[reset + 1]
        assert isinstance(loaded, ev.HistoryLoaded) and not loaded.older


def test_a_silent_gateway_is_pinged_then_left(recorder: Recorder) -> None:
    def silent(conn: FakeConnection) -> None:
        conn.answer_pings = False
        conn.login()
        conn.serve()

    with FakeGateway(silent, serving()) as gw, \
            client_for(recorder, gw.address, ping_interval=0.2) as client:
            client.connect()
            assert recorder.wait(ev.Connected, 2).resumed
            assert "stopped answering" in recorder.of(ev.Disconnected)[0].reason
            assert any(isinstance(f, fr.Ping) for f in gw.connections[0].received)


def test_pings_keep_an_idle_connection_alive(recorder: Recorder) -> None:
    with FakeGateway(serving()) as gw, \
            client_for(recorder, gw.address, ping_interval=0.1) as client:
            client.connect()
            conn = gw.wait_connections(1)
            wait_for(lambda: sum(isinstance(f, fr.Ping) for f in conn.received) >= 3,
                     what="three pings")
            assert recorder.of(ev.Disconnected) == []


# ------------------------------------------------------------- rooms


def test_join_leave_who_typing_and_scroll_back(recorder: Recorder) -> None:
    def script(conn: FakeConnection) -> None:
        conn.login(histories={"lobby": history(range(51, 101))})
        join = conn.expect(fr.Join)
        conn.send(history(range(1, 3), room=join.room), fr.Joined(join.room, "alice"))
        query = conn.expect(fr.HistoryQuery)
        assert (query.room, query.before, query.limit) == ("lobby", 51, 50)
        conn.send(history(range(1, 51), complete=True))
        who = conn.expect(fr.Who)
        conn.send(fr.WhoList(who.room, ("alice", "bob")), fr.TypingNotice("dev", "bob"))
        conn.expect(fr.Leave)  # skips the typing frame, checked below
        conn.serve()

    with FakeGateway(script) as gw, client_for(recorder, gw.address) as client:
        client.connect()
        client.join("dev")
        loaded = recorder.wait(ev.HistoryLoaded, 2)
        assert loaded.room == "dev" and [m.id for m in loaded.messages] == [1, 2]
        recorder.wait(ev.MemberJoined)
        client.history("lobby", before=51)
        older = recorder.wait(ev.HistoryLoaded, 3)
        assert older.older and [m.id for m in older.messages] == list(range(1, 51))
        client.who("dev")
        assert recorder.wait(ev.Members) == ev.Members("dev", ("alice", "bob"))
        assert recorder.wait(ev.Typing) == ev.Typing("dev", "bob")
        for _ in range(5):
            client.typing("dev")  # one per 2 s leaves the client
        client.leave("dev")
        assert client.rooms == ("lobby",)
        received = gw.connections[0].received
        wait_for(lambda: any(isinstance(f, fr.Leave) for f in received), what="leave frame")
        assert received.count(fr.Typing("dev")) == 1


def test_rooms_joined_while_reconnecting_are_joined_after_login(recorder: Recorder) -> None:
    release = threading.Event()
    resumed: list[fr.Hello] = []

    def first(conn: FakeConnection) -> None:
        conn.login()
        conn.drop()

    def slow(conn: FakeConnection) -> None:
        hello = conn.expect(fr.Hello)
        resumed.append(hello)
        release.wait(10)
        conn.welcome(hello)
        conn.send(fr.History("lobby", EPOCH, (), True))
        conn.expect(fr.Join)
        conn.serve()

    with FakeGateway(first, slow) as gw, client_for(recorder, gw.address) as client:
        client.connect()
        wait_for(lambda: resumed, what="second hello")
        client.join("dev")  # after hello, before welcome
        ref = client.send("dev", "queued")
        release.set()
        conn = gw.wait_connections(2)
        wait_for(lambda: any(isinstance(f, fr.Send) for f in conn.received), what="resend")
        sends = [f for f in conn.received if isinstance(f, fr.Join | fr.Send)]
        assert sends == [fr.Join("dev"), fr.Send("dev", "queued", ref)]


# ------------------------------------------------------------- closing


def test_close_says_bye_fails_pending_and_is_idempotent(recorder: Recorder) -> None:
    def script(conn: FakeConnection) -> None:
        conn.login()
        conn.expect(fr.Send)
        conn.expect(fr.Bye)
        conn.serve()

    with FakeGateway(script) as gw:
        client = client_for(recorder, gw.address)
        client.connect()
        ref = client.send("lobby", "unacked")
        wait_for(lambda: any(isinstance(f, fr.Send) for f in gw.wait_connections(1).received))
        client.close()
        client.close()
        assert recorder.of(ev.Closed) == [ev.Closed("closed")]
        assert [e.ref for e in recorder.of(ev.SendFailed)] == [ref]
        assert not client.connected and client.gateway is None
        wait_for(lambda: any(isinstance(f, fr.Bye) for f in gw.connections[0].received),
                 what="bye")
        assert not any(t.name == "chat-client-alice" for t in threading.enumerate())


def test_close_from_the_event_callback_does_not_deadlock() -> None:
    done = threading.Event()
    holder: list[ChatClient] = []

    def on_event(event: ev.ClientEvent) -> None:
        if isinstance(event, ev.HistoryLoaded):
            holder[0].close()
        if isinstance(event, ev.Closed):
            done.set()

    with FakeGateway(serving()) as gw:
        client = ChatClient("alice", [gw.address], on_event=on_event)
        holder.append(client)
        client.connect()
        assert done.wait(10)
        wait_for(lambda: not any(t.name == "chat-client-alice" for t in threading.enumerate()),
                 what="reader thread gone")


def test_close_before_connect_reports_closed() -> None:
    client = ChatClient("alice", ["127.0.0.1:1"])
    client.close()
    assert client.events.get_nowait() == ev.Closed("closed")
    with pytest.raises(ClientClosed):
        client.connect()


# ----------------------------------------------------------------- TLS


def test_tls_gateway_via_tls_scheme_and_context(recorder: Recorder) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)

    def script(conn: FakeConnection) -> None:
        conn.login(histories={"lobby": history(range(1, 3))})
        sent = conn.expect(fr.Send)
        conn.send(fr.Ack(sent.ref or "", 3), message(3, sender="alice"))
        conn.serve()

    gw = FakeGateway(script, ssl_context=server_context)
    with gw, client_for(recorder, f"tls://{gw.address}", tls_context=client_context) as client:
            client.connect()
            ref = client.send("lobby", "secret")
            assert recorder.wait(ev.Acked) == ev.Acked(ref, 3)
            wait_for(lambda: recorder.room_ids() == [1, 2, 3], what="3 messages")


def test_tls_with_an_untrusted_certificate_fails_to_connect() -> None:
    trustme = pytest.importorskip("trustme")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(server_context)
    with FakeGateway(serving(), ssl_context=server_context) as gw:
        with client_for(None, f"tls://{gw.address}") as client, \
                pytest.raises(NoGatewayAvailable, match="CERTIFICATE_VERIFY_FAILED"):
            client.connect(timeout=5)
        wait_for(lambda: gw.tls_failures, what="the handshake failure on the gateway side")


# ----------------------------------------------------------- addresses


@pytest.mark.parametrize(
    ("text", "host", "port", "tls"),
    [
        ("localhost:5050", "localhost", 5050, False),
        ("example", "example", 5050, False),
        ("tls://gw.example:6000", "gw.example", 6000, True),
        ("tcp://10.0.0.1:7", "10.0.0.1", 7, False),
        ("[::1]:5051", "::1", 5051, False),
    ],
)
def test_parse_address(text: str, host: str, port: int, tls: bool) -> None:
    address = parse_address(text)
    assert (address.host, address.port, address.tls) == (host, port, tls)
    assert parse_address(str(address)) == address


@pytest.mark.parametrize("text", ["http://x:1", "host:0", "host:99999", "host:abc", ":5050",
                                  "[::1"])
def test_parse_address_refuses_nonsense(text: str) -> None:
    with pytest.raises(ValueError):
        parse_address(text)


def test_a_send_answered_unavailable_is_held_and_sent_again_until_acked(
        recorder: Recorder) -> None:
    """Redis frozen: the gateway says ``unavailable`` (not carried out); the message stays
    pending and goes out again with the same ref, instead of being dropped."""

    def script(conn: FakeConnection) -> None:
        conn.login()
        first = conn.expect(fr.Send)
        conn.send(fr.Error(ErrorCode.UNAVAILABLE, "message broker is unavailable", first.ref))
        again = conn.expect(fr.Send)
        assert again == first
        conn.send(fr.Error(ErrorCode.UNAVAILABLE, "message broker is unavailable", first.ref))
        third = conn.expect(fr.Send)
        assert third == first
        conn.send(fr.Ack(first.ref or "", 1), message(1, sender="alice"))
        conn.serve()

    with FakeGateway(script) as gw, \
            client_for(recorder, gw.address, hold_unavailable=30.0,
                       retry_interval=0.05) as client:
        client.connect()
        ref = client.send("lobby", "typed while Redis was frozen")
        assert recorder.wait(ev.Acked) == ev.Acked(ref, 1)
        assert [e.ref for e in recorder.of(ev.SendDelayed)] == [ref, ref]
        assert recorder.of(ev.SendFailed) == []


def test_a_held_send_fails_after_the_hold_time(recorder: Recorder) -> None:
    def script(conn: FakeConnection) -> None:
        conn.login()
        while True:
            frame = conn.recv()
            if frame is None:
                return
            if isinstance(frame, fr.Send):
                conn.send(fr.Error(ErrorCode.UNAVAILABLE, "broker down", frame.ref))

    with FakeGateway(script) as gw, \
            client_for(recorder, gw.address, hold_unavailable=0.3,
                       retry_interval=0.05) as client:
        client.connect()
        ref = client.send("lobby", "never stored")
        failed = recorder.wait(ev.SendFailed)
        assert failed.ref == ref and failed.error.code is ErrorCode.UNAVAILABLE
        assert len(recorder.of(ev.SendDelayed)) >= 2


def test_without_hold_an_unavailable_send_fails_at_once(recorder: Recorder) -> None:
    def script(conn: FakeConnection) -> None:
        conn.login()
        sent = conn.expect(fr.Send)
        conn.send(fr.Error(ErrorCode.UNAVAILABLE, "broker down", sent.ref))
        conn.serve()

    with FakeGateway(script) as gw, client_for(recorder, gw.address) as client:
        client.connect()
        ref = client.send("lobby", "hi")
        assert recorder.wait(ev.SendFailed).ref == ref
        assert recorder.of(ev.SendDelayed) == []
