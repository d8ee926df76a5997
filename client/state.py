"""The client's session state, with no I/O: server frames in, events and requests out.

``ClientState`` remembers, per room, the epoch and the last message id
delivered to the caller, and turns the frames of any number of successive
connections into one stream of events in which each room message appears
exactly once and in id order (PROTOCOL.md, "Ordering, resume and loss"):

- a duplicate (an id not above the last one) is dropped;
- a message ahead of a gap is held back and the gap is asked for with a
  ``history`` request (``before`` = the first held id); the answer fills it,
  and ids the gateway no longer keeps are skipped, so delivery never stalls;
- a ``history`` frame with an epoch unseen for the room resets it
  (``EpochReset``); one with the known epoch (a resumed login) only adds
  what is newer than the last id.

It also keeps every ``send``/``dm`` until its ``ack`` or ``error`` arrives,
so a new connection can resend them with the same ``ref``; with
``hold_unavailable`` an ``unavailable`` error (which PROTOCOL.md defines as
"not carried out") keeps the send too, to be sent again (``take_held``).
It builds the
``hello`` (rooms, ``since``, ``token``, ``password``) that resumes the session.

Conversations (protocol v1.1, accounts): per peer it remembers the epoch and
the last dm id delivered, resumes them with ``since`` ``"@name"`` as rooms,
and drops a stored dm it already delivered, so each arrives exactly once and
in id order across reconnects (the gateway fills gaps itself). A
conversation's ``history`` that nobody asked for is the login's catch-up:
its dms come as ``DirectReceived``; an answer to ``expect_dm_history`` comes
as ``DmHistoryLoaded``.

History answers carry no request id, so they are matched per room in the
order the requests were sent, which is the order a gateway answers in. The
class is not thread-safe: ``ChatClient`` owns one and guards it with its lock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from client import events as ev
from client.errors import SendAborted
from protocol import frames as fr
from protocol.errors import ErrorCode, ProtocolError
from protocol.limits import MAX_HISTORY_LIMIT, MAX_ROOMS_PER_SESSION
from protocol.names import CONVERSATION_PREFIX, LOBBY, check_room, name_key

MAX_HELD = 10_000
"""Messages held back per room behind a gap; beyond this the gap is given up."""

Outbound = fr.Send | fr.Dm


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one input caused: events for the caller, frames to send to the gateway."""

    events: tuple[ev.ClientEvent, ...] = ()
    requests: tuple[fr.ClientFrame, ...] = ()

    def __add__(self, other: Outcome) -> Outcome:
        return Outcome(self.events + other.events, self.requests + other.requests)


NOTHING = Outcome()


@dataclass(frozen=True, slots=True)
class _Query:
    """A ``history`` request awaiting its answer.

    ``fill_before`` is set for a gap fill (the answer holds the ids below it
    that we lack); ``None`` for the caller's scroll-back.
    """

    fill_before: int | None = None


@dataclass(slots=True)
class _Room:
    epoch: str | None = None
    last_id: int = 0
    synced: bool = False  # this connection's first history frame for the room has arrived
    held: dict[int, fr.Message] = field(default_factory=dict)
    queries: deque[_Query] = field(default_factory=deque)

    def filling(self) -> bool:
        return any(q.fill_before is not None for q in self.queries)


@dataclass(slots=True)
class _Conversation:
    peer: str
    epoch: str | None = None
    last_id: int = 0


def _by_id(messages: Iterable[fr.Message]) -> list[fr.Message]:
    """Messages sorted by id, each id once (the first seen wins)."""
    unique: dict[int, fr.Message] = {}
    for m in messages:
        unique.setdefault(m.id, m)
    return [unique[i] for i in sorted(unique)]


