"""Every pub/sub payload of ChatService: its tag and its shape, built and read here only.

The first byte of a payload says what follows. Lua scripts that publish get
their tag (or the whole payload) as an argument from their builder
(``gateway.redis.scripts``), so no script spells one; what the broker publishes
itself (a dm, a name lost, typing, a probe) is built here too. Lines are protocol
lines without their newline; the subscriber adds it once per batch. Channels are
named in ``gateway.redis.keys``.

| on | payload | meaning |
|---|---|---|
| a room channel | ``M<epoch>|<id>|<message line>`` | a stored room message |
| a room channel | ``E<joined or left line>`` | presence, the exact line for clients |
| a room channel | ``T<lower(name)>|<typing line>`` | typing (not for the typist) |
| a gateway channel | ``D<lower(to)>|<dm line>`` | a dm for a user on that gateway |
| a gateway channel | ``K<lower(name)>|<session id>`` | that session lost its name |
| a gateway channel | ``P<nonce>`` | the gateway's own liveness probe |

Pure functions, no I/O.
"""

from __future__ import annotations

MESSAGE = b"M"
EVENT = b"E"
TYPING = b"T"
DM = b"D"
KICK = b"K"
PROBE = b"P"


def event(line: bytes) -> bytes:
    return EVENT + line


def typing(lower_name: str, line: bytes) -> bytes:
    return TYPING + lower_name.encode() + b"|" + line


def dm(lower_to: str, line: bytes) -> bytes:
    """The ``D`` payload of a dm line for the user ``lower_to`` on the gateway it goes to."""
    return DM + lower_to.encode() + b"|" + line


def kick(lower_name: str, session_id: str) -> bytes:
    """The ``K`` payload: session ``session_id`` lost the name ``lower_name``."""
    return KICK + lower_name.encode() + b"|" + session_id.encode()


def probe(nonce: str) -> bytes:
    return PROBE + nonce.encode()


def read_message(payload: bytes) -> tuple[bytes, int, bytes]:
    """An ``M`` payload (the caller checked the tag): (epoch, id, line). A plain tuple: the
    subscriber reads one per message of every burst."""
    epoch, raw_id, line = payload[1:].split(b"|", 2)
    return epoch, int(raw_id), line


def read_addressed(payload: bytes) -> tuple[str, bytes]:
    """A ``T``, ``D`` or ``K`` payload: (lower name, the rest)."""
    who, rest = payload[1:].split(b"|", 1)
    return who.decode(), rest


__all__ = [
    "DM",
    "EVENT",
    "KICK",
    "MESSAGE",
    "PROBE",
    "TYPING",
    "dm",
    "event",
    "kick",
    "probe",
    "read_addressed",
    "read_message",
    "typing",
]
