"""What a ``ChatClient`` tells its caller: frozen, slotted event classes.

Events arrive on the client's reader thread (``on_event``) or in
``ChatClient.events``, in the order they happened. Room messages obey one
rule, so a view can simply append:

- the first time a room is synced in an epoch (first login, ``join``, or
  after ``EpochReset``), its retained messages come as one
  ``HistoryLoaded(older=False)``;
- every later message comes as one ``RoomMessage``, including the ones
  caught up after a reconnect;
- together they hold each message of the room exactly once, in id order.
  ``HistoryLoaded(older=True)`` answers ``history()`` (scroll-back) and only
  holds messages already delivered, for prepending.

Every ``send``/``dm`` ends in exactly one ``Acked`` or ``SendFailed`` (perhaps
after ``SendDelayed`` notes, while the server cannot take it).
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.errors import ProtocolError
from protocol.frames import DirectMessage, DmSummary, Message


@dataclass(frozen=True, slots=True)
class ClientEvent:
    """Base class of every client event."""


@dataclass(frozen=True, slots=True)
class Connected(ClientEvent):
    """Logged in; ``resumed`` after a reconnect that used the token and ``since``."""

    gateway: str
    name: str
    resumed: bool


@dataclass(frozen=True, slots=True)
class Disconnected(ClientEvent):
    """The connection ended (lost, silent, ``bye``/``shutdown``); a reconnect follows if enabled."""

    reason: str


@dataclass(frozen=True, slots=True)
class Reconnecting(ClientEvent):
    """About to try ``address`` after ``delay`` seconds; ``attempt`` counts from 1."""

    address: str
    delay: float
    attempt: int


@dataclass(frozen=True, slots=True)
class RoomMessage(ClientEvent):
    """A room message, delivered exactly once and in id order."""

    message: Message


@dataclass(frozen=True, slots=True)
class HistoryLoaded(ClientEvent):
    """A room's retained messages (``older=False``) or a scroll-back answer (``older=True``)."""

    room: str
    messages: tuple[Message, ...]
    complete: bool
    older: bool


@dataclass(frozen=True, slots=True)
class EpochReset(ClientEvent):
    """The room's sequence restarted (the broker lost it); a ``HistoryLoaded`` follows."""

    room: str
    epoch: str


@dataclass(frozen=True, slots=True)
class DirectReceived(ClientEvent):
    """A private message, to us or (as the sender's copy) from us."""

    dm: DirectMessage


@dataclass(frozen=True, slots=True)
class AccountState(ClientEvent):
    """Right after ``Connected`` when logged in to an account (protocol v1.1; a guest
    gets none): its conversations (``DmSummary``: with, epoch, last_id, read) and its
    rooms' read marks. Stored dms the client has not seen follow as ``DirectReceived``,
    exactly once and in id order per conversation."""

    account: bool
    dms: tuple[DmSummary, ...]
    read: dict[str, int]


@dataclass(frozen=True, slots=True)
class DmHistoryLoaded(ClientEvent):
    """Answer to ``ChatClient.dm_history``: older dms of the conversation with ``peer``,
    oldest first, for prepending (they were delivered before, or are older than the
    client's first)."""

    peer: str
    messages: tuple[DirectMessage, ...]
    complete: bool


@dataclass(frozen=True, slots=True)
class Registered(ClientEvent):
    """``register`` or ``passwd`` succeeded: ``name`` is an account, the client logs in
    with the new password from now on. A refusal comes as ``ServerError`` with code
    ``bad_password``, ``auth_failed``, ``rate_limited`` or ``name_taken``."""

    name: str


@dataclass(frozen=True, slots=True)
class MemberJoined(ClientEvent):
    room: str
    name: str


@dataclass(frozen=True, slots=True)
class MemberLeft(ClientEvent):
    room: str
    name: str


@dataclass(frozen=True, slots=True)
class Members(ClientEvent):
    """Answer to ``who()``: the room's members cluster-wide, sorted."""

    room: str
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Typing(ClientEvent):
    room: str
    name: str


@dataclass(frozen=True, slots=True)
class Acked(ClientEvent):
    """The gateway accepted the send or dm with this ref; ``id`` for room messages."""

    ref: str
    id: int | None


@dataclass(frozen=True, slots=True)
class SendFailed(ClientEvent):
    """The send or dm with this ref was refused, or abandoned on close (``SendAborted``)."""

    ref: str
    error: ProtocolError


@dataclass(frozen=True, slots=True)
class SendDelayed(ClientEvent):
    """The server could not take the send with this ref now (``unavailable``): it stays
    pending and is sent again until acknowledged, or fails after the client's hold time.

    Only with ``ChatClient(hold_unavailable=...)``.
    """

    ref: str
    error: ProtocolError


@dataclass(frozen=True, slots=True)
class ServerError(ClientEvent):
    """An ``error`` frame not tied to a pending send (a refused join, who, history ...)."""

    error: ProtocolError


@dataclass(frozen=True, slots=True)
class Closed(ClientEvent):
    """Final: ``close()``, ``bye``/``replaced``, a refused re-login, or reconnect disabled."""

    reason: str


__all__ = [
    "AccountState",
    "Acked",
    "ClientEvent",
    "Closed",
    "Connected",
    "DirectReceived",
    "Disconnected",
    "DmHistoryLoaded",
    "EpochReset",
    "HistoryLoaded",
    "MemberJoined",
    "MemberLeft",
    "Members",
    "Reconnecting",
    "Registered",
    "RoomMessage",
    "SendDelayed",
    "SendFailed",
    "ServerError",
    "Typing",
]
