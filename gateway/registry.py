"""This gateway's sessions and the rooms they are in: the one locked directory.

Owned by the ``Gateway``; every method takes ``_lock`` briefly and returns
copies or tuples, so callers iterate without the lock and never hold it
across socket or Redis calls. The registry lock is never nested with a
session's lock: callers take a snapshot here, release, then talk to sessions.

A name being reconciled (``begin_reap``, the housekeeper cleaning up what Redis
says this gateway holds and no session does) holds back new claims of that
name on this gateway until ``end_reap``: ``begin_claim`` waits on a condition
of ``_lock`` (the lock itself is not held while Redis is asked).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from protocol.names import name_key

if TYPE_CHECKING:
    from gateway.session import Session


class Registry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reaped = threading.Condition(self._lock)
        """Notified when a name's reconciliation ends (``end_reap``)."""
        self._reaping: set[str] = set()
        """Names the housekeeper is cleaning up right now: their claims wait."""
        self._sessions: dict[str, Session] = {}
        self._by_name: dict[str, Session] = {}
        self._claims: dict[str, set[Session]] = {}
        """Sessions asking Redis for a name right now (``hello`` in progress)."""
        self._rooms: dict[str, dict[str, Session]] = {}
        self._snapshots: dict[str, tuple[Session, ...]] = {}
        self._per_address: dict[str, int] = {}

    # connections ---------------------------------------------------------

    def admit(self, session: Session, max_connections: int, max_per_address: int) -> bool:
        """Register a new connection unless a connection cap is reached."""
        with self._lock:
            if len(self._sessions) >= max_connections:
                return False
            count = self._per_address.get(session.peer_host, 0)
            if max_per_address and count >= max_per_address:
                return False
            self._per_address[session.peer_host] = count + 1
            self._sessions[session.sid] = session
            return True

    def remove(self, session: Session) -> list[str]:
        """Forget a session; returns the rooms it was the last local member of."""
        with self._lock:
            if self._sessions.pop(session.sid, None) is None:
                return []
            count = self._per_address.get(session.peer_host, 1) - 1
            if count:
                self._per_address[session.peer_host] = count
            else:
                self._per_address.pop(session.peer_host, None)
            if session.name and self._by_name.get(name_key(session.name)) is session:
                del self._by_name[name_key(session.name)]
            emptied = []
            for room, members in list(self._rooms.items()):
                if members.pop(session.sid, None) is not None:
                    self._snapshots.pop(room, None)
                    if not members:
                        del self._rooms[room]
                        emptied.append(room)
            return emptied

    def bind_name(self, session: Session) -> Session | None:
        """Index a logged-in session by name; returns a local session it displaced."""
        assert session.name
        with self._lock:
            key = name_key(session.name)
            previous = self._by_name.get(key)
            self._by_name[key] = session
            return previous if previous is not session else None

    def unbind_name(self, session: Session) -> None:
        """Forget the session's name (a login undone), unless another holds it now."""
        assert session.name
        with self._lock:
            key = name_key(session.name)
            if self._by_name.get(key) is session:
                del self._by_name[key]

    def begin_claim(self, key: str, session: Session) -> None:
        """``session`` is about to claim the name ``key``; call before asking Redis.

        The claim can kick a local holder (``K``) before ``bind_name``: that
        holder must already see who takes over, to leave it the rooms it wants.
        """
        with self._reaped:
            while key in self._reaping:
                self._reaped.wait()
            self._claims.setdefault(key, set()).add(session)

    def end_claim(self, key: str, session: Session) -> None:
        with self._lock:
            claimants = self._claims.get(key)
            if claimants is not None:
                claimants.discard(session)
                if not claimants:
                    del self._claims[key]

    def begin_reap(self, key: str) -> tuple[bool, Session | None]:
        """Start reconciling the name ``key``: (False, None) while a session claims it (a
        claim in flight is never reaped), else (True, its local holder or None); claims of
        it wait until ``end_reap``."""
        with self._lock:
            if key in self._claims:
                return False, None
            self._reaping.add(key)
            return True, self._by_name.get(key)

    def end_reap(self, key: str) -> None:
        with self._reaped:
            self._reaping.discard(key)
            self._reaped.notify_all()

    def successors(self, key: str, session: Session) -> tuple[Session, ...]:
        """Local sessions other than ``session`` that hold or are claiming the name ``key``."""
        with self._lock:
            found = set(self._claims.get(key, ()))
            holder = self._by_name.get(key)
            if holder is not None:
                found.add(holder)
        found.discard(session)
        return tuple(found)

    def by_name(self, key: str) -> Session | None:
        with self._lock:
            return self._by_name.get(key)

    def get(self, sid: str) -> Session | None:
        with self._lock:
            return self._sessions.get(sid)

    def sessions(self) -> tuple[Session, ...]:
        with self._lock:
            return tuple(self._sessions.values())

    def __len__(self) -> int:
        return len(self._sessions)

    # rooms ---------------------------------------------------------------

    def join(self, session: Session, room: str) -> bool:
        """Add a member; True when it is the room's first local member (subscribe)."""
        with self._lock:
            members = self._rooms.setdefault(room, {})
            first = not members
            members[session.sid] = session
            self._snapshots.pop(room, None)
            return first

    def leave(self, session: Session, room: str) -> bool:
        """Remove a member; True when the room has no local member left (unsubscribe)."""
        with self._lock:
            members = self._rooms.get(room)
            if members is None or members.pop(session.sid, None) is None:
                return False
            self._snapshots.pop(room, None)
            if members:
                return False
            del self._rooms[room]
            return True

    def members(self, room: str) -> tuple[Session, ...]:
        """Local members of a room; a cached tuple, rebuilt only after a change."""
        snapshot = self._snapshots.get(room)
        if snapshot is not None:
            return snapshot
        with self._lock:
            members = self._rooms.get(room)
            snapshot = tuple(members.values()) if members else ()
            self._snapshots[room] = snapshot
            return snapshot

    def rooms(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._rooms)
