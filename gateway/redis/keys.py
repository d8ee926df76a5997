"""Every Redis key and pub/sub channel of ChatService, in one place (payloads:
``gateway.redis.payloads``).

docs/architecture.md has the tables; this module is their only spelling.
Every key carries a hash tag: a room's ``{room:<room>}``, a name's
``{user:<lower>}``, a gateway's ``{gw:<id>}``, the liveness state's ``{liveness}``,
and each Lua script touches the keys of one tag only, so every script runs
on Redis Cluster (where a script may only touch one slot; docs/architecture.md,
"Keys per slot"). User names are always keyed by ``protocol.names.name_key``
(case-folded, look-alikes folded), since names are unique up to case and
look-alikes: ``lower(name)`` here, in ``gateway/redis/lua/`` and in
docs/architecture.md means that key, never ``str.lower``. Pure functions, no I/O.
"""

from __future__ import annotations

from protocol.names import name_key

LIVENESS_TAG = "{liveness}"
"""The hash tag of the liveness state: every gateway's heartbeat, the pulse and the grace share
one slot, so one script judges any number of gateways against one clock and one grace
(docs/architecture.md, "Liveness")."""

GATEWAYS = f"{LIVENESS_TAG}:gateways"
"""zset: gateway id -> last heartbeat, ms since the epoch (gateway clock)."""

GRACE = f"{LIVENESS_TAG}:grace"
"""string, PX lease: while it exists every registered gateway counts as alive. Opened by the
first script that finds no ``PULSE``: nobody reached Redis for a lease (an outage)."""

PULSE = f"{LIVENESS_TAG}:pulse"
"""string, PX lease: renewed by every heartbeat; gone when no gateway beat for a lease,
measured by Redis's own clock."""


def room_tag(room: str) -> str:
    return f"{{room:{room}}}"


def room_seq(room: str) -> str:
    """string: the last message id assigned in the room."""
    return f"{room_tag(room)}:seq"


def room_epoch(room: str) -> str:
    """string: the room's epoch, created with SET NX by whoever touches the room first."""
    return f"{room_tag(room)}:epoch"


def room_log(room: str) -> str:
    """list: the newest ``history`` message lines, oldest first."""
    return f"{room_tag(room)}:log"


def room_members(room: str) -> str:
    """hash: lower(name) -> ``<gateway id>|<Name>``."""
    return f"{room_tag(room)}:members"


def room_ref(room: str, name: str, ref: str) -> str:
    """string with a TTL: the id of the message ``name`` first sent with ``ref``."""
    return f"{room_tag(room)}:ref:{name_key(name)}:{ref}"


def room_channel(room: str) -> str:
    """The room's pub/sub channel (messages, joined/left, typing)."""
    return f"{room_tag(room)}:ch"


_ROOM_CHANNEL_HEAD = b"{room:"
_ROOM_CHANNEL_TAIL = b"}:ch"


def room_of_channel(channel: bytes) -> str | None:
    """The room whose channel this is (``room_channel``), None for any other channel."""
    if channel.startswith(_ROOM_CHANNEL_HEAD) and channel.endswith(_ROOM_CHANNEL_TAIL):
        return channel[len(_ROOM_CHANNEL_HEAD):-len(_ROOM_CHANNEL_TAIL)].decode()
    return None


def user(name: str) -> str:
    """hash: ``name``, ``gw``, ``sid``, ``token`` (sha256 hex) of the name's holder."""
    return f"{{user:{name_key(name)}}}"


def user_rooms(name: str) -> str:
    """set: the rooms where ``name`` has a membership (in ``room_members``), whatever the
    gateway: a takeover moves them all at once."""
    return f"{user(name)}:rooms"


def user_new_rooms(name: str) -> str:
    """hash with a TTL: ``tokens``, ``at``: the name's bucket of new rooms (``lua/new_rooms.lua``);
    gone once full again. Not a ``{user:...}`` key (those live only while the name is held),
    but in the same hash slot as the name's keys."""
    return f"chat:newrooms:{user(name)}"


def dm_ref(sender: str, ref: str) -> str:
    """string with a TTL: ``pending`` or ``sent``, the live dm ``sender`` sent with ``ref``
    (to whomever: a ref is the sender's). In the sender's slot."""
    return f"{user(sender)}:dmref:{ref}"


def gateway_tag(gateway_id: str) -> str:
    """``{gw:<id>}``: the hash tag of every key and of the channel of one gateway."""
    return f"{{gw:{gateway_id}}}"


def gateway_channel(gateway_id: str) -> str:
    """A gateway's own channel: dms, name losses, probes (sharded on Redis Cluster)."""
    return f"{gateway_tag(gateway_id)}:ch"


def gateway_members(gateway_id: str) -> str:
    """hash: ``<room>|<lower(name)>`` -> 1, the memberships the gateway holds (a superset:
    written before the room's record, removed after it)."""
    return f"{gateway_tag(gateway_id)}:members"


def gateway_names(gateway_id: str) -> str:
    """set: lower(name) of every name the gateway holds (a superset, as ``gateway_members``)."""
    return f"{gateway_tag(gateway_id)}:names"


def gateway_instance(gateway_id: str) -> str:
    """string, PX lease: the nonce of the process running the gateway (renewed by its
    heartbeats), or ``~stopped`` for a lease after its graceful shutdown."""
    return f"{gateway_tag(gateway_id)}:instance"


def gateway_reaper(gateway_id: str) -> str:
    """string with a TTL: the lock of whoever cleans up after the (dead) gateway; while it is
    held the gateway does not beat (it would put back what is being dropped)."""
    return f"{gateway_tag(gateway_id)}:reaper"


def gateway_wait(gateway_id: str) -> str:
    """string with a TTL: written by the publisher before each ``WAIT`` (its value means
    nothing), so the connection's replication offset covers the batch."""
    return f"{gateway_tag(gateway_id)}:wait"


def membership(room: str, name: str) -> str:
    """A field of ``gateway_members``: ``<room>|<lower(name)>``."""
    return f"{room}|{name_key(name)}"


def parse_membership(field: str) -> tuple[str, str]:
    """``<room>|<lower(name)>`` -> (room, lower name). Room names hold no ``|``."""
    room, sep, lower = field.partition("|")
    if not sep or not room or not lower:
        raise ValueError(f"not a membership field: {field!r}")
    return room, lower


__all__ = [
    "GATEWAYS",
    "GRACE",
    "LIVENESS_TAG",
    "PULSE",
    "dm_ref",
    "gateway_channel",
    "gateway_instance",
    "gateway_members",
    "gateway_names",
    "gateway_reaper",
    "gateway_tag",
    "gateway_wait",
    "membership",
    "parse_membership",
    "room_channel",
    "room_epoch",
    "room_log",
    "room_members",
    "room_of_channel",
    "room_ref",
    "room_seq",
    "room_tag",
    "user",
    "user_new_rooms",
    "user_rooms",
]
