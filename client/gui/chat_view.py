"""The chat window: conversations on the left, messages in the middle,
members on the right, the connection status at the bottom.

The view owns its widgets and knows nothing about the network: it shows what
the controller tells it (``show_conversation``, ``set_members``, ...) and
reports what the person does through a ``ChatActions`` object. Three panes
in a ``ttk.Panedwindow`` with grid weights keep it usable from 600x400 to
full screen. Main thread only.
"""

from __future__ import annotations

import contextlib
import tkinter as tk
from collections.abc import Callable, Sequence
from tkinter import ttk
from typing import Protocol

from client.gui.message_view import MessageView
from client.gui.model import ConvKey
from client.gui.sidebar import ConversationList, MemberList
from client.gui.theme import Theme
from client.gui.widgets import (
    Composer,
    Placeholder,
    QuickSwitcher,
    StatusLevel,
    StatusLine,
    TypingLine,
)


class ChatActions(Protocol):
    """What the person did in the chat view; the controller implements it."""

    def submit(self, text: str) -> None: ...

    def select(self, key: ConvKey) -> None: ...

    def join_room(self, room: str) -> None: ...

    def close_conversation(self, key: ConvKey) -> None: ...

    def open_direct(self, name: str) -> None: ...

    def edited(self, text: str) -> None: ...

    def scrolled_to_top(self, key: ConvKey) -> None: ...

    def retry(self, key: ConvKey, ref: str) -> None: ...


