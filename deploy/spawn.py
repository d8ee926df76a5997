"""Starting a gateway process and waiting until it is healthy: the one place that does it.

chat-cluster's ``LocalCluster`` and the tests' ``GatewayProcess`` both build
the command with ``gateway_command`` (and its environment with
``gateway_env``), and both wait with ``wait_healthy``: ``/healthz`` answers
200 from a socket the process itself holds (``owns_port``), so another
gateway that took the port meanwhile is never mistaken for the new one.

A port probed free and handed to a child is a race (another process may bind
it, or take it as an outgoing connection's local port, before the child
does). So a caller that needs no particular port starts the gateway on port 0
with ``ports_file``, and ``wait_ports`` reads back the ports the system gave
it. No state; each call polls on its caller's thread.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from deploy.healthcheck import Endpoint, Health, probe

POLL_S = 0.05
"""How often a start is checked (a child's health, Redis' ping, HAProxy's view)."""


class ClusterError(RuntimeError):
    """A part of the local cluster did not start, or a program it needs is missing."""


def gateway_command(*, host: str, port: int, health_port: int, redis_url: str,
                    gateway_id: str, log_level: str, extra: Sequence[str] = (),
                    ports_file: str | Path | None = None) -> list[str]:
    """``python -m gateway`` with this interpreter, listening on ``host``; with
    ``ports_file`` it writes the ports it holds there once listening (``wait_ports``)."""
    return [
        sys.executable, "-m", "gateway",
        "--host", host, "--port", str(port),
        "--health-port", str(health_port),
        "--redis-url", redis_url,
        "--id", gateway_id,
        "--log-level", log_level,
        *(["--ports-file", str(ports_file)] if ports_file is not None else []),
        *extra,
    ]


def wait_ports(proc: subprocess.Popen[bytes], ports_file: Path, timeout: float, *,
               name: str, log: Callable[[], str]) -> tuple[int, int | None]:
    """The (chat, health) ports ``proc`` wrote to ``ports_file`` once listening (health
    None when disabled); ``ClusterError`` when it exits first or ``timeout`` seconds
    pass. Remove a previous run's file before starting ``proc``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            data = json.loads(ports_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            pass
        else:
            health = data["health_port"]
            return int(data["port"]), None if health is None else int(health)
        code = proc.poll()
        if code is not None:
            raise ClusterError(f"{name} exited with code {code} before listening; {log()}")
        if time.monotonic() > deadline:
            raise ClusterError(f"{name} did not write {ports_file} within {timeout} s; {log()}")
        time.sleep(POLL_S)


def gateway_env() -> dict[str, str]:
    """This process' environment, with the gateway importing the same code as it does,
    wherever that comes from."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def _listening_inodes(port: int) -> set[str] | None:
    """Socket inodes listening on TCP ``port`` (Linux /proc); None where unknown."""
    found: set[str] = set()
    seen_table = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        seen_table = True
        for line in lines:
            fields = line.split()
            if len(fields) <= 9 or fields[3] != "0A":  # 0A: LISTEN
                continue
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                found.add(fields[9])
    return found if seen_table else None


def owns_port(pid: int, port: int) -> bool | None:
    """Whether process ``pid`` holds the socket listening on ``port``; None where unknown."""
    inodes = _listening_inodes(port)
    if inodes is None:
        return None
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            return True
    return False


def healthy(proc: subprocess.Popen[bytes], endpoint: Endpoint, timeout: float) -> Health:
    """The health of ``proc`` itself: an answer from a port it does not hold is not its."""
    if proc.poll() is not None:
        return Health.DOWN
    health = probe(endpoint, timeout)
    if health is not Health.DOWN and owns_port(proc.pid, endpoint.port) is False:
        return Health.DOWN  # somebody else's gateway answered on that port
    return health


def wait_healthy(proc: subprocess.Popen[bytes], endpoint: Endpoint, timeout: float, *,
                 name: str, log: Callable[[], str]) -> None:
    """Poll until ``proc``'s ``/healthz`` on ``endpoint`` says 200; ``ClusterError`` when
    it exits first or ``timeout`` seconds pass, with ``log()`` (where its log is, how
    it ends) in the message."""
    deadline = time.monotonic() + timeout
    while healthy(proc, endpoint, timeout=1.0) is not Health.OK:
        code = proc.poll()
        if code is not None:
            raise ClusterError(f"{name} exited with code {code}; {log()}")
        if time.monotonic() > deadline:
            raise ClusterError(
                f"{name}: /healthz on {endpoint} not 200 within {timeout} s; {log()}")
        time.sleep(POLL_S)


__all__ = [
    "POLL_S", "ClusterError", "gateway_command", "gateway_env", "healthy", "owns_port",
    "wait_healthy", "wait_ports",
]
