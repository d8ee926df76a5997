"""The side lists: conversations (rooms and direct threads) and room members.

Both are ``ttk.Treeview``s styled as flat lists. The conversation list shows
an unread count beside each entry (mentions of the reader counted apart)
and, for people, whether they are online (a green dot) or not (a grey
ring); it reports selections. The member list
shows a coloured dot per person (the same colour as their messages) and
opens a direct thread on double-click. Main thread only.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable, Sequence
from tkinter import ttk

from client.gui import notify
from client.gui.model import ConvKey
from client.gui.theme import Theme, dot_image, sender_colour
from protocol.names import name_key

_ROOMS = "section:rooms"
_DIRECT = "section:direct"


class ConversationList:
    """Rooms and direct threads with unread counts; selecting one reports its key."""

    def __init__(self, master: tk.Misc, theme: Theme,
                 on_select: Callable[[ConvKey], None],
                 on_close: Callable[[ConvKey], None]) -> None:
        p, f = theme.palette, theme.fonts
        self._theme = theme
        self._on_select = on_select
        self._on_close = on_close
        self._keys: dict[str, ConvKey] = {}
        self._titles: dict[str, str] = {}
        self._online: dict[str, bool] = {}
        self._selected: ConvKey | None = None
        self._images: dict[str, tk.PhotoImage] = {}
        self.tree = ttk.Treeview(master, style="Sidebar.Treeview", show="tree",
                                 columns=("unread",), selectmode="browse")
        self.tree.column("#0", stretch=True, width=136, minwidth=60)
        self.tree.column("unread", stretch=False, width=54, minwidth=30, anchor="e")
        self.tree.tag_configure("section", font=f.section, foreground=p.sidebar_muted)
        self.tree.tag_configure("unread", font=f.bold, foreground="#ffffff")
        self.tree.tag_configure("mention", font=f.bold, foreground=p.unread)
        self.tree.insert("", "end", _ROOMS, text="   ROOMS", open=True, tags=("section",))
        self.tree.insert("", "end", _DIRECT, text="   DIRECT MESSAGES", open=True,
                         tags=("section",))
        self.tree.bind("<<TreeviewSelect>>", self._selected_changed)
        self.tree.bind("<Button-3>", self._context_menu)
        self._menu = tk.Menu(self.tree, tearoff=False)

    # -- what the chat view calls ------------------------------------------

    def add(self, key: ConvKey, title: str) -> None:
        if key.ident in self._keys:
            return
        self._keys[key.ident] = key
        if key.is_room:
            self._titles[key.ident] = f"#{title}"
            self.tree.insert(_ROOMS, self._room_index(key.name), key.ident,
                             text=f"  #  {title}", values=("",))
        else:
            self._titles[key.ident] = title
            self.tree.insert(_DIRECT, "end", key.ident, text=f" {title}", values=("",),
                             image=self._presence_dot(False))
            self._online[key.ident] = False

    def remove(self, key: ConvKey) -> None:
        if self._keys.pop(key.ident, None) is not None:
            self.tree.delete(key.ident)
            self._titles.pop(key.ident, None)
            self._online.pop(key.ident, None)
        if self._selected == key:
            self._selected = None

    def select(self, key: ConvKey) -> None:
        self._selected = key
        if self.tree.selection() != (key.ident,):
            self.tree.selection_set(key.ident)
        self.tree.see(key.ident)

    def set_unread(self, key: ConvKey, count: int, mentions: int = 0) -> None:
        """The count beside an entry; mentions of the reader counted apart ('@1 3')."""
        if key.ident not in self._keys:
            return
        label = notify.badge(count, mentions)
        tags = ("mention",) if mentions else ("unread",) if count else ()
        self.tree.item(key.ident, values=(f"{label} " if label else "",), tags=tags)

    def set_presence(self, key: ConvKey, online: bool) -> None:
        """A person's dot: green when they are online, a grey ring when not."""
        if key.ident not in self._keys or key.is_room or self._online.get(key.ident) == online:
            return
        self._online[key.ident] = online
        self.tree.item(key.ident, image=self._presence_dot(online))

    def online(self, key: ConvKey) -> bool | None:
        return self._online.get(key.ident)

    def title(self, key: ConvKey) -> str:
        return self._titles.get(key.ident, key.name)

    # -- for tests -----------------------------------------------------------

    def keys(self) -> list[ConvKey]:
        order = list(self.tree.get_children(_ROOMS)) + list(self.tree.get_children(_DIRECT))
        return [self._keys[ident] for ident in order]

    def unread(self, key: ConvKey) -> int:
        value = str(self.tree.set(key.ident, "unread")).split()
        return int(value[-1].rstrip("+")) if value else 0

    def mentions(self, key: ConvKey) -> int:
        value = str(self.tree.set(key.ident, "unread")).split()
        return int(value[0][1:]) if len(value) == 2 else 0

    # -- internals ---------------------------------------------------------

    def _room_index(self, room: str) -> int:
        rooms = [self._keys[ident].name for ident in self.tree.get_children(_ROOMS)]
        return sum(1 for other in rooms if other < room)

    def _presence_dot(self, online: bool) -> tk.PhotoImage:
        p = self._theme.palette
        key = "online" if online else "offline"
        if key not in self._images:
            self._images[key] = dot_image(self.tree, p.online if online else p.offline,
                                          p.sidebar, ring=not online)
        return self._images[key]

    def _selected_changed(self, _event: object) -> None:
        chosen = self.tree.selection()
        key = self._keys.get(chosen[0]) if chosen else None
        if key is None:
            if self._selected is not None and self._selected.ident in self._keys:
                self.tree.selection_set(self._selected.ident)
            return
        if key != self._selected:
            self._selected = key
            self._on_select(key)

    def _context_menu(self, event: tk.Event[tk.Misc]) -> None:
        key = self._keys.get(self.tree.identify_row(event.y))
        if key is None:
            return
        self._menu.delete(0, "end")
        label = f"Leave #{key.name}" if key.is_room else "Close conversation"
        self._menu.add_command(label=label, command=lambda: self._on_close(key))
        self._menu.tk_popup(event.x_root, event.y_root)


