"""Client sockets get the options chat needs: no Nagle delay, a bounded kernel buffer."""

from __future__ import annotations

import socket

from tests.conftest import Connect, StartGateway
from tests.gateway.live import login


def test_client_sockets_have_nodelay_and_the_configured_send_buffer(
        start_gateway: StartGateway, connect: Connect) -> None:
    gw = start_gateway(socket_sndbuf=64 * 1024)
    login(connect(gw.address), "alice")
    (session,) = gw.registry.sessions()
    assert session.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    # Linux reports twice what was set (it counts its bookkeeping too).
    assert session.sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) in (64 * 1024,
                                                                           128 * 1024)
