"""A stand-in for ``ChatClient`` for the view tests: no network, scripted answers.

It records every call and answers the way a gateway would (echo of sends,
``who`` lists, scroll-back pages), delivering events through the app's sink
like the real client's reader thread. ``emit`` injects any event, as if
another user did something.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from client.errors import LoginRefused, NoGatewayAvailable
from client.events import (
    AccountState,
    Acked,
    ClientEvent,
    Closed,
    Connected,
    DirectReceived,
    DmHistoryLoaded,
    HistoryLoaded,
    MemberJoined,
    Members,
    Registered,
    RoomMessage,
    SendFailed,
    ServerError,
)
from client.gui.ports import EventSink
from protocol.errors import ErrorCode, ProtocolError
from protocol.frames import DirectMessage, DmSummary, Message, Welcome


@dataclass
class Script:
    """How the stub gateway behaves; shared by every client a factory makes."""

    refuse: ErrorCode | None = None
    unreachable: bool = False
    gateway: str = "gw-1"
    members: dict[str, list[str]] = field(default_factory=lambda: {"lobby": []})
    history: dict[str, list[Message]] = field(default_factory=dict)
    offline_users: set[str] = field(default_factory=set)
    echo: bool = True
    hold_connect: threading.Event | None = None
    """When set, ``connect`` waits for it: the window must stay responsive meanwhile."""
    refuse_register: ErrorCode | None = None
    dm_history: dict[str, list[DirectMessage]] = field(default_factory=dict)
    """Stored conversations by peer, for ``dm_history`` answers (accounts)."""
    dms: tuple[DmSummary, ...] = ()
    read: dict[str, int] = field(default_factory=dict)
    """What ``AccountState`` says at an account's log-in."""
    catch_up: list[DirectMessage] = field(default_factory=list)
    """Stored dms delivered after the log-in (those after the read marks)."""


class StubClient:
    def __init__(self, name: str, gateways: Sequence[str], sink: EventSink,
                 script: Script, password: str | None = None) -> None:
        self.name = name
        self.password = password
        self.account = password is not None
        self.gateways = tuple(gateways)
        self.sink = sink
        self.script = script
        self.calls: list[tuple[object, ...]] = []
        self.closed = False
        self._refs = itertools.count(1)
        self._ids: dict[str, itertools.count[int]] = {}

    # -- ChatClient API --------------------------------------------------------

    def connect(self, timeout: float = 10.0) -> Welcome:
        self.calls.append(("connect", threading.current_thread().name))
        if self.script.hold_connect is not None:
            self.script.hold_connect.wait(timeout)
        if self.script.unreachable:
            raise NoGatewayAvailable("no gateway answered")
        if self.script.refuse is not None:
            raise LoginRefused(self.script.refuse, f"refused: {self.script.refuse.value}")
        self.script.members.setdefault("lobby", [])
        if self.name not in self.script.members["lobby"]:
            self.script.members["lobby"].append(self.name)
        self.emit(Connected(self.script.gateway, self.name, False))
        if self.account:
            self.emit(AccountState(True, self.script.dms, dict(self.script.read)))
        history = tuple(self.script.history.get("lobby", [])[-50:])
        self.emit(HistoryLoaded("lobby", history, True, False))
        for dm in self.script.catch_up if self.account else ():
            self.emit(DirectReceived(dm))
        return Welcome(self.name, self.script.gateway, ("lobby",), "token", {})

    def send(self, room: str, text: str) -> str:
        ref = f"r{next(self._refs)}"
        self.calls.append(("send", room, text))
        if self.script.echo:
            message = Message(room, self.next_id(room), self.name, text.strip(), time.time())
            self.emit(RoomMessage(message))
            self.emit(Acked(ref, message.id))
        return ref

    def dm(self, to: str, text: str) -> str:
        ref = f"r{next(self._refs)}"
        self.calls.append(("dm", to, text))
        if to in self.script.offline_users:
            self.emit(SendFailed(ref, ProtocolError(ErrorCode.NO_SUCH_USER, "no such user", ref)))
        elif self.script.echo:
            self.emit(DirectReceived(DirectMessage(self.name, to, text.strip(), time.time())))
            self.emit(Acked(ref, None))
        return ref

    def join(self, room: str) -> None:
        self.calls.append(("join", room))
        members = self.script.members.setdefault(room, [])
        if self.name not in members:
            members.append(self.name)
        self.emit(MemberJoined(room, self.name))
        self.emit(HistoryLoaded(room, tuple(self.script.history.get(room, [])[-50:]), True,
                                False))

    def leave(self, room: str) -> None:
        self.calls.append(("leave", room))

    def who(self, room: str) -> None:
        self.calls.append(("who", room))
        self.emit(Members(room, tuple(sorted(self.script.members.get(room, []),
                                             key=str.casefold))))

    def typing(self, room: str) -> None:
        self.calls.append(("typing", room))

    def history(self, room: str, before: int | None = None, limit: int = 50) -> None:
        self.calls.append(("history", room, before, limit))
        older = [m for m in self.script.history.get(room, []) if before is None or m.id < before]
        self.emit(HistoryLoaded(room, tuple(older[-limit:]), True, True))

    def register(self, password: str) -> None:
        self.calls.append(("register", len(password)))
        if self.script.refuse_register is not None:
            code = self.script.refuse_register
            self.emit(ServerError(ProtocolError(code, f"refused: {code.value}")))
            return
        self.account = True
        self.emit(Registered(self.name))

    def passwd(self, old: str, new: str) -> None:
        self.calls.append(("passwd",))
        self.emit(Registered(self.name))

    def mark_read(self, room: str | None = None, *, peer: str | None = None,
                  up_to: int) -> None:
        self.calls.append(("mark_read", room, peer, up_to))

    def dm_history(self, peer: str, before: int | None = None, limit: int = 50) -> None:
        self.calls.append(("dm_history", peer, before, limit))
        stored = [m for m in self.script.dm_history.get(peer, [])
                  if before is None or (m.id or 0) < before]
        self.emit(DmHistoryLoaded(peer, tuple(stored[-limit:]), True))

    def close(self) -> None:
        self.calls.append(("close",))
        if not self.closed:
            self.closed = True
            self.emit(Closed("client"))

    # -- test helpers ------------------------------------------------------------

    def emit(self, event: ClientEvent) -> None:
        self.sink(event)

    def next_id(self, room: str) -> int:
        if room not in self._ids:
            start = max((m.id for m in self.script.history.get(room, [])), default=0) + 1
            self._ids[room] = itertools.count(start)
        return next(self._ids[room])

    def called(self, name: str) -> list[tuple[object, ...]]:
        return [call for call in self.calls if call[0] == name]


class StubFactory:
    """The app's client factory; remembers the clients it made."""

    def __init__(self, script: Script | None = None) -> None:
        self.script = script or Script()
        self.clients: list[StubClient] = []

    def __call__(self, name: str, gateways: Sequence[str], sink: EventSink,
                 password: str | None = None) -> StubClient:
        client = StubClient(name, gateways, sink, self.script, password)
        self.clients.append(client)
        return client

    @property
    def last(self) -> StubClient:
        return self.clients[-1]


def message(room: str, id_: int, sender: str, text: str, ts: float | None = None) -> Message:
    return Message(room, id_, sender, text, time.time() if ts is None else ts)
