"""Connects the chat view to a ``ChatClient``: events in, actions out.

``handle`` applies one client event to the conversation states
(``model``) and the widgets (``ChatView``); the ``ChatActions`` methods turn
what the person does into client calls. Runs on the Tk main thread only, so
the states need no lock; the client's own thread never calls in here (its
events arrive through the app's queue).
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
    Acked,
    Closed,
    Connected,
    DirectReceived,
    Disconnected,
    EpochReset,
    HistoryLoaded,
    MemberJoined,
    MemberLeft,
    Members,
    Reconnecting,
    RoomMessage,
    SendFailed,
    ServerError,
    Typing,
)
from client.gui import notify, wording
from client.gui.chat_view import ChatView
from client.gui.message_view import ChatLine
from client.gui.model import Conversation, ConvKey, Drafts, TypingThrottle
from client.gui.ports import ChatClientLike
from client.gui.theme import Theme
from client.gui.widgets import StatusLevel
from protocol.errors import ChatError, ProtocolError
from protocol.frames import Message
from protocol.limits import Limits
from protocol.names import LOBBY, check_name, check_room, name_key

logger = logging.getLogger(__name__)

TICK_MS = 250
"""How often typing hints expire and the reconnect countdown moves."""

HISTORY_PAGE = 50

DEFAULT_MAX_TEXT = Limits().max_text


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
                own = name_key(dm.sender) == name_key(self._me)
                thread = self._open_direct(dm.to if own else dm.sender)
                self._show(thread, ChatLine(dm.sender, dm.text, dm.ts, own))
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
            for message in event.messages:
                if conv.accept(message.id):
                    self._show(conv, self._line(message), count_unread=False)
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

    def _show(self, conv: Conversation, line: ChatLine, count_unread: bool = True) -> None:
        """Append a message, resolving our own pending copy; count unread, ring for DMs
        and mentions while the window is in the background."""
        view = self.view.view(conv.key)
        if line.own:
            pending = conv.take_echo(line.text)
            if pending is not None:
                view.resolve_pending(pending.ref)
        mentioned = not line.own and notify.mentions(line.text, self._me)
        unseen = count_unread and not line.own and conv.key != self.view.active
        if unseen and conv.unread == 0:
            view.mark_new()  # the "new messages" line, above the first unread one
        view.append(line)
        if not count_unread or line.own:
            return
        if unseen:
            conv.unread += 1
            conv.mentions += mentioned
            self.view.set_unread(conv.key, conv.unread, conv.mentions)
            self._update_title()
        if (mentioned or not conv.key.is_room) and not self.window_focused():
            self.view.frame.bell()

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
        self.view.set_status(wording.connected(gateway, name, resumed), StatusLevel.OK)
        self.view.composer.set_enabled(self.view.active is not None)
        if self._refresh_on_connect:
            # who and history requests are dropped while disconnected: ask again
            self._refresh_on_connect = False
            for key, conv in self._convs.items():
                conv.loading_older = False
                if key.is_room:
                    self._call(self._client.who, key.name)
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
        conv.unread = 0
        conv.mentions = 0
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
        if before is not None:
            self._call(self._client.history, key.name, before, HISTORY_PAGE)

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

    def _tick(self) -> None:
        self._tick_id = None
        if self._closed:
            return
        self._refresh_typing()
        self._show_reconnect()
        self._tick_id = self.view.frame.after(TICK_MS, self._tick)

    # -- for the app and tests ---------------------------------------------

    def conversation(self, key: ConvKey) -> Conversation | None:
        return self._convs.get(key)

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
