"""5,000 idle logged-in connections over three gateway processes.

One thread per client on the gateway side; the test holds its sockets in one
selector loop. While all are connected, every gateway must still answer
``ping`` within 100 ms, and the resident memory each idle connection costs
is measured (at the default ``--thread-stack-kib``) and printed.
"""

from __future__ import annotations

import time

import pytest

from gateway.config import GatewayConfig
from tests.load.conftest import INHERITED_NOFILE, StartGateways
from tests.load.swarm import Swarm, Target, nofile_soft_limit, outcomes, vm_status
from tests.support.wire import WireClient

CONNECTIONS = 5000
GATEWAYS = 3
PINGS = 10
PING_BOUND_S = 0.100


def ping_times(client: WireClient, count: int) -> list[float]:
    """Round-trip times of ``count`` pings, one after another."""
    times = []
    for i in range(count):
        started = time.perf_counter()
        client.send(type="ping", ref=f"p{i}")
        pong = client.recv(timeout=5)
        times.append(time.perf_counter() - started)
        assert pong == {"type": "pong", "ref": f"p{i}"}, pong
    return times


@pytest.mark.slow
def test_5000_idle_connections_leave_every_gateway_answering_ping(
        start_gateways: StartGateways, open_files: int) -> None:
    if open_files < CONNECTIONS + 1000:
        pytest.skip(f"the hard open-files limit is {open_files}: raise it (ulimit -Hn) to "
                    f"hold {CONNECTIONS} connections in one test process")
    gateways = start_gateways(GATEWAYS)
    for gw in gateways:
        # started with a soft limit of 1024: the gateway raised its own
        assert nofile_soft_limit(gw.proc.pid) > INHERITED_NOFILE
    probes = []
    for i, gw in enumerate(gateways):
        probe = WireClient(gw.address, timeout=10)
        probe.hello(f"probe{i}", rooms=[])
        probes.append(probe)
        ping_times(probe, 3)  # warm the paths a ping takes
    before = {gw.gateway_id: vm_status(gw.proc.pid) for gw in gateways}
    targets = [Target(gateways[i % GATEWAYS].address, f"u{i}") for i in range(CONNECTIONS)]
    with Swarm() as swarm:
        try:
            started = time.monotonic()
            conns = swarm.login(targets, window=300, timeout=90)
            login_s = time.monotonic() - started
            assert outcomes(conns) == {"welcome": CONNECTIONS}
            after = {gw.gateway_id: vm_status(gw.proc.pid) for gw in gateways}
            worst = {gw.gateway_id: max(ping_times(probe, PINGS))
                     for gw, probe in zip(gateways, probes, strict=True)}
        finally:
            for gw in gateways:
                gw.kill()  # before the swarm closes: 5,000 logouts would only cost time
            for probe in probes:
                probe.close()

    per_gateway = CONNECTIONS // GATEWAYS
    report = []
    for gw in gateways:
        b, a = before[gw.gateway_id], after[gw.gateway_id]
        # one reader thread per client, all alive while the clients idle
        assert a["Threads"] - b["Threads"] >= per_gateway
        rss_kib = (a["VmRSS"] - b["VmRSS"]) / per_gateway
        report.append(
            f"{gw.gateway_id}: {per_gateway} idle connections, "
            f"RSS {b['VmRSS'] // 1024} -> {a['VmRSS'] // 1024} MiB = "
            f"{rss_kib:.1f} KiB/connection (virtual "
            f"{(a['VmSize'] - b['VmSize']) / per_gateway:.0f} KiB/connection), "
            f"threads {a['Threads']}, max ping {worst[gw.gateway_id] * 1000:.1f} ms")
        # a generous ceiling: a connection must stay far cheaper than its stack size
        assert 0 < rss_kib < GatewayConfig().thread_stack_kib, report[-1]
    print(f"\nLOAD {CONNECTIONS} logged-in connections over {GATEWAYS} gateways in "
          f"{login_s:.1f}s; thread stack {GatewayConfig().thread_stack_kib} KiB (default)")
    for line in report:
        print("LOAD " + line)
    assert max(worst.values()) < PING_BOUND_S, worst
