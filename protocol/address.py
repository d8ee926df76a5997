"""A gateway's address, ``host:port``: parsed and formatted in this one place.

``parse_address`` reads what users and configs write (``host``, ``host:port``,
``[v6]:port``, ``tcp://``/``tls://`` in front); ``str(address)`` writes it back
so that ``parse_address(str(a)) == a``. Pure, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PORT = 5050


@dataclass(frozen=True, slots=True)
class Address:
    """One gateway: ``host:port``, with TLS when ``tls``."""

    host: str
    port: int
    tls: bool = False

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'tls://' if self.tls else ''}{host}:{self.port}"


def parse_address(text: str, default_port: int | None = DEFAULT_PORT) -> Address:
    """``"host:port"``, ``"host"``, ``"tls://host:port"``, ``"tcp://..."``, ``"[::1]:5050"``.

    A missing port is ``default_port``; with ``default_port`` None it is an error.
    Raises ``ValueError`` for anything else.
    """
    rest = text.strip()
    tls = False
    if "://" in rest:
        scheme, rest = rest.split("://", 1)
        if scheme not in ("tcp", "tls"):
            raise ValueError(f"unknown scheme {scheme!r} in gateway address {text!r}")
        tls = scheme == "tls"
    if rest.startswith("["):
        host, sep, tail = rest[1:].partition("]")
        if not sep or (tail and not tail.startswith(":")):
            raise ValueError(f"bad gateway address {text!r}")
        port_text = tail[1:]
    else:
        host, _, port_text = rest.rpartition(":") if ":" in rest else (rest, "", "")
    if not host:
        raise ValueError(f"gateway address {text!r} has no host")
    if not port_text:
        if default_port is None:
            raise ValueError(f"gateway address {text!r} has no port")
        return Address(host, default_port, tls)
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad port in gateway address {text!r}")
    return Address(host, int(port_text), tls)


__all__ = ["DEFAULT_PORT", "Address", "parse_address"]
