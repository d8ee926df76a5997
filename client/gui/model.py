"""What the chat window knows, apart from its widgets: one state per conversation.

A conversation is a room or a direct-message thread with one person. Its
state (ids shown, how far back history goes, unread count, members, who is
typing, sends not yet echoed) is plain Python with no Tk and no I/O, owned by
the chat controller on the Tk main thread, so it needs no lock and tests can
check it without a display.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from protocol.names import name_key

TYPING_HINT_SECONDS = 4.0
"""How long "alice is typing…" stays after her last typing notice."""


class ConvKind(enum.Enum):
    ROOM = "room"
    DIRECT = "direct"


@dataclass(frozen=True, slots=True)
class ConvKey:
    """Identity of a conversation; direct threads compare names by ``name_key``."""

    kind: ConvKind
    name: str

    @classmethod
    def room(cls, room: str) -> ConvKey:
        return cls(ConvKind.ROOM, room)

    @classmethod
    def direct(cls, peer: str) -> ConvKey:
        return cls(ConvKind.DIRECT, name_key(peer))

    @property
    def is_room(self) -> bool:
        return self.kind is ConvKind.ROOM

    @property
    def ident(self) -> str:
        """A string id for widgets: ``#room`` or ``@peer``."""
        return ("#" if self.is_room else "@") + self.name


@dataclass(frozen=True, slots=True)
class Pending:
    """A message this user sent that the server has not echoed back yet."""

    ref: str
    text: str


class Conversation:
    """State of one room or direct thread."""

    __slots__ = ("_members", "_typing", "counted_to", "has_older", "history_asked", "key",
                 "loading_older", "mentions", "newest_id", "oldest_id", "pending",
                 "read_mark", "seen_ids", "title", "unread")

    def __init__(self, key: ConvKey, title: str) -> None:
        self.key = key
        self.title = title
        self.unread = 0
        self.mentions = 0
        """Unread messages that mention the reader (``@name``), also counted in ``unread``."""
        self.seen_ids: set[int] = set()
        self.oldest_id: int | None = None
        self.newest_id: int | None = None
        self.has_older = False
        self.loading_older = False
        self.pending: list[Pending] = []
        self.read_mark: int | None = None
        """How far the user has read, as the server keeps it (accounts); None: unknown."""
        self.counted_to = 0
        """Ids up to this one are already in ``unread`` (the server said they exist)."""
        self.history_asked = False
        """A direct thread's stored history was asked for (once, when first opened)."""
        self._members: dict[str, str] = {}
        self._typing: dict[str, tuple[str, float]] = {}

    # -- messages ---------------------------------------------------------

    def accept(self, message_id: int) -> bool:
        """Record a room message id; False when it is already shown."""
        if message_id in self.seen_ids:
            return False
        self.seen_ids.add(message_id)
        if self.oldest_id is None or message_id < self.oldest_id:
            self.oldest_id = message_id
        if self.newest_id is None or message_id > self.newest_id:
            self.newest_id = message_id
        return True

    def history_loaded(self, complete: bool, older: bool, count: int) -> None:
        """Decide whether scrolling to the top should ask for more."""
        if older:
            self.loading_older = False
            if count == 0 or not complete:
                self.has_older = False
                return
        elif not complete:
            self.has_older = False
            return
        self.has_older = self.oldest_id is not None and self.oldest_id > 1

    def reset(self) -> None:
        """The room's sequence restarted (new epoch): forget every id."""
        self.seen_ids.clear()
        self.oldest_id = None
        self.newest_id = None
        self.has_older = False
        self.loading_older = False

    def want_older(self) -> int | None:
        """The ``before`` id for a scroll-back request, or None when none is due."""
        if self.loading_older or not self.has_older:
            return None
        self.loading_older = True
        return self.oldest_id

    # -- read state (accounts) ---------------------------------------------------

    def is_unread(self, message_id: int | None, own: bool) -> bool:
        """Someone else's message after the server's read mark (always, without one)."""
        if own:
            return False
        return self.read_mark is None or message_id is None or message_id > self.read_mark

    def server_marks(self, read: int, last_id: int | None = None,
                     reading: bool = False) -> None:
        """What ``AccountState`` says: read up to ``read``; for a conversation, its newest
        id is ``last_id``. Messages read elsewhere (another device) stop counting;
        those not received yet count now, so the sidebar is right before they arrive.
        ``reading``: the user is looking at this conversation now."""
        self.read_mark = read
        shown = self.newest_id or 0
        if reading or read >= shown:
            self.unread = 0
            self.mentions = 0
        if reading or last_id is None:
            return
        already = max(read, shown, self.counted_to)
        if last_id > already:
            self.unread += last_id - already
            self.counted_to = last_id

    def arrived(self, message_id: int | None, own: bool, mention: bool, unseen: bool) -> bool:
        """Count a message as it is shown; True when it adds an unread one.

        ``unseen``: the user is not looking at its conversation. A message the server
        already announced (``server_marks``) is in the count: one of the user's own
        among them comes off it, a mention is added to ``mentions``.
        """
        if message_id is not None and message_id <= self.counted_to:
            if own:
                self.unread = max(0, self.unread - 1)
            elif mention and unseen and self.unread:
                self.mentions += 1
            return False
        if not unseen or not self.is_unread(message_id, own):
            return False
        self.unread += 1
        self.mentions += mention
        return True

    def read(self) -> None:
        """The user looked at the conversation: nothing in it is unread."""
        self.unread = 0
        self.mentions = 0
        self.counted_to = 0

    # -- sends not yet echoed ----------------------------------------------

    def add_pending(self, ref: str, text: str) -> None:
        self.pending.append(Pending(ref, text))

    def take_echo(self, text: str) -> Pending | None:
        """The oldest pending send with this text: the server's echo resolves it."""
        for index, pending in enumerate(self.pending):
            if pending.text == text:
                return self.pending.pop(index)
        return None

    def drop_pending(self, ref: str) -> Pending | None:
        for index, pending in enumerate(self.pending):
            if pending.ref == ref:
                return self.pending.pop(index)
        return None

    # -- members -----------------------------------------------------------

    def set_members(self, names: Iterable[str]) -> None:
        self._members = {name_key(name): name for name in names}

    def add_member(self, name: str) -> bool:
        key = name_key(name)
        added = key not in self._members
        self._members[key] = name
        return added

    def remove_member(self, name: str) -> bool:
        self._typing.pop(name_key(name), None)
        return self._members.pop(name_key(name), None) is not None

    def members(self) -> list[str]:
        return sorted(self._members.values(), key=str.casefold)

    def has_member(self, name: str) -> bool:
        return name_key(name) in self._members

    # -- typing ------------------------------------------------------------

    def typing_seen(self, name: str, now: float) -> None:
        self._typing[name_key(name)] = (name, now + TYPING_HINT_SECONDS)

    def typing_stopped(self, name: str) -> None:
        self._typing.pop(name_key(name), None)

    def clear_typing(self) -> None:
        self._typing.clear()

    def typing_names(self, now: float) -> list[str]:
        """Names typing now, oldest first; expired hints are dropped."""
        for key in [k for k, (_, until) in self._typing.items() if until <= now]:
            del self._typing[key]
        return [name for name, _ in self._typing.values()]


