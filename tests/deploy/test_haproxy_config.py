"""deploy/haproxy.cfg: accepted by haproxy itself, and shaped as the issue asks.

The derived local config (deploy/haproxy.py) must differ from the shipped
one only where the container engine's DNS cannot work on one host, so the topology tests
exercise the real timeouts, balancing and health checks.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from deploy.haproxy import TEMPLATE, HAProxyConfigError, LocalServer, local_config
from protocol.address import Address
from tests.conftest import require_program

Sections = dict[tuple[str, str], list[str]]
SECTION_WORDS = ("global", "defaults", "frontend", "backend", "listen", "resolvers")


def sections(text: str) -> Sections:
    """Section (kind, name) -> its directive lines, comments and blanks dropped."""
    out: Sections = {}
    current: list[str] | None = None
    for line in text.splitlines():
        stripped = line.split("#", 1)[0].strip()
        if not stripped:
            continue
        words = stripped.split()
        if words[0] in SECTION_WORDS:
            current = out.setdefault((words[0], words[1] if len(words) > 1 else ""), [])
        elif current is not None:
            current.append(" ".join(words))
    return out


def haproxy_check(config: Path) -> subprocess.CompletedProcess[str]:
    haproxy = require_program("haproxy", "haproxy")
    return subprocess.run([haproxy, "-c", "-f", str(config)], capture_output=True, text=True,
                          timeout=30, check=False)


SERVERS = [LocalServer(Address("127.0.0.1", 15050 + i), 18050 + i) for i in range(3)]


def derived(tmp_path: Path) -> str:
    return local_config(TEMPLATE.read_text(), SERVERS, Address("127.0.0.1", 15000),
                        tmp_path / "admin.sock")


def test_haproxy_accepts_the_shipped_config() -> None:
    """`haproxy -c` needs no DNS here: servers start unresolved (init-addr none)."""
    result = haproxy_check(TEMPLATE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_haproxy_accepts_the_derived_local_config(tmp_path: Path) -> None:
    config = tmp_path / "haproxy.cfg"
    config.write_text(derived(tmp_path))
    result = haproxy_check(config)
    assert result.returncode == 0, result.stdout + result.stderr


def test_haproxy_rejects_a_broken_copy(tmp_path: Path) -> None:
    """The check is real: a misspelt balance algorithm is refused."""
    config = tmp_path / "haproxy.cfg"
    config.write_text(TEMPLATE.read_text().replace("balance leastconn", "balance leastconns"))
    assert haproxy_check(config).returncode != 0


def test_tcp_mode_leastconn_and_http_health_checks_on_8050() -> None:
    s = sections(TEMPLATE.read_text())
    assert "mode tcp" in s[("defaults", "")]
    backend = s[("backend", "gateways")]
    assert "balance leastconn" in backend
    assert "option httpchk" in backend
    assert "http-check send meth GET uri /healthz" in backend
    assert "http-check expect status 200" in backend
    template = [line for line in backend if line.startswith("server-template")]
    assert len(template) == 1
    words = template[0].split()
    assert words[1:4] == ["gw", "10", "gateway:5050"]
    options = " ".join(words[4:])
    for wanted in ("check", "port 8050", "resolvers docker", "init-addr none"):
        assert wanted in options


def test_replicas_found_through_the_containers_own_resolver() -> None:
    """No fixed address (Docker's 127.0.0.11): the resolver of /etc/resolv.conf, so
    the file works on Docker and on podman (aardvark-dns) alike."""
    resolvers = sections(TEMPLATE.read_text())[("resolvers", "docker")]
    assert "parse-resolv-conf" in resolvers
    assert not [line for line in resolvers if line.startswith("nameserver")]


def test_frontend_listens_on_5050_for_the_gateways() -> None:
    s = sections(TEMPLATE.read_text())
    frontend = s[("frontend", "chat")]
    assert "bind :5050" in frontend
    assert "default_backend gateways" in frontend


def test_chat_timeouts_outlast_the_idle_and_ping_periods() -> None:
    """Clients ping every 30 s; HAProxy must not cut a quiet but live connection first."""
    defaults = sections(TEMPLATE.read_text())[("defaults", "")]
    timeouts = dict(line.split()[1:3] for line in defaults if line.startswith("timeout "))

    def seconds(value: str) -> float:
        units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
        for unit in ("ms", "s", "m", "h"):
            if value.endswith(unit):
                return float(value[: -len(unit)]) * units[unit]
        return float(value) / 1000

    assert seconds(timeouts["client"]) > 90
    assert seconds(timeouts["server"]) > 90


def test_derived_config_changes_only_the_site_specific_lines(tmp_path: Path) -> None:
    shipped = sections(TEMPLATE.read_text())
    local = sections(derived(tmp_path))
    assert ("resolvers", "docker") not in local
    assert ("frontend", "stats") not in local
    assert local[("defaults", "")] == shipped[("defaults", "")]
    assert local[("frontend", "chat")] == [
        "bind 127.0.0.1:15000" if line.startswith("bind ") else line
        for line in shipped[("frontend", "chat")]
    ]
    shipped_backend = [x for x in shipped[("backend", "gateways")]
                       if not x.startswith("server-template")]
    local_backend = [x for x in local[("backend", "gateways")] if not x.startswith("server ")]
    assert local_backend == shipped_backend
    servers = [x for x in local[("backend", "gateways")] if x.startswith("server ")]
    assert servers == [
        "server gw1 127.0.0.1:15050 check port 18050",
        "server gw2 127.0.0.1:15051 check port 18051",
        "server gw3 127.0.0.1:15052 check port 18052",
    ]
    assert f"stats socket {tmp_path / 'admin.sock'} mode 600 level admin" in local[("global", "")]


def test_derivation_refuses_a_template_without_server_template() -> None:
    text = "\n".join(line for line in TEMPLATE.read_text().splitlines()
                     if "server-template" not in line)
    with pytest.raises(HAProxyConfigError, match="server-template"):
        local_config(text, SERVERS, Address("127.0.0.1", 1), Path("/tmp/x.sock"))
