"""The command line of chat-bench, turned into frozen option objects.

Every scenario takes the common options (where the gateways are, where
results and plots go) after its own name, so a command reads as
``chat-bench fanout --local 3 --receivers 200 --senders 10``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bench.population import Span, default_rooms, feasible_memberships
from deploy.local_cluster import REDIS_MODES
from protocol.address import Address
from protocol.address import parse_address as _parse_address
from protocol.errors import ProtocolError
from protocol.names import check_room

Mode = Literal["saturate", "rate"]
RoomsMode = Literal["rate", "step"]


@dataclass(frozen=True, slots=True)
class Common:
    """Where the gateways are and where the run's output goes."""

    gateways: tuple[Address, ...]
    local: int
    """Gateways to start for the run (with their own Redis); 0 means use ``gateways``."""
    results: Path | None
    plots: Path | None
    progress: bool
    gateway_rate: float
    gateway_burst: int
    max_outbound: int | None
    """--max-outbound of local gateways; None keeps the gateway's default."""
    concurrency: int
    """Logins in flight at once while a scenario connects its clients."""
    connect_timeout: float
    log_level: str
    cluster_dir: Path | None
    """Where a local cluster keeps data and logs (None: a temporary directory)."""
    redis_url: str | None = None
    """The Redis behind ``gateways``, asked for ``INFO cpu`` (CPU per message)."""
    redis_mode: str = "single"
    """The Redis topology a ``--local`` run starts: single, sentinel or cluster."""


@dataclass(frozen=True, slots=True)
class FanoutOptions:
    common: Common
    receivers: tuple[int, ...]
    senders: int
    mode: Mode
    rate: float
    window: int
    duration: float
    warmup: float
    size: int
    slow: int
    drain_timeout: float
    room: str | None


@dataclass(frozen=True, slots=True)
class IdleOptions:
    common: Common
    connections: tuple[int, ...]
    room_size: int
    """0: log in to no room; N: rooms of N members each."""
    hold: float
    ping_spread: float
    """Seconds over which each ping round is spread (0: every ping at once)."""
    ping_timeout: float


@dataclass(frozen=True, slots=True)
class StormOptions:
    common: Common
    connections: int
    """The cap: stop after this many logins."""
    background_rate: float
    """Messages/s of a fanout measured before and during the storm (0: none)."""
    receivers: int
    senders: int
    baseline: float
    room: str | None
    """Room the storm's clients join (None: no room)."""


@dataclass(frozen=True, slots=True)
class ResumeOptions:
    common: Common
    clients: int
    rate: float
    warmup: float
    after: float


@dataclass(frozen=True, slots=True)
class RoomsOptions:
    common: Common
    users: int
    rooms: int | None
    """None: the count that fits the two spans (``population.default_rooms``)."""
    room_size: Span
    rooms_per_user: Span
    mode: RoomsMode
    rate: float
    """Mode rate: messages/s across all users; mode step: the first step's rate."""
    duration: float
    """Seconds of sending (per step in mode step)."""
    warmup: float
    """Seconds at the start of each step whose latencies are not counted."""
    p99_ms: float
    """The latency a step must meet (send to every delivery, p99)."""
    factor: float
    resolution: float
    budget: float
    """Mode step: seconds the whole search may take; no step starts that would overrun it."""
    size: int
    seed: int
    drain_timeout: float


Options = FanoutOptions | IdleOptions | StormOptions | ResumeOptions | RoomsOptions


def parse_address(text: str) -> Address:
    """``host:port`` (``[v6]:port`` too) -> Address, or ValueError: the bench wants the
    port spelt out, and speaks plain TCP."""
    address = _parse_address(text, default_port=None)
    if address.tls:
        raise ValueError(f"chat-bench speaks plain TCP, not {text!r}")
    return address


