"""The docker-compose topology on one host: Redis, three gateways, HAProxy in front.

Clients know only HAProxy's address, as in production. These tests prove the
shipped HAProxy config spreads them, notices a dead gateway through /healthz
and sends reconnecting clients to a live one, where they resume with nothing
lost.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from tests.deploy.conftest import HAProxy
from tests.support.gateways import GatewayProcess
from tests.support.waiting import wait_for
from tests.support.wire import WireClient

pytestmark = pytest.mark.slow


@pytest.fixture
def clients() -> Iterator[list[WireClient]]:
    """Every client a test opens; all closed at the end."""
    opened: list[WireClient] = []
    yield opened
    for client in opened:
        client.close()


def connect(lb: HAProxy, opened: list[WireClient], name: str,
            **hello: Any) -> tuple[WireClient, dict[str, Any], dict[str, Any]]:
    """A client through HAProxy, logged in: (client, welcome, lobby history)."""
    client = WireClient(lb.address)
    opened.append(client)
    welcome = client.hello(name, **hello)
    history = client.recv_type("history", room="lobby")
    return client, welcome, history


def lobby_ids(client: WireClient, until: int) -> list[int]:
    """Ids of the lobby messages that arrive, in arrival order, up to ``until``."""
    ids: list[int] = []
    while not ids or ids[-1] < until:
        ids.append(client.recv_type("message", room="lobby")["id"])
    return ids


def say(client: WireClient, text: str) -> int:
    """Send to the lobby and return the id the ack gives."""
    client.send(type="send", room="lobby", text=text, ref=text)
    return int(client.recv_type("ack", ref=text)["id"])


def test_haproxy_spreads_clients_over_every_gateway(haproxy: HAProxy,
                                                    clients: list[WireClient]) -> None:
    landed: Counter[str] = Counter()
    for i in range(6):
        _, welcome, _ = connect(haproxy, clients, f"user{i}")
        landed[welcome["gateway"]] += 1
    assert set(landed) == {"gw-1", "gw-2", "gw-3"}
    assert max(landed.values()) - min(landed.values()) <= 1, f"not least-connections: {landed}"
    wait_for(lambda: sum(s.sessions for s in haproxy.states().values()) == 6,
             what="HAProxy to count six sessions")
    sent = say(clients[0], "hello everyone")
    for client in clients:
        assert lobby_ids(client, sent)[-1] == sent


def test_killed_gateway_is_marked_down_and_its_clients_resume_elsewhere(
    haproxy: HAProxy, gateway_processes: list[GatewayProcess], clients: list[WireClient]
) -> None:
    names = [f"u{i}" for i in range(6)]
    client: dict[str, WireClient] = {}
    token: dict[str, str] = {}
    home: dict[str, str] = {}
    seen: dict[str, list[int]] = {name: [] for name in names}
    epoch = ""
    for name in names:
        client[name], welcome, history = connect(haproxy, clients, name)
        token[name], home[name], epoch = welcome["token"], welcome["gateway"], history["epoch"]

    victim = next(g for g in gateway_processes if g.gateway_id == home["u0"])
    server = haproxy.server_of(victim)
    orphans = [n for n in names if home[n] == victim.gateway_id]
    survivors = [n for n in names if home[n] != victim.gateway_id]
    speaker = client[survivors[0]]

    before = [say(speaker, f"before-{i}") for i in range(3)]
    for name in names:
        seen[name] += lobby_ids(client[name], before[-1])

    victim.kill()
    for name in orphans:
        client[name].wait_closed(timeout=10)
        client[name].close()
    wait_for(lambda: haproxy.states()[server].status.startswith("DOWN"), timeout=15,
             interval=0.1, what=f"HAProxy to mark {server} DOWN")

    during = [say(speaker, f"during-{i}") for i in range(3)]

    for name in orphans:
        again, welcome, history = connect(
            haproxy, clients, name, token=token[name],
            since={"lobby": {"epoch": epoch, "id": seen[name][-1]}},
        )
        assert welcome["gateway"] != victim.gateway_id
        assert history["epoch"] == epoch
        seen[name] += [m["id"] for m in history["messages"]]
        client[name] = again

    after = say(speaker, "after")
    for name in names:
        seen[name] += lobby_ids(client[name], after)
        assert seen[name] == [*before, *during, after], f"{name} saw {seen[name]}"

    for i in range(4):
        _, welcome, _ = connect(haproxy, clients, f"late{i}")
        assert welcome["gateway"] != victim.gateway_id
    wait_for(lambda: haproxy.states()[server].sessions == 0,
             what="the dead gateway's sessions to close")
    assert sum(s.sessions for s in haproxy.states().values()) == len(names) + 4