class ClientState:
    """Rooms, resume points, de-duplication and unacknowledged sends of one user."""

    def __init__(self, name: str, rooms: Iterable[str] = (LOBBY,), *,
                 hold_unavailable: bool = False, password: str | None = None) -> None:
        self.name = name
        self._password = password
        self._new_password: str | None = None  # sent in register/passwd, not yet answered
        self._account = False
        self._dms: dict[str, _Conversation] = {}  # peer name_key -> conversation
        self._dm_queries: dict[str, int] = {}  # peer name_key -> dm history answers awaited
        self._rooms: dict[str, _Room] = {room: _Room() for room in dict.fromkeys(rooms)}
        self._pending: dict[str, Outbound] = {}
        self._token: str | None = None
        self._hold_unavailable = hold_unavailable
        self._held: dict[str, None] = {}  # refs answered unavailable, to send again (in order)

    # ------------------------------------------------------------------ queries

    @property
    def rooms(self) -> tuple[str, ...]:
        """The rooms the user is in (or will be once logged in), in joining order."""
        return tuple(self._rooms)

    @property
    def token(self) -> str | None:
        return self._token

    @property
    def pending(self) -> tuple[Outbound, ...]:
        """Sends and dms not yet acknowledged, oldest first."""
        return tuple(self._pending.values())

    @property
    def account(self) -> bool:
        """Logged in to an account (as the last ``welcome`` said, or since ``Registered``)."""
        return self._account

    @property
    def has_password(self) -> bool:
        return self._password is not None

    def dm_position(self, peer: str) -> fr.Position | None:
        """The resume point of the conversation with ``peer``, once known."""
        conv = self._dms.get(name_key(peer))
        if conv is None or conv.epoch is None:
            return None
        return fr.Position(conv.epoch, conv.last_id)

    def position(self, room: str) -> fr.Position | None:
        """The resume point of ``room``: its epoch and last delivered id, once known."""
        r = self._rooms.get(room)
        if r is None or r.epoch is None:
            return None
        return fr.Position(r.epoch, r.last_id)

    def hello(self) -> fr.Hello:
        """The ``hello`` that logs in, or resumes with ``token`` and ``since``.

        Raises ``ProtocolError`` (``bad_name``/``bad_room``) for invalid names.
        """
        since = {
            room: fr.Position(r.epoch, r.last_id)
            for room, r in self._rooms.items()
            if r.epoch is not None
        }
        since.update({
            CONVERSATION_PREFIX + conv.peer: fr.Position(conv.epoch, conv.last_id)
            for conv in self._dms.values()
            if conv.epoch is not None
        })
        return fr.Hello(self.name, tuple(self._rooms), since, self._token, self._password)

    def expect_password(self, password: str) -> None:
        """A ``register`` or ``passwd`` with ``password`` was just sent: log in with it
        from its ``registered`` on."""
        self._new_password = password

    def expect_dm_history(self, peer: str) -> None:
        """Note a conversation scroll-back request just sent."""
        key = name_key(peer)
        self._dm_queries[key] = self._dm_queries.get(key, 0) + 1

    # ------------------------------------------------------------ caller's side

    def join(self, room: str) -> bool:
        """Add ``room``; False if already in it. Raises ``ProtocolError`` (``bad_room``)."""
        check_room(room)
        if room in self._rooms:
            return False
        if len(self._rooms) >= MAX_ROOMS_PER_SESSION:
            raise ProtocolError(
                ErrorCode.BAD_ROOM, f"a session is in at most {MAX_ROOMS_PER_SESSION} rooms"
            )
        self._rooms[room] = _Room()
        return True

    def leave(self, room: str) -> bool:
        """Forget ``room``: a later join starts it afresh. False if not in it."""
        return self._rooms.pop(room, None) is not None

    def expect_history(self, room: str) -> bool:
        """Note a scroll-back request just sent; False if the room is unknown."""
        r = self._rooms.get(room)
        if r is None:
            return False
        r.queries.append(_Query())
        return True

    def add_pending(self, frame: Outbound) -> None:
        """Track a send or dm until acknowledged; it must carry a new ``ref``."""
        if frame.ref is None or frame.ref in self._pending:
            raise ValueError("a tracked send needs a ref that is not already pending")
        self._pending[frame.ref] = frame

    def take_held(self) -> tuple[Outbound, ...]:
        """The sends answered ``unavailable`` and held: send them again now (same ``ref``)."""
        frames = tuple(self._pending[ref] for ref in self._held if ref in self._pending)
        self._held.clear()
        return frames

    @property
    def held(self) -> tuple[str, ...]:
        """Refs of sends waiting to be sent again after ``unavailable``."""
        return tuple(ref for ref in self._held if ref in self._pending)

    def give_up(self, ref: str, error: ProtocolError) -> tuple[ev.SendFailed, ...]:
        """End a pending send with ``error`` (it was held too long)."""
        self._held.pop(ref, None)
        if self._pending.pop(ref, None) is None:
            return ()
        return (ev.SendFailed(ref, error),)

    def abort_pending(self) -> tuple[ev.SendFailed, ...]:
        """End every pending send with ``SendFailed(SendAborted)``: the client is closing."""
        failed = tuple(ev.SendFailed(ref, SendAborted(ref=ref)) for ref in self._pending)
        self._pending.clear()
        return failed

    # ---------------------------------------------------------- connection side

    def on_welcome(self, welcome: fr.Welcome, hello: fr.Hello) -> Outcome:
        """Logged in with ``hello``: adopt the session and say what to send first.

        The requests reconcile rooms joined or left while the login was under
        way, then resend every pending send with its original ``ref``.
        """
        resumed = self._token is not None
        self._token = welcome.token
        granted = set(welcome.rooms)
        requested = set(hello.rooms)
        requests: list[fr.ClientFrame] = []
        for room in list(self._rooms):
            if room not in requested:
                requests.append(fr.Join(room))
            elif room not in granted:
                del self._rooms[room]  # the gateway did not grant it
        requests.extend(fr.Leave(room) for room in welcome.rooms if room not in self._rooms)
        requests.extend(self._pending.values())
        self._held.clear()  # resent just now
        connected = ev.Connected(welcome.gateway, welcome.name, resumed)
        self._account = welcome.account
        for summary in welcome.dms:
            self._dms.setdefault(name_key(summary.peer), _Conversation(summary.peer))
        if not welcome.account:
            return Outcome((connected,), tuple(requests))
        info = ev.AccountState(welcome.account, welcome.dms, dict(welcome.read))
        return Outcome((connected, info), tuple(requests))

    def on_disconnect(self) -> None:
        """The connection ended: its held messages and open requests die with it.

        What matters comes back on the next login (``since`` re-delivers held
        messages); scroll-back requests are the caller's to repeat.
        """
        for r in self._rooms.values():
            r.synced = False
            r.held.clear()
            r.queries.clear()
        self._dm_queries.clear()

    def handle(self, frame: fr.ServerFrame) -> Outcome:
        """Apply one frame received after ``welcome``."""
        match frame:
            case fr.Message():
                return self._on_message(frame)
            case fr.History():
                return self._on_history(frame)
            case fr.Ack(ref=ref, id=msg_id):
                if self._pending.pop(ref, None) is None:
                    return NOTHING  # a second ack for a resent ref, or not ours
                return Outcome((ev.Acked(ref, msg_id),))
            case fr.Error():
                error = frame.to_exception()
                if (self._hold_unavailable and frame.code is ErrorCode.UNAVAILABLE
                        and frame.ref in self._pending):
                    # "unavailable" means not carried out: the same ref may be sent again
                    self._held[frame.ref] = None
                    return Outcome((ev.SendDelayed(frame.ref, error),))
                if frame.ref is not None and self._pending.pop(frame.ref, None) is not None:
                    return Outcome((ev.SendFailed(frame.ref, error),))
                return Outcome((ev.ServerError(error),))
            case fr.DirectMessage():
                return Outcome(self._on_dm(frame))
            case fr.DmHistory():
                return self._on_dm_history(frame)
            case fr.Registered(name=name):
                self._account = True
                if self._new_password is not None:
                    self._password, self._new_password = self._new_password, None
                return Outcome((ev.Registered(name),))
            case fr.WhoList(room=room, names=names):
                return Outcome((ev.Members(room, names),))
            case fr.Joined(room=room, name=name) if room in self._rooms:
                return Outcome((ev.MemberJoined(room, name),))
            case fr.Left(room=room, name=name) if room in self._rooms:
                return Outcome((ev.MemberLeft(room, name),))
            case fr.TypingNotice(room=room, name=name) if room in self._rooms:
                return Outcome((ev.Typing(room, name),))
            case _:
                # pong, a stray welcome, bye (the connection's business),
                # membership news for a room just left
                return NOTHING

    # ------------------------------------------------------------ conversations

    def _on_dm(self, dm: fr.DirectMessage) -> tuple[ev.ClientEvent, ...]:
        """A dm: live-only ones (no id) as they come; a stored one once, in order."""
        if dm.id is None or dm.epoch is None:
            return (ev.DirectReceived(dm),)
        peer = dm.to if name_key(dm.sender) == name_key(self.name) else dm.sender
        conv = self._dms.setdefault(name_key(peer), _Conversation(peer))
        if conv.epoch == dm.epoch and dm.id <= conv.last_id:
            return ()
        conv.epoch, conv.last_id = dm.epoch, dm.id
        return (ev.DirectReceived(dm),)

    def _on_dm_history(self, h: fr.DmHistory) -> Outcome:
        key = name_key(h.peer)
        if self._dm_queries.get(key):
            self._dm_queries[key] -= 1
            return Outcome((ev.DmHistoryLoaded(h.peer, h.messages, h.complete),))
        delivered: list[ev.ClientEvent] = []
        for dm in sorted(h.messages, key=lambda m: m.id or 0):
            delivered += self._on_dm(dm)
        return Outcome(tuple(delivered))

    # ------------------------------------------------------------ room messages

    def _on_message(self, m: fr.Message) -> Outcome:
        r = self._rooms.get(m.room)
        if r is None:
            return NOTHING  # in flight when we left the room
        if not r.synced:
            # The room's history frame comes first; hold until it tells the epoch.
            if m.id > r.last_id and len(r.held) < MAX_HELD:
                r.held.setdefault(m.id, m)
            return NOTHING
        return self._advance(m.room, r, (m,))

    def _advance(self, room: str, r: _Room, messages: Iterable[fr.Message]) -> Outcome:
        """Deliver what is next in order; hold the rest and ask for a gap if one opened."""
        return Outcome(self._deliver(r, messages), self._ask_for_gap(room, r))

    @staticmethod
    def _deliver(r: _Room, messages: Iterable[fr.Message]) -> tuple[ev.ClientEvent, ...]:
        for m in messages:
            if m.id > r.last_id:
                r.held.setdefault(m.id, m)
        delivered: list[ev.ClientEvent] = []
        while True:
            following = r.held.pop(r.last_id + 1, None)
            if following is not None:
                r.last_id = following.id
                delivered.append(ev.RoomMessage(following))
            elif len(r.held) > MAX_HELD:
                r.last_id = min(r.held) - 1  # a gap that never fills: give it up
            else:
                return tuple(delivered)

    def _ask_for_gap(self, room: str, r: _Room) -> tuple[fr.ClientFrame, ...]:
        if not r.held or r.filling():
            return ()
        first = r.last_id + 1
        before = min(min(r.held), first + MAX_HISTORY_LIMIT)
        r.queries.append(_Query(fill_before=before))
        return (fr.HistoryQuery(room, before, before - first),)

    def _on_history(self, h: fr.History) -> Outcome:
        r = self._rooms.get(h.room)
        if r is None:
            return NOTHING
        query = r.queries.popleft() if r.synced and r.queries else None
        if h.epoch != r.epoch:
            return self._restart(h, r)
        if query is None:
            return self._catch_up(h, r)
        if query.fill_before is not None:
            return self._filled(h, r, query.fill_before)
        return self._scrolled_back(h, r)

    def _restart(self, h: fr.History, r: _Room) -> Outcome:
        """First sync of the room, or its epoch changed: the history is the new start."""
        reset: tuple[ev.ClientEvent, ...] = ()
        if r.epoch is not None:
            reset = (ev.EpochReset(h.room, h.epoch),)
            r.held.clear()
            r.queries.clear()
        messages = _by_id(h.messages)
        r.epoch = h.epoch
        r.last_id = messages[-1].id if messages else 0
        r.synced = True
        r.held = {i: m for i, m in r.held.items() if i > r.last_id}
        loaded = ev.HistoryLoaded(h.room, tuple(messages), h.complete, older=False)
        return Outcome((*reset, loaded)) + self._advance(h.room, r, ())

    def _catch_up(self, h: fr.History, r: _Room) -> Outcome:
        """The known epoch (a resumed login, or a gateway's refill): only newer ids count.

        The gateway sends every retained message after the resume point, so a
        first id beyond the next expected one means the ones between are gone.
        """
        newer = [m for m in _by_id(h.messages) if m.id > r.last_id]
        r.synced = True
        if newer:
            lowest = min(newer[0].id, min(r.held, default=newer[0].id))
            r.last_id = max(r.last_id, lowest - 1)
        return self._advance(h.room, r, newer)

    def _filled(self, h: fr.History, r: _Room, before: int) -> Outcome:
        """A gap-fill answer: what it lacks below ``before`` the gateway no longer keeps."""
        delivered = self._deliver(r, (m for m in h.messages if m.id < before))
        while r.last_id < before - 1:
            # r.last_id + 1 is gone for good: skip to the next message we do have.
            below = [i for i in r.held if i < before]
            r.last_id = (min(below) if below else before) - 1
            delivered += self._deliver(r, ())
        return Outcome(delivered, self._ask_for_gap(h.room, r))

    def _scrolled_back(self, h: fr.History, r: _Room) -> Outcome:
        """A scroll-back answer: older messages for the caller, newer ones go in order."""
        messages = _by_id(h.messages)
        older = tuple(m for m in messages if m.id <= r.last_id)
        loaded = ev.HistoryLoaded(h.room, older, h.complete, older=True)
        return Outcome((loaded,)) + self._advance(
            h.room, r, (m for m in messages if m.id > r.last_id)
        )
