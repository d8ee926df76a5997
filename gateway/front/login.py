"""Login: ``hello`` (the password check hook, the claim, a takeover), its undo, the
release at the close, and the restore after Redis forgot this gateway.

A ``hello`` claims the name (``svc.accounts.check_hello`` checks a password first,
on the reader thread), binds it in the registry (kicking a local holder), enters
and announces its rooms, reads an account's conversations (``load_catch_up``),
answers ``welcome``, then sends each room's history and each conversation's
catch-up one answer at a time. A failure after the claim gives everything back
(``undo``). All of it runs on the session's reader thread, but ``restore``
(the housekeeper's).

Lock order: takes no lock of its own; the session's ``_lock`` and the registry's
only through their methods, never together, never across socket or Redis calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.conversations import Conversations
from gateway.core.conversations import CatchUp
from gateway.core.cursor import Batch
from gateway.front import rooms
from gateway.redis.broker import BrokerUnavailable, token_hash
from protocol import codec
from protocol.errors import ErrorCode, ProtocolError
from protocol.frames import ByeReason, DmSummary, Hello, Position, Welcome
from protocol.names import CONVERSATION_PREFIX, name_key

if TYPE_CHECKING:
    from gateway.front.session import Session


def hello(s: Session, frame: Hello) -> None:
    if s.name is not None:
        raise ProtocolError(ErrorCode.ALREADY_LOGGED_IN, f"already logged in as {s.name}")
    s._check_room_count(len(frame.rooms))
    svc = s._svc
    owner = svc.accounts.check_hello(frame, s.peer_host) if svc.accounts else False
    s._wanted_rooms = frozenset(frame.rooms)
    key = name_key(frame.name)
    svc.registry.begin_claim(key, s)  # until bound: a kicked holder must see us
    try:
        claim = svc.broker.claim_name(frame.name, s.sid, frame.token, owner=owner)
        s._account = claim.account
        s.name = claim.name
        s._token_hash = token_hash(claim.token)
        s.log.extra = {"sid": s.sid, "user": claim.name}
        displaced = svc.registry.bind_name(s)
    finally:
        svc.registry.end_claim(key, s)
    if displaced is not None:
        displaced.kick(ByeReason.REPLACED)
    # Every room is subscribed before any is announced, and nothing is sent
    # before every room is announced: a refused hello gets only its error.
    # Rooms the name's memberships came along from (a token takeover) and the
    # hello does not list are left: the old session was there, this one is not.
    unwanted = [room for room in claim.rooms if room not in s._wanted_rooms]
    entered: list[str] = []
    try:
        for room in frame.rooms:
            entered.append(room)
            rooms.enter(s, room)
        batches = [rooms.announce(s, room, frame.since.get(room)) for room in frame.rooms]
        for room in unwanted:
            svc.broker.leave(room, claim.name)
        caught_up = load_conversations(s, frame.since)
    except BaseException:
        undo(s, entered, unwanted)
        raise
    s._send(codec.encode(Welcome(
        claim.name, svc.config.gateway_id, frame.rooms, claim.token,
        s._limits.announced(), account=s._account, dms=caught_up.summaries,
        read=caught_up.room_reads)), "welcome")
    svc.metrics.logged_in.inc()
    s.log.info("event=login rooms=%d resumed=%s replaced=%s", len(frame.rooms),
                  bool(frame.since), claim.replaced_session is not None)
    for i, (room, batch) in enumerate(zip(frame.rooms, batches, strict=True)):
        # One room's history at a time: the next is queued once the previous one
        # has reached the kernel, so a catch-up of many rooms never piles up here.
        if i and not s._answers_sent():
            return
        rooms.go_live(s, room, batch)
    s._wanted_rooms = frozenset()  # in them now: in_room answers from here on
    open_conversations(s, caught_up, bool(frame.rooms))


def open_conversations(s: Session, caught_up: CatchUp, waiting: bool) -> None:
    """After the rooms' histories: each conversation's catch-up, one answer at a time
    as rooms' are, then the dms that waited meanwhile, in order, and live ones."""
    for conv, batch in caught_up.loaded:
        lines = dm_history(conv.peer, batch)
        if not lines:
            continue
        if waiting and not s._answers_sent():
            return
        waiting = True
        s._send_history(lines)
    with s._sending() as out:
        payload, fills = s._dms.open(caught_up, s.name, s._account)
        if payload:
            out.enqueue(payload)
    for peer_key in fills:
        s._fill_conversation(peer_key)


