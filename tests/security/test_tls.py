"""Optional TLS for clients: ``--tls-cert``/``--tls-key`` on the gateway, ``tls://`` in the client.

Certificates come from a throwaway CA (trustme). A plain-TCP client and a
client that does not trust the CA fail cleanly, quickly, and without
harming the gateway or its TLS clients.
"""

from __future__ import annotations

import queue
import socket
import ssl
import time
from collections.abc import Callable

import pytest

from client.connection import ChatClient
from client.errors import NoGatewayAvailable
from client.events import ClientEvent, RoomMessage
from gateway.server import Gateway
from tests.conftest import StartGateway
from tests.security.conftest import Pki
from tests.support.waiting import wait_for


def next_event(client: ChatClient, match: Callable[[ClientEvent], bool],
               timeout: float = 10.0) -> ClientEvent:
    """The first event from ``client.events`` that ``match``es, skipping others."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            event = client.events.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError("no matching event arrived") from None
        if match(event):
            return event


def said(text: str) -> Callable[[ClientEvent], bool]:
    return lambda e: isinstance(e, RoomMessage) and e.message.text == text


def plain_tcp_exchange(address: tuple[str, int]) -> bytes:
    """Speak plain protocol to the TLS port; everything the gateway answered until it closed."""
    with socket.create_connection(address, timeout=15) as sock:
        sock.sendall(b'{"type":"hello","name":"mallory"}\n')
        received = b""
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                return received
            if not data:
                return received
            received += data


def test_tls_clients_chat_while_plain_and_untrusted_clients_fail_cleanly(
        start_gateway: StartGateway, pki: Pki) -> None:
    gw: Gateway = start_gateway(tls_cert=str(pki.cert_file), tls_key=str(pki.key_file))
    port = gw.address[1]
    trusting = ssl.create_default_context(cafile=str(pki.ca_file))
    tls_address = f"tls://127.0.0.1:{port}"
    with ChatClient("alice", tls_address, tls_context=trusting, reconnect=False) as alice, \
            ChatClient("bob", tls_address, tls_context=trusting, reconnect=False) as bob:
        assert alice.connect().name == "alice"
        bob.connect()
        alice.send("lobby", "over tls")
        next_event(bob, said("over tls"))

        # Plain TCP on the TLS port: the handshake fails and the gateway hangs up,
        # without a single chat frame in clear text.
        started = time.monotonic()
        answer = plain_tcp_exchange(gw.address)
        assert b'"type"' not in answer and b"welcome" not in answer, answer[:200]
        assert time.monotonic() - started < 5, "the gateway kept a plain client waiting"

        # The same through the client library: a clean error, not a hang.
        with ChatClient("carol", f"127.0.0.1:{port}", reconnect=False,
                        connect_timeout=3) as carol, pytest.raises(NoGatewayAvailable):
            carol.connect(timeout=5)
        # A client that does not trust the gateway's CA refuses the certificate.
        with ChatClient("dave", tls_address, tls_context=ssl.create_default_context(),
                        reconnect=False, connect_timeout=3) as dave, \
                pytest.raises(NoGatewayAvailable, match="CERTIFICATE_VERIFY_FAILED"):
            dave.connect(timeout=5)

        # The gateway is unharmed: the TLS clients still chat, nothing of the
        # failed connections is left behind.
        bob.send("lobby", "still fine")
        next_event(alice, said("still fine"))
        wait_for(lambda: len(gw.registry) == 2, timeout=10, what="only the TLS sessions left")
        assert {s.name for s in gw.registry.sessions()} == {"alice", "bob"}