class MemberList:
    """Who is in the current room; double-click someone to message them."""

    def __init__(self, master: tk.Misc, theme: Theme,
                 on_activate: Callable[[str], None]) -> None:
        self._theme = theme
        self._on_activate = on_activate
        self._images: dict[str, tk.PhotoImage] = {}
        self._names: dict[str, str] = {}
        self.tree = ttk.Treeview(master, style="Members.Treeview", show="tree",
                                 selectmode="browse")
        self.tree.column("#0", stretch=True, width=140, minwidth=60)
        self.tree.tag_configure("me", foreground=theme.palette.muted)
        self.tree.bind("<Double-Button-1>", self._activated)
        self.tree.bind("<Return>", self._activated)

    def set_members(self, names: Sequence[str], me: str) -> None:
        """Show exactly ``names`` (sorted by the caller), marking the user's own."""
        self.tree.delete(*self.tree.get_children())
        self._names = {}
        for name in names:
            ident = name_key(name)
            self._names[ident] = name
            own = ident == name_key(me)
            self.tree.insert("", "end", ident, text=f" {name}" + ("  (you)" if own else ""),
                             image=self._dot(name), tags=("me",) if own else ())

    def names(self) -> list[str]:
        return [self._names[ident] for ident in self.tree.get_children()]

    def activate(self, name: str) -> None:
        """What a double-click on ``name`` does; tests call it directly."""
        self._on_activate(name)

    def _dot(self, name: str) -> tk.PhotoImage:
        colour = sender_colour(name)
        if colour not in self._images:
            self._images[colour] = dot_image(self.tree, colour, self._theme.palette.panel)
        return self._images[colour]

    def _activated(self, event: tk.Event[tk.Misc]) -> None:
        by_key = getattr(event, "keysym", "") == "Return"
        ident = str(self.tree.focus() if by_key else self.tree.identify_row(event.y))
        name = self._names.get(ident)
        if name is not None:
            # after the class bindings, which move the keyboard focus to the tree
            self.tree.after_idle(self.activate, name)