class Drafts:
    """What was typed but not sent, one text per conversation.

    ``switch`` keeps the composer's text for the conversation being left and
    gives back the one of the conversation being opened, so a draft never
    follows the person into another room or a private thread.
    """

    __slots__ = ("_texts",)

    def __init__(self) -> None:
        self._texts: dict[ConvKey, str] = {}

    def switch(self, leaving: ConvKey | None, text: str, entering: ConvKey) -> str:
        if leaving is not None and leaving != entering:
            self.keep(leaving, text)
        return self._texts.get(entering, "")

    def keep(self, key: ConvKey, text: str) -> None:
        if text.strip():
            self._texts[key] = text
        else:
            self._texts.pop(key, None)

    def get(self, key: ConvKey) -> str:
        return self._texts.get(key, "")

    def forget(self, key: ConvKey) -> None:
        self._texts.pop(key, None)


class ReadSync:
    """When to tell the server how far the user has read (``mark_read``).

    ``reading`` records where the reader is; ``due`` gives the marks to send once
    ``delay`` seconds have passed since the first unsent one, so reading a burst
    sends one mark, not one per message; a mark is never sent twice or lower than
    one already sent (the server knows ``known`` marks already). Pure.
    """

    __slots__ = ("_delay", "_sent", "_wanted")

    def __init__(self, delay: float = 1.0) -> None:
        self._delay = delay
        self._sent: dict[ConvKey, int] = {}
        self._wanted: dict[ConvKey, tuple[int, float]] = {}

    def known(self, key: ConvKey, mark: int) -> None:
        """The server has this mark (``AccountState``): nothing to send up to it."""
        self._sent[key] = mark
        wanted = self._wanted.get(key)
        if wanted is not None and wanted[0] <= mark:
            del self._wanted[key]

    def reading(self, key: ConvKey, up_to: int, now: float) -> None:
        if up_to <= self._sent.get(key, 0):
            return
        wanted = self._wanted.get(key)
        self._wanted[key] = (up_to, now + self._delay if wanted is None else wanted[1])

    def due(self, now: float) -> list[tuple[ConvKey, int]]:
        ready = [(key, up_to) for key, (up_to, at) in self._wanted.items() if at <= now]
        for key, up_to in ready:
            del self._wanted[key]
            self._sent[key] = up_to
        return ready

    def sent(self, key: ConvKey) -> int | None:
        return self._sent.get(key)

    def forget(self, key: ConvKey) -> None:
        self._sent.pop(key, None)
        self._wanted.pop(key, None)


class TypingThrottle:
    """Send ``typing`` for a room at most once every ``interval`` seconds."""

    __slots__ = ("_interval", "_last")

    def __init__(self, interval: float = 2.0) -> None:
        self._interval = interval
        self._last: dict[str, float] = {}

    def due(self, room: str, now: float) -> bool:
        last = self._last.get(room)
        if last is not None and now - last < self._interval:
            return False
        self._last[room] = now
        return True
