"""deploy/haproxy.cfg on one host, and HAProxy's runtime API.

The shipped config finds gateways through the container engine's DNS.
chat-cluster ``--haproxy`` and the deployment tests run the same file
outside a container engine with only its site-specific parts replaced
(``local_config``): the ``resolvers`` sections go, the ``server-template``
line becomes one ``server`` line per local gateway (same options, minus the
DNS ones, with that gateway's health port), the chat frontend binds the
given address, the stats socket moves to the given path, and the other
frontends (the HTTP stats page) go. Timeouts, balancing and health checks
are kept as written, so what runs is what ships.
"""

from __future__ import annotations

import csv
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from protocol.address import Address

TEMPLATE = Path(__file__).with_name("haproxy.cfg")
"""The config the ``lb`` service of docker-compose.yml runs."""

CHAT_FRONTEND = "chat"
BACKEND = "gateways"

_SECTIONS = frozenset({
    "global", "defaults", "frontend", "backend", "listen", "resolvers", "peers",
    "userlist", "mailers", "program", "http-errors", "ring", "cache",
})
_DNS_OPTIONS = frozenset({
    "resolvers", "init-addr", "resolve-prefer", "resolve-opts", "resolve-net",
})


class HAProxyConfigError(ValueError):
    """The template lacks a part that ``local_config`` must replace."""


@dataclass(frozen=True, slots=True)
class LocalServer:
    """One gateway on this host: its chat address and its health port."""

    address: Address
    check_port: int


@dataclass(frozen=True, slots=True)
class ServerState:
    """One backend server as HAProxy sees it (a row of ``show stat``)."""

    name: str
    status: str
    """UP, DOWN, MAINT, DRAIN, or a transition such as "UP 1/2"."""
    address: str
    sessions: int
    """Connections open through this server now."""

    @property
    def up(self) -> bool:
        return self.status == "UP"


def _section_of(line: str) -> tuple[str, str] | None:
    words = line.split()
    if not words or words[0] not in _SECTIONS:
        return None
    return words[0], (words[1] if len(words) > 1 else "")


def _server_lines(template_line: str, servers: Sequence[LocalServer]) -> list[str]:
    indent = template_line[: len(template_line) - len(template_line.lstrip())]
    words = template_line.split()
    if len(words) < 4:
        raise HAProxyConfigError(f"malformed server-template line: {template_line.strip()!r}")
    prefix, options = words[1], words[4:]
    kept: list[str] = []
    skip_next = False
    for i, word in enumerate(options):
        if skip_next:
            skip_next = False
            continue
        if word in _DNS_OPTIONS:
            skip_next = True
            continue
        if word == "port" and i + 1 < len(options):
            skip_next = True
            kept.append("port {check_port}")
            continue
        kept.append(word)
    rest = " ".join(kept)
    return [
        f"{indent}server {prefix}{n} {_haproxy_address(s.address)} "
        + rest.replace("{check_port}", str(s.check_port))
        for n, s in enumerate(servers, start=1)
    ]


def _haproxy_address(address: Address) -> str:
    """``host:port`` as HAProxy reads it (an IPv6 host without brackets)."""
    return f"{address.host}:{address.port}"


def local_config(template: str, servers: Sequence[LocalServer], bind: Address,
                 stats_socket: Path) -> str:
    """``template`` (the text of deploy/haproxy.cfg) rewritten for gateways on this host."""
    out = ["# Generated from deploy/haproxy.cfg for gateways on this host (deploy/haproxy.py)."]
    section: tuple[str, str] = ("", "")
    found = {"bind": False, "server-template": False, "stats socket": False}
    for line in template.splitlines():
        header = _section_of(line)
        if header is not None:
            section = header
        kind, name = section
        if kind == "resolvers" or (kind in ("frontend", "listen") and name != CHAT_FRONTEND):
            continue
        words = line.split()
        if kind == "frontend" and words[:1] == ["bind"]:
            if not found["bind"]:
                out.append(f"    bind {_haproxy_address(bind)}")
            found["bind"] = True
        elif kind == "backend" and words[:1] == ["server-template"]:
            out.extend(_server_lines(line, servers))
            found["server-template"] = True
        elif kind == "global" and words[:2] == ["stats", "socket"] and len(words) > 2:
            out.append(line.replace(words[2], str(stats_socket), 1))
            found["stats socket"] = True
        else:
            out.append(line)
    missing = [what for what, seen in found.items() if not seen]
    if missing:
        raise HAProxyConfigError(f"template has no {', '.join(missing)} to replace")
    return "\n".join(out) + "\n"


def runtime_command(stats_socket: Path, command: str, timeout: float = 2.0) -> str:
    """Send one command to HAProxy's runtime API and return its whole answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(stats_socket))
        sock.sendall(command.encode() + b"\n")
        chunks: list[bytes] = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def server_states(stats_socket: Path, backend: str = BACKEND) -> dict[str, ServerState]:
    """The servers of ``backend`` by name, from ``show stat``."""
    text = runtime_command(stats_socket, "show stat").lstrip("# ")
    states: dict[str, ServerState] = {}
    for row in csv.DictReader(text.splitlines()):
        name = row.get("svname") or ""
        if row.get("pxname") != backend or name in ("FRONTEND", "BACKEND"):
            continue
        states[name] = ServerState(
            name=name,
            status=row.get("status") or "",
            address=row.get("addr") or "",
            sessions=int(row.get("scur") or 0),
        )
    return states
