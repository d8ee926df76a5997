"""Connects the chat view to a ``ChatClient``: events in, actions out.

``handle`` applies one client event to the conversation states
(``model``) and the widgets (``ChatView``); the ``ChatActions`` methods turn
what the person does into client calls. Runs on the Tk main thread only, so
the states need no lock; the client's own thread never calls in here (its
events arrive through the app's queue).

Accounts (protocol v1.1): ``AccountState`` puts every stored conversation in the
sidebar with its unread count (the server's newest id less its read mark) and
gives the rooms' read marks, so history at login shows a "New messages" line
and counts what was not read, on any device. Opening a conversation asks for
its stored history; scrolling to its top asks for more. While the person
looks at a conversation (shown, scrolled to the bottom, window focused) its
newest id is sent with ``mark_read``, at most once a second (``ReadSync``).
"""

from __future__ import annotations

import logging
import time
import tkinter as tk
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from client import commands
from client.compose import check_draft
from client.errors import CommandError
from client.events import (
    AccountState,
    Acked,
    Closed,
    Connected,
    DirectReceived,
    Disconnected,
    DmHistoryLoaded,
    EpochReset,
    HistoryLoaded,
    MemberJoined,
    MemberLeft,
    Members,
    Reconnecting,
    Registered,
    RoomMessage,
    SendFailed,
    ServerError,
    Typing,
)
from client.gui import notify, wording
from client.gui.chat_view import ChatView
from client.gui.message_view import ChatLine
from client.gui.model import Conversation, ConvKey, Drafts, ReadSync, TypingThrottle
from client.gui.ports import ChatClientLike
from client.gui.theme import Theme
from client.gui.widgets import PasswordDialog, StatusLevel
from protocol.errors import ChatError, ErrorCode, ProtocolError
from protocol.frames import DirectMessage, DmSummary, Message
from protocol.limits import Limits
from protocol.names import LOBBY, check_name, check_password, check_room, name_key

logger = logging.getLogger(__name__)

TICK_MS = 250
"""How often typing hints expire and the reconnect countdown moves."""

HISTORY_PAGE = 50

DEFAULT_MAX_TEXT = Limits().max_text

READ_DELAY_S = 1.0
"""How long a read position rests before it is sent (``mark_read``): one per burst."""


@dataclass(frozen=True, slots=True)
class _Retry:
    """The reconnect under way, for the status line's countdown."""

    address: str
    at: float
    attempt: int


