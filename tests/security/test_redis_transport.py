"""The gateway's own link to Redis: a password in the URL, and TLS with ``rediss://``.

A gateway with the right password works end to end (its commands and its
pub/sub connection both authenticate); one with a wrong password says so in
plain words at start, stays unhealthy, refuses logins with ``unavailable``
and never writes the password to its log. TLS needs a redis-server built
with it: the test looks for one and skips, saying why, when there is none.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import ConstantBackoff, NoBackoff
from redis.retry import Retry

from deploy.local_cluster import free_port
from deploy.local_cluster import redis_server_binary as redis_binary
from gateway.server import Gateway, run_gateway
from tests.conftest import REQUIRE_SYSTEM, Connect
from tests.security.conftest import Pki
from tests.support.gateways import config
from tests.support.waiting import wait_for

PASSWORD = "s3cret-7f2a"
WRONG = "n0t-the-password-91c4"


class RedisExited(RuntimeError):
    """redis-server stopped while starting; the message has its complaint."""


@contextmanager
def redis_process(binary: str, args: Sequence[str], client: redis.Redis) -> Iterator[None]:
    """A redis-server with extra ``args``, ready when ``client`` gets a PONG; killed after."""
    with tempfile.TemporaryDirectory(prefix="chat-redis-") as workdir:
        log = Path(workdir) / "redis.log"
        proc = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--dir", workdir, "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--logfile", str(log), *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 10
            while True:
                if proc.poll() is not None:
                    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                    raise RedisExited(f"redis-server exited: {err[-500:]}")
                try:
                    if client.ping():
                        break
                except redis.RedisError:
                    if time.monotonic() > deadline:
                        raise
                time.sleep(0.02)  # polling a process that is starting
            yield
        finally:
            client.close()
            proc.kill()
            proc.wait(10)
            if proc.stderr:
                proc.stderr.close()


def chat_works(connect: Connect, address: tuple[str, int]) -> None:
    """Two users log in; a message sent by one reaches the other through Redis pub/sub."""
    alice, bob = connect(address), connect(address)
    alice.hello("alice")
    bob.hello("bob")
    alice.recv_type("joined", name="bob")
    alice.send(type="send", room="lobby", text="through redis", ref="r1")
    assert alice.recv_type("ack", ref="r1")["id"] == 1
    assert bob.recv_type("message")["text"] == "through redis"


def in_process_gateway(redis_url: str) -> AbstractContextManager[Gateway]:
    """A gateway that stops before the test's Redis does (no reconnect noise at the end)."""
    return run_gateway(config(redis_url), backoff=ConstantBackoff(0.05))


def healthy(gw: Gateway) -> Callable[[], bool]:
    return lambda: gw.healthy


def health(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


@pytest.mark.slow
def test_redis_password_in_url_works_and_a_wrong_one_is_reported_clearly(
        connect: Connect, tmp_path: Path) -> None:
    port = free_port()
    with redis_process(redis_binary(), ["--port", str(port), "--requirepass", PASSWORD],
                       quick_client(port, password=PASSWORD)):
        with in_process_gateway(f"redis://:{PASSWORD}@127.0.0.1:{port}/0") as gw:
            chat_works(connect, gw.address)

        chat_port, health_port = free_port(), free_port()
        log = tmp_path / "gateway.log"
        with log.open("wb") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", "--host", "127.0.0.1", "--port", str(chat_port),
                 "--health-port", str(health_port), "--id", "wrongpw", "--log-level", "INFO",
                 "--redis-url", f"redis://:{WRONG}@127.0.0.1:{port}/0"],
                stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            wait_for(lambda: "event=redis_auth_failed" in log.read_text(), timeout=15,
                     what="a clear authentication error in the log")
            wait_for(lambda: health(health_port) == 503, timeout=10, what="an unhealthy gateway")
            client = connect(("127.0.0.1", chat_port))
            client.send(type="hello", name="carol")
            assert client.recv_type("error")["code"] == "unavailable"
        finally:
            proc.kill()
            proc.wait(10)
        text = log.read_text()
        assert "password" in text.split("event=redis_auth_failed", 1)[1].splitlines()[0]
        assert WRONG not in text, "the gateway logged the Redis password"


def redis_binaries() -> list[str]:
    """The tests' usual redis-server, then the system's (Debian's is built with TLS)."""
    # real file -> the name to run it by: Debian's is a multi-call binary that looks at
    # the name it was called by
    found: dict[str, str] = {}
    for binary in [redis_binary(), "/usr/bin/redis-server", "/usr/local/bin/redis-server"]:
        real = os.path.realpath(binary)
        if os.access(real, os.X_OK):
            found.setdefault(real, binary)
    return list(found.values())


def quick_client(port: int, **kw: Any) -> redis.Redis:
    """A client that fails at once while the server is still starting (no retries)."""
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, retry=Retry(NoBackoff(), 0),
                       **kw)


@pytest.mark.parametrize("trust", ["env", "url"])
def test_gateway_reaches_redis_over_tls_with_rediss_url(
        connect: Connect, pki: Pki, trust: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The CA comes from SSL_CERT_FILE (env) or from ``?ssl_ca_certs=`` (url); both the
    command pool and the pub/sub connection use it."""
    port = free_port()
    tls_args = ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(pki.cert_file),
                "--tls-key-file", str(pki.key_file), "--tls-ca-cert-file", str(pki.ca_file),
                "--tls-auth-clients", "no"]
    url = f"rediss://127.0.0.1:{port}/0"
    if trust == "env":
        monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca_file))
    else:
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        url += f"?ssl_ca_certs={pki.ca_file}"
    refusals = []
    for binary in redis_binaries():
        probe = quick_client(port, ssl=True, ssl_ca_certs=str(pki.ca_file))
        try:
            with redis_process(binary, tls_args, probe):
                with in_process_gateway(url) as gw:
                    wait_for(healthy(gw), timeout=10, what="a healthy gateway over TLS")
                    chat_works(connect, gw.address)
                return
        except RedisExited as exc:
            if "Bad directive" not in str(exc):
                raise
            refusals.append(binary)
    message = (f"no redis-server built with TLS here ({', '.join(refusals)} refuse "
               "--tls-port): install the Debian package 'redis-server' for the rediss:// test")
    if REQUIRE_SYSTEM:
        pytest.fail(message)
    pytest.skip(message)