def _addresses(text: str) -> tuple[Address, ...]:
    try:
        return tuple(parse_address(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("expected positive integers, e.g. 50,100,200")
    return values


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def _span(text: str) -> Span:
    try:
        return Span.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _room(text: str) -> str:
    try:
        return check_room(text)
    except ProtocolError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def _common_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    g = p.add_argument_group("where and what to report")
    where = g.add_mutually_exclusive_group()
    where.add_argument("--gateways", type=_addresses, default=(),
                       help="gateway addresses host:port,... to load (nothing is started)")
    where.add_argument("--local", type=int, default=0, metavar="N",
                       help="start a redis-server and N gateways for the run, stop them after")
    g.add_argument("--results", type=Path, default=None, metavar="FILE",
                   help="append one JSON line per run to FILE")
    g.add_argument("--plots", type=Path, default=None, metavar="DIR",
                   help="write PNG plots into DIR")
    g.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar on stderr")
    g.add_argument("--gateway-rate", type=_positive_float, default=100000.0,
                   help="--rate-per-s of local gateways (default %(default)s)")
    g.add_argument("--gateway-burst", type=_positive_int, default=100000,
                   help="--burst of local gateways (default %(default)s)")
    g.add_argument("--max-outbound", type=_positive_int, default=None, metavar="BYTES",
                   help="--max-outbound of local gateways (default: the gateway's)")
    g.add_argument("--concurrency", type=_positive_int, default=200,
                   help="logins in flight at once (default %(default)s)")
    g.add_argument("--connect-timeout", type=_positive_float, default=20.0,
                   help="seconds for one login (default %(default)s)")
    g.add_argument("--log-level", default="WARNING", type=str.upper,
                   choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    g.add_argument("--redis", dest="redis_mode", default="single", choices=list(REDIS_MODES),
                   help="Redis under --local gateways: one redis-server (default), sentinel "
                   "(a primary, 2 replicas, 3 sentinels; every send WAITs for a replica) or "
                   "cluster (Redis Cluster, 3 masters with a replica each)")
    g.add_argument("--cluster-dir", type=Path, default=None, metavar="DIR",
                   help="keep the local cluster's data and logs in DIR (default: a temp dir)")
    g.add_argument("--redis-url", default=None, metavar="URL",
                   help="the Redis behind --gateways, for its CPU per message (INFO cpu); "
                   "a --local cluster's own is used otherwise")
    return p


def build_parser() -> argparse.ArgumentParser:
    common = _common_parser()
    parser = argparse.ArgumentParser(
        prog="chat-bench", allow_abbrev=False,
        description="Load generator for ChatService gateways (docs/protocol.md v1).",
    )
    parser.add_argument("--version", action="version",
                        version=f"%(prog)s {importlib.metadata.version('chatservice')}")
    sub = parser.add_subparsers(dest="scenario", required=True, metavar="SCENARIO")

    f = sub.add_parser("fanout", parents=[common], allow_abbrev=False,
                       help="R receivers and S senders in one room",
                       description="R receivers and S senders in one room, spread round-robin "
                       "over the gateways. saturate: deliveries/s and loss; rate: latency.")
    f.add_argument("--receivers", type=_int_list, default=(200,),
                   help="receivers, or a sweep such as 50,100,200 (default 200)")
    f.add_argument("--senders", type=_positive_int, default=10)
    f.add_argument("--mode", choices=["saturate", "rate"], default="saturate")
    f.add_argument("--rate", type=_positive_float, default=None,
                   help="messages/s across all senders (mode rate)")
    f.add_argument("--window", type=_positive_int, default=32,
                   help="unacknowledged sends per sender (mode saturate, default %(default)s)")
    f.add_argument("--duration", type=_positive_float, default=10.0, help="seconds of sending")
    f.add_argument("--warmup", type=float, default=1.0,
                   help="seconds at the start whose latencies are not counted (mode rate)")
    f.add_argument("--size", type=int, default=64, help="characters of filler per text")
    f.add_argument("--slow", type=int, default=0,
                   help="extra members that never read (slow consumers), not counted")
    f.add_argument("--drain-timeout", type=_positive_float, default=5.0,
                   help="give up draining after this long without progress")
    f.add_argument("--room", type=_room, default=None, help="room (default: a fresh one)")

    i = sub.add_parser("idle", parents=[common], allow_abbrev=False,
                       help="memory per idle logged-in connection",
                       description="C logged-in connections: gateway RSS per connection "
                       "(local gateways) and whether every connection still answers ping.")
    i.add_argument("--connections", type=_int_list, default=(1000,),
                   help="connections, or a sweep such as 1000,10000")
    i.add_argument("--room-size", type=int, default=0,
                   help="0: no room; N: rooms of N members (default 0)")
    i.add_argument("--hold", type=float, default=5.0,
                   help="seconds to stay idle before the second ping round")
    i.add_argument("--ping-spread", type=float, default=5.0,
                   help="spread each ping round over this many seconds; 0 pings every "
                   "connection at once (default %(default)s)")
    i.add_argument("--ping-timeout", type=_positive_float, default=30.0,
                   help="seconds after the last ping to wait for answers")

    s = sub.add_parser("storm", parents=[common], allow_abbrev=False,
                       help="login storm until failure or a cap",
                       description="Open connections (connect, hello, welcome) as fast as "
                       "--concurrency allows until one fails or --connections succeed; "
                       "optionally measure a fanout's latency before and during the storm.")
    s.add_argument("--connections", type=_positive_int, default=1000, help="the cap")
    s.add_argument("--background-rate", type=float, default=0.0,
                   help="messages/s of a background fanout whose p99 is compared (0: none)")
    s.add_argument("--receivers", type=_positive_int, default=200)
    s.add_argument("--senders", type=_positive_int, default=10)
    s.add_argument("--baseline", type=_positive_float, default=3.0,
                   help="seconds of background latency measured before the storm")
    s.add_argument("--room", type=_room, default=None,
                   help="room the storm's clients join (default: none)")

    m = sub.add_parser("rooms", parents=[common], allow_abbrev=False,
                       help="many small rooms, Poisson senders: the rate that keeps p99 low",
                       description="U users in N small rooms (each user in several), "
                       "every user sending at random (Poisson) intervals; the aggregate "
                       "rate is fixed (mode rate) or stepped up to the highest whose "
                       "send-to-delivery p99 meets --p99-ms (mode step). Reports CPU per "
                       "message of gateways and Redis and checks that every acked message "
                       "reached every member of its room exactly once.")
    m.add_argument("--users", type=_positive_int, default=2000)
    m.add_argument("--rooms", type=_positive_int, default=None,
                   help="rooms (default: the count that fits --room-size and "
                   "--rooms-per-user, 667 for the defaults)")
    m.add_argument("--room-size", type=_span, default=Span(5, 10), metavar="MIN-MAX",
                   help="members per room (default 5-10)")
    m.add_argument("--rooms-per-user", type=_span, default=Span(2, 3), metavar="MIN-MAX",
                   help="rooms each user is in (default 2-3)")
    m.add_argument("--mode", choices=["rate", "step"], default="step")
    m.add_argument("--rate", type=_positive_float, default=500.0,
                   help="messages/s across all users (mode rate), or the first step's "
                   "(mode step; default %(default)s)")
    m.add_argument("--duration", type=_positive_float, default=5.0,
                   help="seconds of sending, per step in mode step (default %(default)s)")
    m.add_argument("--warmup", type=float, default=1.0,
                   help="seconds at the start of each step whose latencies are not counted")
    m.add_argument("--p99-ms", type=_positive_float, default=10.0,
                   help="the p99 a step must meet (default %(default)s)")
    m.add_argument("--factor", type=float, default=1.5,
                   help="mode step: rate multiplier while steps pass (default %(default)s)")
    m.add_argument("--resolution", type=_positive_float, default=0.1,
                   help="mode step: stop when the lowest failing rate is within this "
                   "fraction of the best passing one (default %(default)s)")
    m.add_argument("--budget", type=_positive_float, default=120.0,
                   help="mode step: seconds the search may take (default %(default)s)")
    m.add_argument("--size", type=int, default=32, help="characters of filler per text")
    m.add_argument("--seed", type=int, default=1,
                   help="seed of the population and of the send schedule (default 1)")
    m.add_argument("--drain-timeout", type=_positive_float, default=5.0,
                   help="give up draining a step after this long without progress")

    r = sub.add_parser("resume", parents=[common], allow_abbrev=False,
                       help="resume time after a gateway is killed (needs --local >= 2)",
                       description="Clients on gateway 1 while a sender on gateway 2 sends; "
                       "gateway 1 is killed and the clients resume elsewhere with since/token.")
    r.add_argument("--clients", type=_positive_int, default=20)
    r.add_argument("--rate", type=_positive_float, default=200.0, help="messages/s sent")
    r.add_argument("--warmup", type=_positive_float, default=1.0,
                   help="seconds of traffic before the kill")
    r.add_argument("--after", type=_positive_float, default=2.0,
                   help="seconds of traffic after the kill")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> Options:
    """Parse and cross-check; argparse exits with a message on bad input."""
    parser = build_parser()
    a = parser.parse_args(argv)
    if not a.gateways and a.local <= 0:
        parser.error("say where the gateways are: --gateways host:port,... or --local N")
    if a.redis_mode != "single" and a.local <= 0:
        parser.error("--redis sentinel|cluster chooses the Redis a --local run starts; "
                     "for given --gateways, name their Redis with --redis-url")
    common = Common(
        gateways=a.gateways, local=max(a.local, 0), results=a.results, plots=a.plots,
        progress=a.progress, gateway_rate=a.gateway_rate, gateway_burst=a.gateway_burst,
        max_outbound=a.max_outbound, concurrency=a.concurrency,
        connect_timeout=a.connect_timeout, log_level=a.log_level, cluster_dir=a.cluster_dir,
        redis_url=a.redis_url, redis_mode=a.redis_mode,
    )
    if a.scenario == "fanout":
        if a.mode == "rate" and a.rate is None:
            parser.error("--mode rate needs --rate (messages/s across all senders)")
        if a.size < 0 or a.slow < 0 or a.warmup < 0:
            parser.error("--size, --slow and --warmup cannot be negative")
        if a.mode == "rate" and a.warmup >= a.duration:
            parser.error("--warmup must be shorter than --duration")
        return FanoutOptions(
            common=common, receivers=a.receivers, senders=a.senders, mode=a.mode,
            rate=a.rate or 0.0, window=a.window, duration=a.duration, warmup=a.warmup,
            size=a.size, slow=a.slow, drain_timeout=a.drain_timeout, room=a.room,
        )
    if a.scenario == "idle":
        if a.room_size < 0 or a.hold < 0 or a.ping_spread < 0:
            parser.error("--room-size, --hold and --ping-spread cannot be negative")
        return IdleOptions(common=common, connections=a.connections, room_size=a.room_size,
                           hold=a.hold, ping_spread=a.ping_spread, ping_timeout=a.ping_timeout)
    if a.scenario == "storm":
        if a.background_rate < 0:
            parser.error("--background-rate cannot be negative")
        return StormOptions(
            common=common, connections=a.connections, background_rate=a.background_rate,
            receivers=a.receivers, senders=a.senders, baseline=a.baseline, room=a.room,
        )
    if a.scenario == "rooms":
        if a.size < 0 or a.warmup < 0:
            parser.error("--size and --warmup cannot be negative")
        if a.warmup >= a.duration:
            parser.error("--warmup must be shorter than --duration")
        if a.factor <= 1:
            parser.error("--factor must be above 1")
        rooms = a.rooms or default_rooms(a.users, a.room_size, a.rooms_per_user)
        if a.room_size.high > a.users or a.rooms_per_user.high > rooms \
                or not feasible_memberships(a.users, rooms, a.room_size, a.rooms_per_user):
            parser.error(
                f"{rooms} rooms of {a.room_size} members cannot hold {a.users} users in "
                f"{a.rooms_per_user} rooms each (about "
                f"{default_rooms(a.users, a.room_size, a.rooms_per_user)} rooms would)")
        return RoomsOptions(
            common=common, users=a.users, rooms=a.rooms, room_size=a.room_size,
            rooms_per_user=a.rooms_per_user, mode=a.mode, rate=a.rate, duration=a.duration,
            warmup=a.warmup, p99_ms=a.p99_ms, factor=a.factor, resolution=a.resolution,
            budget=a.budget, size=a.size, seed=a.seed, drain_timeout=a.drain_timeout,
        )
    if a.local < 2:
        parser.error("resume kills a gateway it started: it needs --local 2 or more")
    return ResumeOptions(common=common, clients=a.clients, rate=a.rate, warmup=a.warmup,
                         after=a.after)
