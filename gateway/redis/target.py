"""Where Redis is: ``--redis-url`` parsed once, into a typed target.

Forms (the Centrifugo / redis-sentinel-url conventions):

- ``redis://[[user]:password@]host[:port][/db]`` and ``rediss://`` (TLS): one Redis,
  parsed by redis-py's own ``parse_url`` (so every query option it knows works);
- ``redis+sentinel://[[user]:password@]host:port[,host:port...]/MASTER_NAME[/DB]``:
  Sentinel. The password is Redis's; ``?sentinel_password=`` if the sentinels have
  their own;
- ``redis+cluster://[[user]:password@]host:port[,host:port...]``: Redis Cluster, the
  hosts being seed nodes;
- ``rediss+sentinel://`` and ``rediss+cluster://`` for TLS, with the query options of
  ``rediss://`` (``ssl_ca_certs``, ``ssl_cert_reqs``, ...).

A URL that does not parse raises ``TargetError`` with one line saying why; the
gateway prints it and stops. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from redis.connection import parse_url


class TargetError(ValueError):
    """The Redis URL cannot be used; the message is one line for the operator."""


@dataclass(frozen=True, slots=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Auth:
    username: str | None = None
    password: str | None = None


@dataclass(frozen=True, slots=True)
class Tls:
    """TLS towards Redis (and the sentinels): the ``rediss`` query options."""

    ca_certs: str | None = None
    cert_reqs: str = "required"
    certfile: str | None = None
    keyfile: str | None = None

    def redis_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of a redis-py connection with this TLS."""
        kwargs: dict[str, Any] = {"ssl": True, "ssl_cert_reqs": self.cert_reqs}
        if self.ca_certs:
            kwargs["ssl_ca_certs"] = self.ca_certs
        if self.certfile:
            kwargs["ssl_certfile"] = self.certfile
        if self.keyfile:
            kwargs["ssl_keyfile"] = self.keyfile
        return kwargs


@dataclass(frozen=True, slots=True)
class SingleTarget:
    """One Redis; ``url`` is given to redis-py as it is."""

    url: str
    kind: str = field(default="single", init=False)

    @property
    def default_min_replicas(self) -> int:
        return 0


@dataclass(frozen=True, slots=True)
class SentinelTarget:
    sentinels: tuple[HostPort, ...]
    master: str
    db: int = 0
    auth: Auth = Auth()
    sentinel_password: str | None = None
    tls: Tls | None = None
    kind: str = field(default="sentinel", init=False)

    @property
    def default_min_replicas(self) -> int:
        return 1


@dataclass(frozen=True, slots=True)
class ClusterTarget:
    seeds: tuple[HostPort, ...]
    auth: Auth = Auth()
    tls: Tls | None = None
    kind: str = field(default="cluster", init=False)

    @property
    def default_min_replicas(self) -> int:
        return 1


RedisTarget = SingleTarget | SentinelTarget | ClusterTarget

_TLS_OPTIONS = ("ssl_ca_certs", "ssl_cert_reqs", "ssl_certfile", "ssl_keyfile")


def _hosts(netloc: str, url: str) -> tuple[HostPort, ...]:
    """``host:port[,host:port...]`` (after any ``user:password@``)."""
    hosts = []
    for part in netloc.rpartition("@")[2].split(","):
        part = part.strip()
        if not part:
            raise TargetError(f"empty host in the Redis URL {redacted(url)!r}")
        if part.startswith("["):
            host, _, rest = part[1:].partition("]")
            port_text = rest.removeprefix(":")
        else:
            host, _, port_text = part.rpartition(":")
            if not host:
                host, port_text = port_text, ""
        try:
            default = 26379 if "sentinel" in url[:17] else 6379
            port = int(port_text) if port_text else default
        except ValueError:
            raise TargetError(
                f"bad port {port_text!r} in the Redis URL {redacted(url)!r}") from None
        if not 0 < port < 65536:
            raise TargetError(f"port {port} out of range in the Redis URL {redacted(url)!r}")
        hosts.append(HostPort(host, port))
    return tuple(hosts)


def _auth(netloc: str) -> Auth:
    if "@" not in netloc:
        return Auth()
    userinfo = netloc.rpartition("@")[0]
    user, sep, password = userinfo.partition(":")
    if not sep:
        return Auth(None, unquote(user) or None)
    return Auth(unquote(user) or None, unquote(password) or None)


def _tls(query: Mapping[str, list[str]]) -> Tls:
    def one(name: str) -> str | None:
        values = query.get(name)
        return values[-1] if values else None

    return Tls(ca_certs=one("ssl_ca_certs"), cert_reqs=(one("ssl_cert_reqs") or "required"),
               certfile=one("ssl_certfile"), keyfile=one("ssl_keyfile"))


def redacted(url: str) -> str:
    """The URL without its password, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return url
    netloc, slash, path = rest.partition("/")
    return f"{scheme}://{netloc.rpartition('@')[2]}{slash}{path}"


def parse_target(url: str) -> RedisTarget:
    """The target ``url`` names, or ``TargetError`` saying in one line what is wrong."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme in ("redis", "rediss", "unix"):
        try:
            parse_url(url)  # type: ignore[no-untyped-call]
        except ValueError as exc:
            raise TargetError(f"bad Redis URL {redacted(url)!r}: {exc}") from None
        return SingleTarget(url)
    if scheme not in ("redis+sentinel", "rediss+sentinel", "redis+cluster", "rediss+cluster"):
        raise TargetError(
            f"unsupported Redis URL {redacted(url)!r}: the scheme must be redis, rediss, "
            "redis+sentinel, rediss+sentinel, redis+cluster or rediss+cluster")
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    unknown = set(query) - set(_TLS_OPTIONS) - {"sentinel_password"}
    if unknown:
        raise TargetError(f"unknown option {sorted(unknown)[0]!r} in the Redis URL "
                          f"{redacted(url)!r}")
    tls = _tls(query) if scheme.startswith("rediss") else None
    if tls is None and any(name in query for name in _TLS_OPTIONS):
        raise TargetError(f"TLS options need rediss+...:// in the Redis URL {redacted(url)!r}")
    hosts = _hosts(parts.netloc, url)
    auth = _auth(parts.netloc)
    path = [p for p in parts.path.split("/") if p]
    if scheme.endswith("cluster"):
        if path:
            raise TargetError(f"a cluster URL has no path (Redis Cluster has one database): "
                              f"{redacted(url)!r}")
        if "sentinel_password" in query:
            raise TargetError(f"sentinel_password in a cluster URL {redacted(url)!r}")
        return ClusterTarget(hosts, auth, tls)
    if not path or len(path) > 2:
        raise TargetError(f"a sentinel URL names its master: redis+sentinel://host:port/"
                          f"MASTER_NAME[/DB], not {redacted(url)!r}")
    try:
        db = int(path[1]) if len(path) == 2 else 0
    except ValueError:
        raise TargetError(f"bad database {path[1]!r} in the Redis URL {redacted(url)!r}") from None
    sentinel_password = query.get("sentinel_password", [None])[-1]
    return SentinelTarget(hosts, unquote(path[0]), db, auth, sentinel_password, tls)


__all__ = [
    "Auth",
    "ClusterTarget",
    "HostPort",
    "RedisTarget",
    "SentinelTarget",
    "SingleTarget",
    "TargetError",
    "Tls",
    "parse_target",
    "redacted",
]