class ChatView:
    """The logged-in window; one ``MessageView`` per conversation, one shown."""

    def __init__(self, master: tk.Misc, theme: Theme, actions: ChatActions, me: str) -> None:
        p = theme.palette
        self._theme = theme
        self._actions = actions
        self._views: dict[ConvKey, MessageView] = {}
        self._active: ConvKey | None = None
        self._me = me
        self.switcher: QuickSwitcher | None = None

        self.frame = ttk.Frame(master, style="Window.TFrame")
        self.frame.columnconfigure(0, weight=1)
        self.frame.rowconfigure(0, weight=1)
        self.paned = ttk.Panedwindow(self.frame, orient="horizontal")
        self.paned.grid(row=0, column=0, sticky="nsew")

        # left: who am I, conversations, join field
        sidebar = ttk.Frame(self.paned, style="Sidebar.TFrame", width=200)
        sidebar.columnconfigure(0, weight=1)
        sidebar.rowconfigure(2, weight=1)
        ttk.Label(sidebar, text="ChatService", style="Brand.TLabel",
                  padding=(16, 14, 16, 0)).grid(row=0, column=0, sticky="ew")
        self.identity = ttk.Label(sidebar, text=f"signed in as {me}", style="Sidebar.TLabel",
                                  padding=(16, 2, 16, 12))
        self.identity.grid(row=1, column=0, sticky="ew")
        self.conversations = ConversationList(sidebar, theme, on_select=actions.select,
                                              on_close=actions.close_conversation)
        self.conversations.tree.grid(row=2, column=0, sticky="nsew")
        self.join_var = tk.StringVar(sidebar)
        self.join_entry = ttk.Entry(sidebar, textvariable=self.join_var, style="Sidebar.TEntry",
                                    width=8)
        self.join_entry.grid(row=3, column=0, sticky="ew", padx=12, pady=12)
        self.join_placeholder = Placeholder(self.join_entry, self.join_var, "+  Join a room",
                                            p.sidebar_muted, p.sidebar_hover,
                                            theme.fonts.body, x=8)
        self.join_entry.bind("<Return>", self._join_return)
        self.join_entry.bind("<KP_Enter>", self._join_return)

        # middle: header, messages, typing line, composer
        centre = ttk.Frame(self.paned)
        centre.columnconfigure(0, weight=1)
        centre.rowconfigure(3, weight=1)
        header = ttk.Frame(centre, padding=(20, 12, 12, 10))
        header.grid(row=0, column=0, sticky="ew")
        header.columnconfigure(0, weight=1)
        self.title = ttk.Label(header, text="", style="Heading.TLabel")
        self.title.grid(row=0, column=0, sticky="w")
        self.subtitle = ttk.Label(header, text="", style="Muted.TLabel",
                                  font=theme.fonts.small)
        self.subtitle.grid(row=1, column=0, sticky="w")
        self.close_button = ttk.Button(header, text="Leave", style="Small.Flat.TButton",
                                       command=self._close_active)
        self.close_button.grid(row=0, column=1, rowspan=2, sticky="e")
        tk.Frame(centre, height=1, background=p.border).grid(row=1, column=0, sticky="ew")
        self.banner = tk.Label(centre, text="", anchor="w", padx=20, pady=6,
                               font=theme.fonts.small_bold, borderwidth=0)
        self.banner.grid(row=2, column=0, sticky="ew")
        self.banner.grid_remove()
        self.stack = ttk.Frame(centre)
        self.stack.grid(row=3, column=0, sticky="nsew")
        self.stack.columnconfigure(0, weight=1)
        self.stack.rowconfigure(0, weight=1)
        self.empty = ttk.Label(self.stack, text="Join a room to start chatting.",
                               style="Muted.TLabel", anchor="center")
        self.empty.grid(row=0, column=0, sticky="nsew")
        self.typing = TypingLine(centre, theme)
        self.typing.label.grid(row=4, column=0, sticky="ew", pady=(2, 0))
        self.composer = Composer(centre, theme, on_submit=actions.submit,
                                 on_edit=actions.edited)
        self.composer.frame.grid(row=5, column=0, sticky="ew")

        # right: members
        people = ttk.Frame(self.paned, style="Panel.TFrame", width=170)
        people.columnconfigure(0, weight=1)
        people.rowconfigure(1, weight=1)
        self.members_title = ttk.Label(people, text="MEMBERS", style="Panel.TLabel",
                                       padding=(14, 16, 14, 8))
        self.members_title.grid(row=0, column=0, sticky="ew")
        self.members = MemberList(people, theme, on_activate=actions.open_direct)
        self.members.tree.grid(row=1, column=0, sticky="nsew", padx=(4, 0))

        self.paned.add(sidebar, weight=0)
        self.paned.add(centre, weight=1)
        self.paned.add(people, weight=0)
        self.status = StatusLine(self.frame, theme)
        tk.Frame(self.frame, height=1, background=p.border).grid(row=1, column=0, sticky="ew")
        self.status.frame.grid(row=2, column=0, sticky="ew")
        self._show_empty()
        top = self.frame.winfo_toplevel()
        self._bindings: list[tuple[str, str]] = []
        for number in range(1, 10):
            self._bind(top, f"<Alt-Key-{number}>", self._select_number_handler(number))
        self._bind(top, "<Control-Key-k>", lambda _e: self.open_switcher())
        self._bind(top, "<Control-Key-K>", lambda _e: self.open_switcher())
        self.frame.bind("<Destroy>", self._unbind, add="+")

    # -- keyboard ---------------------------------------------------------------

    def _bind(self, top: tk.Misc, sequence: str, handler: Callable[[object], object]) -> None:
        def run(event: object) -> str:
            handler(event)
            return "break"

        self._bindings.append((sequence, top.bind(sequence, run)))

    def _unbind(self, event: tk.Event[tk.Misc]) -> None:
        if event.widget is not self.frame:
            return
        top = self.frame.winfo_toplevel()
        for sequence, func_id in self._bindings:
            with contextlib.suppress(tk.TclError):
                top.unbind(sequence, func_id)
        self._bindings = []

    def _select_number_handler(self, number: int) -> Callable[[object], None]:
        return lambda _event: self.select_number(number)

    def select_number(self, number: int) -> None:
        """Alt+N: the N-th conversation of the list (rooms first, then people)."""
        keys = self.conversations.keys()
        if 0 < number <= len(keys):
            self._actions.select(keys[number - 1])

    def open_switcher(self) -> None:
        """Ctrl+K: a box to type part of a room's or person's name, Enter to go there."""
        if self.switcher is not None:
            self.switcher.close()
        listed = self.conversations.keys()
        entries = {self.conversations.title(key): key for key in listed}
        self.switcher = QuickSwitcher(self.frame, self._theme, entries,
                                      on_choose=self._switched)

    def _switched(self, key: ConvKey | None) -> None:
        self.switcher = None
        if key is not None:
            self._actions.select(key)
        # the switcher's window had the keyboard: take it back to the main window
        self.composer.entry.focus_force()

    # -- conversations -------------------------------------------------------

    def add_conversation(self, key: ConvKey, title: str) -> MessageView:
        view = self._views.get(key)
        if view is None:
            view = MessageView(self.stack, self._theme,
                               on_scroll_top=lambda: self._actions.scrolled_to_top(key),
                               me=self._me,
                               on_retry=lambda ref: self._actions.retry(key, ref))
            self._views[key] = view
            self.conversations.add(key, title)
        return view

    def remove_conversation(self, key: ConvKey) -> None:
        view = self._views.pop(key, None)
        if view is not None:
            view.frame.destroy()
        self.conversations.remove(key)
        if self._active == key:
            self._active = None
            self._show_empty()

    def show_conversation(self, key: ConvKey, title: str, subtitle: str,
                          placeholder: str) -> None:
        """Raise ``key``'s messages, select it on the left, retitle the header."""
        view = self._views[key]
        if self._active != key:
            if self._active is not None and self._active in self._views:
                self._views[self._active].frame.grid_remove()
            self.empty.grid_remove()
            view.frame.grid(row=0, column=0, sticky="nsew")
            self._active = key
        self.conversations.select(key)
        self.set_header(title, subtitle)
        self.close_button.configure(text="Leave room" if key.is_room else "Close")
        self.close_button.grid()
        self.composer.placeholder.set_text(placeholder)
        self.composer.set_enabled(True)
        if self.frame.focus_get() is not self.conversations.tree:
            self.composer.focus()  # arrows in the list keep the focus there

    def view(self, key: ConvKey) -> MessageView:
        return self._views[key]

    def has(self, key: ConvKey) -> bool:
        return key in self._views

    @property
    def active(self) -> ConvKey | None:
        return self._active

    # -- details ---------------------------------------------------------------

    def set_header(self, title: str, subtitle: str) -> None:
        self.title.configure(text=title)
        self.subtitle.configure(text=subtitle)

    def set_unread(self, key: ConvKey, count: int, mentions: int = 0) -> None:
        self.conversations.set_unread(key, count, mentions)

    def set_members(self, names: Sequence[str], me: str, title: str) -> None:
        self.members.set_members(names, me)
        self.members_title.configure(text=title)

    def set_typing(self, text: str) -> None:
        self.typing.set(text)

    def set_status(self, text: str, level: StatusLevel) -> None:
        """The status line; trouble also shows as a banner above the messages."""
        self.status.set(text, level)
        p = self._theme.palette
        if level is StatusLevel.WARN:
            self.banner.configure(text=text, background=p.warn_tint, foreground=p.warn)
            self.banner.grid()
        elif level is StatusLevel.ERROR:
            self.banner.configure(text=text, background=p.error_tint, foreground=p.error)
            self.banner.grid()
        else:
            self.banner.grid_remove()

    def clear_join(self) -> None:
        self.join_var.set("")

    # -- internals -------------------------------------------------------------

    def _show_empty(self) -> None:
        self.empty.grid()
        self.set_header("No conversation", "")
        self.close_button.grid_remove()
        self.members.set_members([], "")
        self.members_title.configure(text="MEMBERS")
        self.typing.set("")
        self.composer.set_enabled(False)

    def _close_active(self) -> None:
        if self._active is not None:
            self._actions.close_conversation(self._active)

    def _join_return(self, _event: object) -> str:
        room = self.join_var.get().strip().lstrip("#")
        if room:
            self._actions.join_room(room)
        return "break"
