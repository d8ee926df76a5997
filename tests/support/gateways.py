"""Start gateways for tests: in-process (fast) or as processes (to SIGKILL them)."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO

from redis.backoff import ConstantBackoff

from deploy.healthcheck import Endpoint
from deploy.spawn import gateway_command, gateway_env, wait_healthy, wait_ports
from gateway.accounts.passwords import FAST_PARAMS
from gateway.config import GatewayConfig
from gateway.server import Gateway, run_gateway
from protocol.address import Address
from protocol.limits import Limits
from tests.support.waiting import wait_for

FAST: dict[str, Any] = dict(heartbeat_s=0.5, lease_ms=2000, probe_interval_s=0.25,
                            probe_timeout_s=4.0)
"""Timings for tests: a dead gateway is noticed in about two seconds."""


def config(redis_url: str, gateway_id: str = "gw1", **overrides: Any) -> GatewayConfig:
    limits = overrides.pop("limits", Limits())
    base = GatewayConfig(host="127.0.0.1", port=0, redis_url=redis_url, gateway_id=gateway_id,
                         health_port=None, limits=limits, password_hash=FAST_PARAMS, **FAST)
    return replace(base, **overrides)


def wait_ready(gateway: Gateway, timeout: float = 10.0) -> Gateway:
    """``gateway`` once its pub/sub connection is up.

    ``Gateway.start`` returns before it is: a ``hello`` that comes first is
    answered ``unavailable`` (its rooms cannot be subscribed yet), and on a
    loaded machine a test's first ``hello`` can win that race.
    """
    wait_for(lambda: gateway.subscriber.connected, timeout,
             what=f"gateway {gateway.config.gateway_id}'s pub/sub connection")
    return gateway


@contextmanager
def gateways(redis_url: str, n: int = 3, **overrides: Any) -> Iterator[list[Gateway]]:
    """``n`` in-process gateways on one Redis, each ready (``wait_ready``)."""
    with ExitStack() as stack:
        yield [wait_ready(stack.enter_context(run_gateway(
                   config(redis_url, f"gw{i + 1}", **overrides), backoff=ConstantBackoff(0.05))))
               for i in range(n)]


def address(gw: Gateway | GatewayProcess) -> str:
    """The gateway's ``host:port`` as clients are given it."""
    return str(Address(*gw.address))


START_TIMEOUT_S = 30.0
"""How long a gateway process may take to listen, and again to be healthy. Mostly the
interpreter starting and importing: 3-6 s on the shared 2-core VM at load 15, and
over 15 s with the tests niced (a chaos run lost its gateway to a 15 s limit)."""


class GatewayProcess:
    """``python -m gateway`` as a child process, for kill -9 and SIGTERM tests.

    The first process listens on ports the system picks (``--port 0``,
    ``--health-port 0``) and reports them in a ports file
    (``deploy.spawn.wait_ports``): probing free ports first and passing them
    on would race with every other test binding or connecting meanwhile.
    ``start()`` runs it again after ``kill()`` or ``terminate()`` under the
    same id and on the same ports, as a supervisor restarts a crashed gateway
    (its clients come back to the address they know). Its stderr goes to a
    temporary file, not a pipe: a pipe nobody reads would block the gateway's
    logging once 64 KiB of warnings piled up.
    """

    def __init__(self, redis_url: str, gateway_id: str, *extra: str,
                 timeout: float = START_TIMEOUT_S) -> None:
        self.gateway_id = gateway_id
        self._redis_url = redis_url
        self._extra = ["--heartbeat", "0.5", "--lease-ms", "2000", "--probe-interval", "0.25",
                       "--probe-timeout", "2", *extra]
        self._dir = tempfile.TemporaryDirectory(prefix=f"gateway-{gateway_id}-")
        self._ports_file = Path(self._dir.name) / "ports.json"
        self.port = 0
        self.health_port = 0
        self.starts = 0
        """How many processes were started: 1 after ``__init__``, one more per ``start()``."""
        self._stderr: BinaryIO | None = None
        self.proc = self._spawn()
        try:
            port, health_port = wait_ports(
                self.proc, self._ports_file, timeout, name=f"gateway {gateway_id}",
                log=lambda: f"its stderr ends:\n{self.stderr_tail(2000)}")
            assert health_port is not None, "started with --health-port 0, not disabled"
            self.port, self.health_port = port, health_port
            self.wait_healthy(timeout)
        except BaseException:
            self.close()
            raise

    @property
    def args(self) -> list[str]:
        """The command line of the next start: port 0 the first time, then the ports held."""
        return gateway_command(
            host="127.0.0.1", port=self.port, health_port=self.health_port,
            redis_url=self._redis_url, gateway_id=self.gateway_id, log_level="WARNING",
            ports_file=self._ports_file, extra=self._extra)

    def _spawn(self) -> subprocess.Popen[bytes]:
        self._close_stderr()
        self._ports_file.unlink(missing_ok=True)
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the process)
        self.starts += 1
        return subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=self._stderr,
                                env=gateway_env())

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Run the gateway again (same id, same ports) after it exited; waits until healthy."""
        if self.proc.poll() is None:
            raise RuntimeError(f"gateway {self.gateway_id} is still running")
        self.proc = self._spawn()
        self.wait_healthy(timeout)

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def stderr_tail(self, limit: int = 4000) -> str:
        """The end of what the current process wrote to stderr (its log)."""
        if self._stderr is None or self._stderr.closed:
            return ""
        self._stderr.seek(0, os.SEEK_END)
        size = self._stderr.tell()
        self._stderr.seek(max(0, size - limit))
        return self._stderr.read().decode(errors="replace")

    def health(self) -> int:
        try:
            with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.health_port}/healthz", timeout=2) as r:
                return int(r.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except OSError:
            return 0

    def wait_healthy(self, timeout: float = START_TIMEOUT_S) -> None:
        """Until ``/healthz`` says 200 from this process (``deploy.spawn.wait_healthy``)."""
        wait_healthy(self.proc, Endpoint("127.0.0.1", self.health_port), timeout,
                     name=f"gateway {self.gateway_id}",
                     log=lambda: f"its stderr ends:\n{self.stderr_tail(2000)}")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def terminate(self, timeout: float = 10.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._close_stderr()
        self._dir.cleanup()

    def _close_stderr(self) -> None:
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
