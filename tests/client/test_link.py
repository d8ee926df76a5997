"""Link, one gateway connection, on loopback TCP: framing, keepalive, and the login exchange."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from client.errors import LoginRefused
from client.link import Link, login
from client.transport import PlainTransport
from protocol import frames as fr
from protocol.address import Address
from protocol.codec import decode_client, encode
from protocol.errors import ConnectionLost, ErrorCode
from protocol.limits import MAX_SERVER_LINE
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(30)

ADDRESS = Address("127.0.0.1", 5050)


@pytest.fixture
def pair() -> Iterator[tuple[Link, socket.socket]]:
    """A link and the gateway's end of its connection."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        ours = socket.create_connection(listener.getsockname())
        theirs, _ = listener.accept()
    theirs.settimeout(5)
    link = Link(PlainTransport(ours), ADDRESS, 0)
    link.settimeout(5)
    try:
        yield link, theirs
    finally:
        link.close()
        theirs.close()


def frames_from(sock: socket.socket) -> list[fr.ClientFrame]:
    sock.setblocking(False)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except BlockingIOError:
        pass
    finally:
        sock.setblocking(True)
    return [decode_client(line) for line in data.splitlines()]


def test_frames_are_read_across_arbitrary_chunks(pair: tuple[Link, socket.socket]) -> None:
    link, gateway = pair
    data = encode(fr.Pong("a")) + encode(fr.Joined("lobby", "bob"))
    for i in range(len(data)):  # one byte at a time
        gateway.sendall(data[i:i + 1])
    assert link.receive() == fr.Pong("a")
    assert link.receive() == fr.Joined("lobby", "bob")


def test_undecodable_lines_are_skipped(pair: tuple[Link, socket.socket]) -> None:
    link, gateway = pair
    gateway.sendall(b'not json\n{"type":"mystery"}\n{"type":"pong"}\n')
    assert link.receive() == fr.Pong()


def test_end_of_stream_and_huge_lines_are_connection_lost(
        pair: tuple[Link, socket.socket]) -> None:
    link, gateway = pair
    sender = threading.Thread(target=gateway.sendall, args=(b"x" * MAX_SERVER_LINE,))
    sender.start()
    with pytest.raises(ConnectionLost, match="over 1 MiB"):
        link.receive()
    link.abort()
    sender.join(5)
    ours, theirs = socket.socketpair()
    theirs.close()
    with pytest.raises(ConnectionLost, match="closed the connection"):
        Link(PlainTransport(ours), ADDRESS, 0).receive()
    ours.close()


def test_receive_returns_none_on_a_quiet_tick(pair: tuple[Link, socket.socket]) -> None:
    link, _ = pair
    link.settimeout(0.01)
    assert link.receive() is None


def test_keep_alive_pings_an_idle_link_only_after_the_interval(
        pair: tuple[Link, socket.socket]) -> None:
    link, gateway = pair
    link.keep_alive(60.0)
    assert frames_from(gateway) == []

    def pinged() -> bool:
        link.keep_alive(0.02)
        return frames_from(gateway) == [fr.Ping()]

    wait_for(pinged, what="a ping")


def test_keep_alive_pings_a_quiet_gateway_even_while_we_send(
        pair: tuple[Link, socket.socket]) -> None:
    """Typing frames get no answer: the gateway must still be asked to prove it is alive."""
    link, gateway = pair

    def typing_then_check() -> bool:
        link.send(fr.TypingRequest("lobby"))
        link.keep_alive(0.05)
        return any(isinstance(f, fr.Ping) for f in frames_from(gateway))

    wait_for(typing_then_check, what="a ping between typing frames")


def test_a_failed_write_shuts_the_link(pair: tuple[Link, socket.socket]) -> None:
    link, _ = pair
    link.abort()
    assert link.send(fr.Ping()) is False
    with pytest.raises(ConnectionLost):
        link.receive()


def _gateway_answering(answer: fr.ServerFrame) -> tuple[Address, threading.Thread,
                                                        socket.socket]:
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(5)
            conn.recv(65536)  # the hello
            conn.sendall(encode(answer) + encode(fr.History("lobby", "e", (), True)))
            conn.recv(65536)  # until the client closes

    thread = threading.Thread(target=serve)
    thread.start()
    return Address("127.0.0.1", listener.getsockname()[1]), thread, listener


def test_login_returns_the_welcome_and_keeps_what_followed() -> None:
    welcome = fr.Welcome("alice", "gw1", ("lobby",), "tok", {})
    address, thread, listener = _gateway_answering(welcome)
    try:
        link, got = login(address, 0, fr.Hello("alice"), timeout=5)
        assert got == welcome
        assert link.receive() == fr.History("lobby", "e", (), True)
        link.close()
    finally:
        thread.join(5)
        listener.close()


@pytest.mark.parametrize(
    ("answer", "raised"),
    [
        (fr.Error(ErrorCode.NAME_TAKEN, "taken"), LoginRefused),
        (fr.Bye(fr.ByeReason.SHUTDOWN), ConnectionLost),
    ],
)
def test_login_turns_a_refusal_or_bye_into_an_exception(answer: fr.ServerFrame,
                                                        raised: type[Exception]) -> None:
    address, thread, listener = _gateway_answering(answer)
    try:
        with pytest.raises(raised):
            login(address, 0, fr.Hello("alice"), timeout=5)
    finally:
        thread.join(5)
        listener.close()