def undo(s: Session, entered: list[str], taken_over: list[str]) -> None:
    """A hello failed after its claim: give back rooms and name, as if never logged in.

    ``taken_over``: rooms whose membership came with the name and that the hello
    does not list.
    """
    assert s.name is not None
    for room in entered:
        rooms.abandon(s, room)
    try:
        for room in entered + taken_over:
            s._svc.broker.leave(room, s.name)  # a no-op where not ours
        s._svc.broker.release_name(s.name, s.sid)
    except BrokerUnavailable:
        s.log.warning("event=undo_login_failed")
    s._svc.registry.unbind_name(s)
    s._wanted_rooms = frozenset()
    s._account = False
    with s._lock:
        s._dms.reset()
    s.name = None


def load_conversations(s: Session, since: dict[str, Position]) -> CatchUp:
    """An account's conversations at login: what ``since`` (or, without it, the read
    mark) shows the client has not seen, and the summaries of ``welcome``."""
    gate = s._svc.accounts
    if gate is None or not s._account or s.name is None:
        return CatchUp()
    return load_catch_up(gate.conversations, s.name, since)


def release(s: Session, name: str) -> None:
    """Give back the name and memberships, unless a successor holds or wants them.

    A local successor (same name, same gateway) shares our membership
    records, so leaving a room it wants would delete its presence there.
    """
    svc = s._svc
    successors = svc.registry.successors(name_key(name), s)
    with s._lock:
        rooms = list(s._rooms)
        s._rooms.clear()
    rooms = [r for r in rooms if not any(s.wants_room(r) for s in successors)]
    try:
        for room in rooms:
            svc.broker.leave(room, name)
        if s._closing_reason() is not ByeReason.REPLACED:
            svc.broker.release_name(name, s.sid)
    except BrokerUnavailable:
        s.log.warning("event=release_failed rooms=%d", len(rooms))


def restore(s: Session) -> None:
    """Redis forgot this gateway (data loss, or reaped while paused): claim back
    the name with the token the client holds, and the memberships."""
    name = s.name
    if name is None or s._closing_reason() is not None:
        return
    if not s._svc.broker.restore_name(name, s.sid, s._token_hash,
                                         owner=s._account):
        s.log.info("event=name_lost_while_away")
        s.kick(ByeReason.REPLACED)
        return
    with s._lock:
        rooms = [room for room, cursor in s._rooms.items() if cursor.live]
    for room in rooms:
        s._svc.broker.join(room, name, limited=False)


def load_catch_up(store: Conversations, name: str, since: dict[str, Position]) -> CatchUp:
    """Per conversation of ``name``: the dms after the client's ``since`` (all retained ones
    when its epoch changed), or without one, after the read mark **(ours)**."""
    reads = store.reads(name)
    wanted = {name_key(key[len(CONVERSATION_PREFIX):]): pos for key, pos in since.items()
              if key.startswith(CONVERSATION_PREFIX)}
    loaded = []
    summaries = []
    for conv in store.conversations(name):
        read = reads.get(CONVERSATION_PREFIX + conv.peer_key, 0)
        pos = wanted.get(conv.peer_key)
        batch = store.read_history(name, conv.peer_key, after=read if pos is None else pos.id)
        if pos is not None and batch.epoch != pos.epoch:
            batch = store.read_history(name, conv.peer_key, after=0)
        loaded.append((conv, batch))
        summaries.append(DmSummary(conv.peer, batch.epoch, batch.last_id, read))
    room_reads = {k: v for k, v in reads.items() if not k.startswith(CONVERSATION_PREFIX)}
    return CatchUp(tuple(summaries), room_reads, tuple(loaded))


def dm_history(peer: str, batch: Batch) -> list[bytes]:
    """The ``history`` lines of a conversation's catch-up; none when it holds nothing new."""
    if not batch.messages:
        return []
    return codec.dm_history_lines(peer, batch.epoch, batch.messages, batch.complete)


__all__ = ["dm_history", "hello", "load_catch_up", "release", "restore", "undo"]