class ChatController:
    """The logged-in session as the window sees it."""

    def __init__(self, master: tk.Misc, theme: Theme, client: ChatClientLike, me: str,
                 gateway: str, rooms: Iterable[str], on_quit: Callable[[], None],
                 clock: Callable[[], float] = time.monotonic,
                 typing_interval: float = 2.0, max_text: int = DEFAULT_MAX_TEXT) -> None:
        self._client = client
        self._max_text = max_text
        self._drafts = Drafts()
        self._restoring = False
        self._failed: dict[str, tuple[ConvKey, str]] = {}  # ref -> where and what, for Retry
        self._shown = False  # the window is titled after the conversation once shown
        self.window_focused: Callable[[], bool] = self._window_focused
        """Whether the window has the keyboard: when not, a DM or mention rings the bell."""
        self._me = me
        self._on_quit = on_quit
        self._clock = clock
        self._throttle = TypingThrottle(typing_interval)
        self._read_sync = ReadSync(READ_DELAY_S)
        self._online = True
        self._theme = theme
        self._awaiting: str | None = None  # "register"/"passwd" sent, not yet answered
        self.password_dialog: PasswordDialog | None = None
        self._convs: dict[ConvKey, Conversation] = {}
        self._pending_refs: dict[str, ConvKey] = {}
        self._announce_who: set[str] = set()
        self._reconnect: _Retry | None = None
        self._refresh_on_connect = False
        self._closed = False
        self.view = ChatView(master, theme, self, me)
        self.view.set_status(wording.connected(gateway, me, False), StatusLevel.OK)
        first: ConvKey | None = None
        for room in rooms:
            conv = self._open_room(room)
            first = first or conv.key
            self._call(self._client.who, room)
        if first is not None:
            self.select(first)
        self._tick_id: str | None = self.view.frame.after(TICK_MS, self._tick)

    # -- events ---------------------------------------------------------------

    def handle(self, event: object) -> None:
        """Apply one client event (called by the app's queue pump)."""
        match event:
            case RoomMessage(message=message):
                self._room_message(message)
            case HistoryLoaded():
                self._history(event)
            case DirectReceived(dm=dm):
                self._direct(dm)
            case AccountState(dms=dms, read=read):
                self._account_state(dms, read)
            case DmHistoryLoaded():
                self._dm_history(event)
            case Registered(name=name):
                if self._awaiting == "passwd":
                    self._notice("Your password was changed.")
                else:
                    self.account_created(name)
                self._awaiting = None
            case ServerError(error=error) if self._awaiting is not None and error.code in (
                    ErrorCode.BAD_PASSWORD, ErrorCode.AUTH_FAILED, ErrorCode.NAME_TAKEN,
                    ErrorCode.RATE_LIMITED, ErrorCode.UNAVAILABLE):
                self._notice(wording.passwd_refusal(error) if self._awaiting == "passwd"
                             else wording.register_refusal(error, self._me), error=True)
                self._awaiting = None
            case MemberJoined(room=room, name=name):
                self._member_joined(room, name)
            case MemberLeft(room=room, name=name):
                self._member_left(room, name)
            case Members(room=room, names=names):
                self._members(room, names)
            case Typing(room=room, name=name):
                conv = self._convs.get(ConvKey.room(room))
                if conv is not None and name_key(name) != name_key(self._me):
                    conv.typing_seen(name, self._clock())
                    self._refresh_typing()
            case Acked(ref=ref):
                self._pending_refs.pop(ref, None)
            case SendFailed(ref=ref, error=error):
                self._send_failed(ref, error)
            case ServerError(error=error):
                self._notice(wording.refusal(error), error=True)
            case EpochReset(room=room):
                conv = self._convs.get(ConvKey.room(room))
                if conv is not None:
                    conv.reset()
                    view = self.view.view(conv.key)
                    view.clear()
                    view.append_system("The server lost this room's history; "
                                       "it starts again here.")
            case Connected(gateway=gateway, name=name, resumed=resumed):
                self._connected(gateway, name, resumed)
            case Disconnected(reason=reason):
                self._online = False
                self._refresh_on_connect = True
                self._reconnect = None
                for conv in self._convs.values():
                    conv.clear_typing()
                self._refresh_typing()
                self.view.set_status(wording.disconnected(reason), StatusLevel.WARN)
            case Reconnecting(address=address, delay=delay, attempt=attempt):
                self._refresh_on_connect = True
                self._reconnect = _Retry(address, self._clock() + delay, attempt)
                self._show_reconnect()
            case Closed(reason=reason):
                self._online = False
                self._reconnect = None
                self.view.set_status(wording.offline(reason), StatusLevel.ERROR)
                self.view.composer.set_enabled(False)
            case _:
                logger.debug("event not shown: %r", event)

    def _room_message(self, message: Message) -> None:
        conv = self._convs.get(ConvKey.room(message.room))
        first = conv is not None and conv.oldest_id is None
        if conv is None or not conv.accept(message.id):
            # a room left a moment ago still had messages on the way
            return
        if first and message.id == 1:
            self.view.view(conv.key).mark_start(f"This is the start of #{message.room}.")
        conv.typing_stopped(message.sender)
        self._show(conv, self._line(message))
        self._refresh_typing()

    def _history(self, event: HistoryLoaded) -> None:
        conv = self._convs.get(ConvKey.room(event.room))
        if conv is None:
            return
        view = self.view.view(conv.key)
        if event.older:
            threshold = conv.oldest_id
            lines = [self._line(m) for m in event.messages
                     if (threshold is None or m.id < threshold) and conv.accept(m.id)]
            view.prepend(lines)
        else:
            mark = conv.read_mark
            if mark is not None and event.messages and conv.key != self.view.active:
                # unread ones older than what the gateway sends at login count too
                conv.unread += max(0, event.messages[0].id - 1 - mark)
            for message in event.messages:
                if conv.accept(message.id):
                    self._show(conv, self._line(message), live=False)
            if conv.key != self.view.active:
                self.view.set_unread(conv.key, conv.unread, conv.mentions)
        conv.history_loaded(event.complete, event.older, len(event.messages))
        room = f"#{conv.key.name}"
        if conv.oldest_id is None:
            view.mark_start(f"No messages in {room} yet. Say hello!")
        elif not conv.has_older:
            view.mark_start(f"This is the start of {room}." if conv.oldest_id <= 1 else
                            f"Older messages of {room} are no longer kept.")
        elif conv.key == self.view.active and view.at_top():
            self.scrolled_to_top(conv.key)

    def _line(self, message: Message) -> ChatLine:
        own = name_key(message.sender) == name_key(self._me)
        return ChatLine(message.sender, message.text, message.ts, own, message.id)

    def _show(self, conv: Conversation, line: ChatLine, live: bool = True) -> None:
        """Append a message, resolving our own pending copy; count unread, ring for DMs
        and mentions while the window is in the background.

        ``live``: it just happened; history at login counts only against the
        server's read mark (accounts), and never rings.
        """
        view = self.view.view(conv.key)
        if line.own:
            pending = conv.take_echo(line.text)
            if pending is not None:
                view.resolve_pending(pending.ref)
        mentioned = not line.own and notify.mentions(line.text, self._me)
        active = conv.key == self.view.active
        counts = live or conv.read_mark is not None
        before = (conv.unread, conv.mentions)
        if counts:
            conv.arrived(line.id, line.own, mentioned, unseen=not active)
            fresh = conv.is_unread(line.id, line.own) and (not active or not live)
            if fresh and not view.has_new_line():
                view.mark_new()  # the "new messages" line, above the first unread one
        view.append(line)
        if (conv.unread, conv.mentions) != before:
            self.view.set_unread(conv.key, conv.unread, conv.mentions)
            self._update_title()
        if (live and not line.own and (mentioned or not conv.key.is_room)
                and not self.window_focused()):
            self.view.frame.bell()

    # -- direct messages and accounts ------------------------------------------

    def _direct(self, dm: DirectMessage) -> None:
        own = name_key(dm.sender) == name_key(self._me)
        thread = self._open_direct(dm.to if own else dm.sender)
        if dm.id is not None and not thread.accept(dm.id):
            return  # already shown (its stored history came first)
        self._show(thread, ChatLine(dm.sender, dm.text, dm.ts, own, dm.id))

    def _account_state(self, dms: Iterable[DmSummary], read: dict[str, int]) -> None:
        """Stored conversations into the sidebar with their unread counts; read marks."""
        active = self.view.active
        marks: list[tuple[Conversation, int, int | None]] = []
        for summary in dms:
            marks.append((self._open_direct(summary.peer), summary.read, summary.last_id))
        for room, mark in read.items():
            conv = self._convs.get(ConvKey.room(room))
            if conv is not None:
                marks.append((conv, mark, None))
        for conv, mark, last_id in marks:
            conv.server_marks(mark, last_id, reading=conv.key == active)
            self._read_sync.known(conv.key, mark)
            self.view.set_unread(conv.key, conv.unread, conv.mentions)
        self._update_title()
        if active is not None and not active.is_room:
            self._ask_dm_history(self._convs[active])

    def _ask_dm_history(self, conv: Conversation) -> None:
        """The stored history of a direct thread, asked once when it is first opened."""
        if conv.history_asked or conv.key.is_room or not self._is_account():
            return
        conv.history_asked = True
        conv.loading_older = True
        self._call(self._client.dm_history, conv.title, conv.oldest_id, HISTORY_PAGE)

    def _dm_history(self, event: DmHistoryLoaded) -> None:
        conv = self._convs.get(ConvKey.direct(event.peer))
        if conv is None:
            return
        view = self.view.view(conv.key)
        threshold = conv.oldest_id
        lines = [ChatLine(m.sender, m.text, m.ts, name_key(m.sender) == name_key(self._me), m.id)
                 for m in event.messages
                 if m.id is not None and (threshold is None or m.id < threshold)
                 and conv.accept(m.id)]
        view.prepend(lines)
        conv.history_loaded(event.complete, True, len(event.messages))
        if conv.oldest_id is None:
            view.mark_start(f"This is the start of your conversation with {conv.title}.")
        elif not conv.has_older:
            view.mark_start(
                f"This is the start of your conversation with {conv.title}."
                if conv.oldest_id <= 1 else
                f"Older messages with {conv.title} are no longer kept.")
        elif conv.key == self.view.active and view.at_top():
            self.scrolled_to_top(conv.key)

    def _ask_passwords(self, kind: str) -> None:
        if self.password_dialog is not None:
            self.password_dialog.close()
        labels: tuple[str, ...]
        if kind == "register":
            title, labels = f"Create an account for {self._me}", ("New password", "Repeat it")
        else:
            title, labels = "Change your password", ("Current password", "New password",
                                                     "Repeat it")
        self.password_dialog = PasswordDialog(
            self.view.frame, self._theme, title, labels,
            lambda texts: self._passwords_entered(kind, texts))

    def _passwords_entered(self, kind: str, texts: list[str] | None) -> str | None:
        """The dialog's answer: a problem to show in it, or None (done, it closes)."""
        if texts is not None:
            *old, new, again = texts
            if new != again:
                return "The two new passwords differ."
            try:
                check_password(new)
            except ProtocolError:
                return wording.WEAK_PASSWORD
            try:
                if kind == "register":
                    self._client.register(new)
                else:
                    self._client.passwd(old[0], new)
            except ChatError as exc:
                return f"Could not do that: {exc}"
            self._awaiting = kind
        self.password_dialog = None
        self.view.composer.entry.focus_force()
        return None

    def account_created(self, name: str) -> None:
        """The app made the name an account ("create account" on the log-in screen)."""
        self._notice(wording.account_created(name))

    def _is_account(self) -> bool:
        try:
            return bool(self._client.account)
        except ChatError:
            return False

    def _sync_read(self) -> None:
        """Tell the server how far the person has read (accounts; see ``ReadSync``)."""
        if not self._online or not self._is_account():
            return
        now = self._clock()
        key = self.view.active
        conv = self._convs.get(key) if key is not None else None
        if (conv is not None and key is not None and conv.newest_id is not None
                and self.view.view(key).at_bottom() and self.window_focused()):
            self._read_sync.reading(key, conv.newest_id, now)
        for marked, up_to in self._read_sync.due(now):
            read = self._convs.get(marked)
            if read is None:
                continue
            read.read_mark = up_to
            if marked.is_room:
                self._call_kw(self._client.mark_read, marked.name, up_to=up_to)
            else:
                self._call_kw(self._client.mark_read, peer=read.title, up_to=up_to)

    def _member_joined(self, room: str, name: str) -> None:
        conv = self._convs.get(ConvKey.room(room))
        if conv is None or not conv.add_member(name):
            return
        if name_key(name) != name_key(self._me):
            self.view.view(conv.key).append_system(f"{name} joined #{room}")
        self._refresh_members(conv.key)

    def _member_left(self, room: str, name: str) -> None:
        conv = self._convs.get(ConvKey.room(room))
        if conv is None or not conv.remove_member(name):
            return
        if name_key(name) != name_key(self._me):
            self.view.view(conv.key).append_system(f"{name} left #{room}")
        self._refresh_members(conv.key)
        self._refresh_typing()

    def _members(self, room: str, names: Iterable[str]) -> None:
        conv = self._convs.get(ConvKey.room(room))
        if conv is None:
            return
        conv.set_members(names)
        if room in self._announce_who:
            self._announce_who.discard(room)
            listed = ", ".join(conv.members()) or "nobody"
            self.view.view(conv.key).append_system(f"In #{room}: {listed}")
        self._refresh_members(conv.key)

    def _send_failed(self, ref: str, error: ProtocolError) -> None:
        key = self._pending_refs.pop(ref, None)
        conv = self._convs.get(key) if key is not None else None
        reason = wording.refusal(error)
        if conv is None:
            self._notice(f"A message was not sent: {reason}", error=True)
            return
        dropped = conv.drop_pending(ref)
        if dropped is not None:
            self._failed[ref] = (conv.key, dropped.text)
        self.view.view(conv.key).fail_pending(ref, reason)

    def _connected(self, gateway: str, name: str, resumed: bool) -> None:
        self._reconnect = None
        self._online = True
        self.view.set_status(wording.connected(gateway, name, resumed), StatusLevel.OK)
        self.view.composer.set_enabled(self.view.active is not None)
        if self._refresh_on_connect:
            # who and history requests are dropped while disconnected: ask again
            self._refresh_on_connect = False
            for key, conv in self._convs.items():
                if not key.is_room and conv.loading_older and conv.oldest_id is None:
                    conv.history_asked = False  # the first answer was lost: ask again
                conv.loading_older = False
                if key.is_room:
                    self._call(self._client.who, key.name)
            active_conv = self._convs.get(self.view.active) if self.view.active else None
            if active_conv is not None:
                self._ask_dm_history(active_conv)
            active = self.view.active
            if active is not None and self.view.view(active).at_top():
                self.scrolled_to_top(active)

    # -- actions (ChatActions) ----------------------------------------------

    def submit(self, text: str) -> None:
        """Enter in the composer: a slash command, or a message for this conversation."""
        try:
            command = commands.parse(text)
        except CommandError as exc:
            self._notice(_sentence(str(exc)), error=True)
            return  # the line stays in the entry, to be fixed
        if command is None:
            return
        payload = _payload(command)
        if payload is not None:
            problem = check_draft(payload, self._max_text).problem
            if problem is not None:
                self._notice(problem, error=True)
                return  # never lose a draft: it stays to be shortened or fixed
        key = self.view.active
        if self._run(command) and not self._closed:
            if key is not None:
                self._drafts.forget(key)
            if self.view.active == key:
                self.view.composer.clear()

    def select(self, key: ConvKey) -> None:
        conv = self._convs.get(key)
        if conv is None:
            return
        conv.read()
        self.view.set_unread(key, 0)
        leaving = self.view.active
        if leaving is not None and leaving != key and self.view.has(leaving):
            self.view.view(leaving).clear_new()  # read now: its line goes
        draft = self._drafts.switch(leaving, self.view.composer.text(), key)
        if key.is_room:
            title, placeholder = f"# {key.name}", f"Message #{key.name}"
        else:
            title, placeholder = conv.title, f"Message {conv.title}"
        self.view.show_conversation(key, title, self._subtitle(conv), placeholder)
        if self.view.composer.text() != draft:
            self._restoring = True  # putting a draft back is not typing
            try:
                self.view.composer.set_text(draft)
            finally:
                self._restoring = False
        self._update_title()
        self._refresh_members(key)
        self._refresh_typing()
        self._ask_dm_history(conv)
        view = self.view.view(key)
        if leaving != key:
            view.frame.update_idletasks()
            view.see_new()
        if view.at_top():
            self.scrolled_to_top(key)

    def retry(self, key: ConvKey, ref: str) -> None:
        """Retry on a failed send: send its text again where it was."""
        failed = self._failed.pop(ref, None)
        if failed is None or failed[0] not in self._convs:
            return
        self.view.view(failed[0]).remove_failed(ref)
        self._send(failed[0], failed[1])

    def join_room(self, room: str) -> None:
        self.view.clear_join()
        self._join(room.strip().lstrip("#"))

    def close_conversation(self, key: ConvKey) -> None:
        self._drafts.forget(key)
        self._read_sync.forget(key)
        if key.is_room:
            self._call(self._client.leave, key.name)
        self._convs.pop(key, None)
        self.view.remove_conversation(key)
        remaining = list(self.view.conversations.keys())
        if self.view.active is None and remaining:
            lobby = ConvKey.room(LOBBY)
            self.select(lobby if lobby in remaining else remaining[0])

    def open_direct(self, name: str) -> None:
        if name_key(name) == name_key(self._me):
            return
        self.select(self._open_direct(name).key)

    def edited(self, text: str) -> None:
        payload = _draft_payload(text)
        check = check_draft(payload, self._max_text)
        self.view.composer.set_counter(check.counter, check.over)
        key = self.view.active
        if (self._restoring or key is None or not key.is_room or not text.strip()
                or _is_command(text)):
            return
        if self._throttle.due(key.name, self._clock()):
            self._call(self._client.typing, key.name)

    def scrolled_to_top(self, key: ConvKey) -> None:
        conv = self._convs.get(key)
        if conv is None or key != self.view.active:
            return
        before = conv.want_older()
        if before is None:
            return
        if key.is_room:
            self._call(self._client.history, key.name, before, HISTORY_PAGE)
        else:
            self._call(self._client.dm_history, conv.title, before, HISTORY_PAGE)

    # -- commands ------------------------------------------------------------

    def _run(self, command: commands.Command) -> bool:
        """Carry out a command; False when it did not happen (the draft stays)."""
        active = self.view.active
        match command:
            case commands.Say(text=text):
                if active is None:
                    self._notice("Join a room first.", error=True)
                    return False
                return self._send(active, text)
            case commands.JoinRoom(room=room):
                self._join(room)
            case commands.LeaveRoom(room=room):
                key = ConvKey.room(room) if room else active
                if key is None or key not in self._convs:
                    self._notice(f"You are not in #{room}." if room else "Nothing to leave.",
                                 error=True)
                    return False
                self.close_conversation(key)
            case commands.SendDirect(to=to, text=text):
                try:
                    check_name(to, "to")
                except ProtocolError as exc:
                    self._notice(wording.refusal(exc), error=True)
                    return False
                if name_key(to) == name_key(self._me):
                    self._notice("That is you.", error=True)
                    return False
                conv = self._open_direct(to)
                sent = self._send(conv.key, text)
                if active is not None:
                    self._drafts.forget(active)
                    self.view.composer.clear()
                self.select(conv.key)
                return sent
            case commands.ShowDirect(to=to):
                try:
                    check_name(to, "to")
                except ProtocolError as exc:
                    self._notice(wording.refusal(exc), error=True)
                    return False
                if name_key(to) == name_key(self._me):
                    self._notice("That is you.", error=True)
                    return False
                self.open_direct(to)
            case commands.Register():
                if self._is_account():
                    self._notice("You are logged in to an account already; "
                                 "/passwd changes its password.")
                    return True
                self._ask_passwords("register")
            case commands.ChangePassword():
                if not self._is_account():
                    self._notice("Only an account has a password: /register makes your "
                                 "name one.")
                    return True
                self._ask_passwords("passwd")
            case commands.ListMembers(room=room):
                target = room or (active.name if active is not None and active.is_room
                                  else None)
                if target is None or ConvKey.room(target) not in self._convs:
                    self._notice("/who needs a room you are in.", error=True)
                    return False
                self._announce_who.add(target)
                self._call(self._client.who, target)
            case commands.Emote(text=text):
                if active is None:
                    self._notice("Join a room first.", error=True)
                    return False
                return self._send(active, commands.emote_text(text))
            case commands.Quit():
                self._on_quit()
            case commands.ShowHelp():
                if active is None:
                    self._notice("Type /help in a conversation.")
                else:
                    help_view = self.view.view(active)
                    for line in commands.HELP.splitlines():
                        help_view.append_system(line, mono=True)  # columns line up
                    for line in wording.GUI_TIPS:
                        help_view.append_system(line)
        return True

    def _join(self, room: str) -> None:
        try:
            check_room(room)
        except ProtocolError as exc:
            self._notice(wording.refusal(exc), error=True)
            return
        key = ConvKey.room(room)
        if key not in self._convs:
            self._open_room(room)
            self._call(self._client.join, room)
            self._call(self._client.who, room)
        self.select(key)

    # -- helpers ---------------------------------------------------------------

    def _send(self, key: ConvKey, text: str) -> bool:
        """Hand a message to the client; False (and a notice) when it was not taken."""
        text = text.strip()
        if not text:
            return False
        conv = self._convs[key]
        try:
            if key.is_room:
                ref = self._client.send(key.name, text)
            else:
                ref = self._client.dm(conv.title, text)
        except ProtocolError as exc:
            self._notice(wording.refusal(exc), error=True)
            return False
        except ChatError as exc:
            self._notice(f"Not sent: {exc}", error=True)
            return False
        conv.add_pending(ref, text)
        self._pending_refs[ref] = key
        self.view.view(key).append_pending(ref, self._me, text, time.time())
        return True

    def _open_room(self, room: str) -> Conversation:
        key = ConvKey.room(room)
        conv = self._convs.get(key)
        if conv is None:
            conv = Conversation(key, f"#{room}")
            self._convs[key] = conv
            self.view.add_conversation(key, room)
        return conv

    def _open_direct(self, peer: str) -> Conversation:
        key = ConvKey.direct(peer)
        conv = self._convs.get(key)
        if conv is None:
            conv = Conversation(key, peer)
            self._convs[key] = conv
            conv.set_members([self._me, peer])
            self.view.add_conversation(key, peer)
            self._refresh_presence()
        return conv

    def _subtitle(self, conv: Conversation) -> str:
        if not conv.key.is_room:
            return "Direct message"
        count = len(conv.members())
        return f"{count} member" + ("" if count == 1 else "s")

    def shown(self) -> None:
        """The app put the view on screen with the keyboard in the composer: title it now,
        so a window titled after a room takes typing (tests and people rely on that)."""
        self._shown = True
        self._update_title()

    def _update_title(self) -> None:
        """'(3) #lobby — ChatService': unread elsewhere first, the conversation shown next."""
        if not self._shown:
            return
        active = self.view.active
        conv = self._convs.get(active) if active is not None else None
        name = None if conv is None else (f"#{conv.key.name}" if conv.key.is_room
                                          else conv.title)
        others = [c for c in self._convs.values() if c.key != active]
        title = notify.window_title(name, sum(c.unread for c in others),
                                    sum(c.mentions for c in others))
        top = self.view.frame.winfo_toplevel()
        if top.title() != title:
            top.title(title)

    def _window_focused(self) -> bool:
        try:
            return self.view.frame.focus_displayof() is not None
        except (tk.TclError, KeyError):
            return False

    def _refresh_presence(self) -> None:
        """DM dots: online when the person is in any of our rooms (``who``, joins, leaves)."""
        online = {name_key(name) for key, conv in self._convs.items() if key.is_room
                  for name in conv.members()}
        for key in self._convs:
            if not key.is_room:
                self.view.conversations.set_presence(key, key.name in online)

    def _refresh_members(self, key: ConvKey) -> None:
        self._refresh_presence()
        conv = self._convs.get(key)
        if conv is None or key != self.view.active:
            return
        names = conv.members()
        title = f"{'MEMBERS' if key.is_room else 'PEOPLE'} · {len(names)}"
        self.view.set_members(names, self._me, title)
        self.view.subtitle.configure(text=self._subtitle(conv))

    def _refresh_typing(self) -> None:
        key = self.view.active
        conv = self._convs.get(key) if key is not None else None
        names = conv.typing_names(self._clock()) if conv is not None else []
        self.view.set_typing(wording.typing_line(names))

    def _show_reconnect(self) -> None:
        retry = self._reconnect
        if retry is None:
            return
        left = max(0.0, retry.at - self._clock())
        self.view.set_status(wording.reconnecting(retry.address, left, retry.attempt),
                             StatusLevel.WARN)

    def _notice(self, text: str, error: bool = False) -> None:
        """A line for the person in the current conversation (or the status line)."""
        key = self.view.active
        if key is None:
            self.view.set_status(text, StatusLevel.ERROR if error else StatusLevel.IDLE)
            return
        view = self.view.view(key)
        if error:
            view.append_error(text)
        else:
            view.append_system(text)

    def _call(self, method: Callable[..., object], *args: object) -> None:
        """Call the client; a refusal (say, while closed) becomes a notice, not a crash."""
        try:
            method(*args)
        except ChatError as exc:
            logger.info("client call %s%r failed: %s", getattr(method, "__name__", method),
                        args, exc)
            self._notice(f"Could not do that: {exc}", error=True)

    def _call_kw(self, method: Callable[..., object], *args: object, **kwargs: object) -> None:
        """``_call`` with keyword arguments."""
        try:
            method(*args, **kwargs)
        except ChatError as exc:
            logger.info("client call %s failed: %s", getattr(method, "__name__", method), exc)

    def _tick(self) -> None:
        self._tick_id = None
        if self._closed:
            return
        self._sync_read()
        self._refresh_typing()
        self._show_reconnect()
        self._tick_id = self.view.frame.after(TICK_MS, self._tick)

    # -- for the app and tests ---------------------------------------------

    def conversation(self, key: ConvKey) -> Conversation | None:
        return self._convs.get(key)

    def read_sent(self, key: ConvKey) -> int | None:
        """The read mark last sent (or known to the server) for a conversation."""
        return self._read_sync.sent(key)

    def close(self) -> None:
        """Stop the timers; the app closes the client."""
        self._closed = True
        if self._tick_id is not None:
            self.view.frame.after_cancel(self._tick_id)
            self._tick_id = None


def _payload(command: commands.Command) -> str | None:
    """The text a command would send, to check before anything is cleared."""
    match command:
        case commands.Say(text=text) | commands.SendDirect(text=text):
            return text
        case commands.Emote(text=text):
            return commands.emote_text(text)
    return None


def _draft_payload(text: str) -> str:
    """What the composer's text would send, for the length counter (best effort)."""
    try:
        command = commands.parse(text)
    except CommandError:
        return text
    payload = _payload(command) if command is not None else None
    return text if payload is None else payload


def _is_command(text: str) -> bool:
    stripped = text.lstrip()
    return stripped.startswith("/") and not stripped.startswith("//")


def _sentence(text: str) -> str:
    """'usage: /join ROOM' -> 'Usage: /join ROOM'."""
    return text[:1].upper() + text[1:]
