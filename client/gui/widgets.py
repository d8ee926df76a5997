"""Small widgets the views share: the status line, the typing line, the
composer (message entry with a placeholder and a send button), and the
placeholder itself. Main thread only.
"""

from __future__ import annotations

import enum
import tkinter as tk
from collections.abc import Callable, Mapping, Sequence
from tkinter import ttk
from typing import Any

from client.gui import notify
from client.gui.theme import Theme


def draw_logo(canvas: tk.Canvas, colour: str, background: str, size: int = 40) -> None:
    """The app's mark: a speech bubble with three dots, drawn (no image files)."""
    r = size * 0.22
    top, bottom, left, right = size * 0.08, size * 0.74, size * 0.04, size * 0.96
    points = [
        left + r, top, right - r, top, right, top, right, top + r, right, bottom - r,
        right, bottom, right - r, bottom, size * 0.42, bottom, size * 0.2, size * 0.96,
        size * 0.26, bottom, left + r, bottom, left, bottom, left, bottom - r, left, top + r,
        left, top, left + r, top,
    ]
    canvas.create_polygon(points, smooth=True, fill=colour, outline="")
    middle = (top + bottom) / 2
    for x in (0.3, 0.5, 0.7):
        cx, d = size * x, size * 0.07
        canvas.create_oval(cx - d, middle - d, cx + d, middle + d, fill=background, outline="")


class StatusLevel(enum.Enum):
    OK = "ok"
    WARN = "warn"
    ERROR = "error"
    IDLE = "idle"


class Placeholder:
    """Grey hint text shown inside an empty entry (Tk entries have none)."""

    def __init__(self, entry: ttk.Entry, variable: tk.StringVar, text: str,
                 foreground: str, background: str, font: object, x: int = 10) -> None:
        self._entry = entry
        self._variable = variable
        self.label = tk.Label(entry, text=text, foreground=foreground, background=background,
                              font=font, borderwidth=0, cursor="xterm")  # type: ignore[arg-type]
        self._x = x
        self.label.bind("<Button-1>", lambda _e: entry.focus_set())
        variable.trace_add("write", lambda *_args: self.refresh())
        self.refresh()

    def set_text(self, text: str) -> None:
        self.label.configure(text=text)

    def refresh(self) -> None:
        if self._variable.get():
            self.label.place_forget()
        else:
            self.label.place(x=self._x, rely=0.5, anchor="w")

    @property
    def visible(self) -> bool:
        return bool(self.label.winfo_manager())


class StatusLine:
    """The bottom line: a coloured dot and what the connection is doing."""

    def __init__(self, master: tk.Misc, theme: Theme) -> None:
        p = theme.palette
        self._colours = {StatusLevel.OK: p.ok, StatusLevel.WARN: p.warn,
                         StatusLevel.ERROR: p.error, StatusLevel.IDLE: p.faint}
        self.frame = ttk.Frame(master, style="Status.TFrame", padding=(12, 4))
        self.dot = tk.Canvas(self.frame, width=10, height=10, highlightthickness=0,
                             background=p.panel, borderwidth=0)
        self._oval = self.dot.create_oval(1, 1, 9, 9, fill=p.faint, outline="")
        self.label = ttk.Label(self.frame, style="Status.TLabel", text="")
        self.dot.grid(row=0, column=0, padx=(0, 8))
        self.label.grid(row=0, column=1, sticky="w")
        self.level = StatusLevel.IDLE

    def set(self, text: str, level: StatusLevel) -> None:
        self.level = level
        self.label.configure(text=text)
        self.dot.itemconfigure(self._oval, fill=self._colours[level])

    def text(self) -> str:
        return str(self.label.cget("text"))


class TypingLine:
    """'alice is typing…' under the messages; keeps its height when empty."""

    def __init__(self, master: tk.Misc, theme: Theme) -> None:
        self.label = ttk.Label(master, style="Typing.TLabel", text="", padding=(20, 0, 0, 0))

    def set(self, text: str) -> None:
        if str(self.label.cget("text")) != text:
            self.label.configure(text=text)

    def text(self) -> str:
        return str(self.label.cget("text"))


class Composer:
    """The message entry: Enter (or the button) submits, any edit reports typing."""

    def __init__(self, master: tk.Misc, theme: Theme, on_submit: Callable[[str], None],
                 on_edit: Callable[[str], None]) -> None:
        p, f = theme.palette, theme.fonts
        self._on_submit = on_submit
        self._on_edit = on_edit
        self.frame = ttk.Frame(master, padding=(16, 6, 16, 14))
        self.frame.columnconfigure(0, weight=1)
        self.variable = tk.StringVar(self.frame)
        self.entry = ttk.Entry(self.frame, textvariable=self.variable, font=f.body, width=8)
        self.entry.configure(style="Composer.TEntry")
        self.placeholder = Placeholder(self.entry, self.variable, "Message", p.faint,
                                       p.surface, f.body, x=14)
        self.button = ttk.Button(self.frame, text="Send", style="Accent.TButton",
                                 command=self.submit, width=6)
        self.entry.grid(row=0, column=0, sticky="ew")
        self.button.grid(row=0, column=1, padx=(8, 0), sticky="ns")
        self._counter_styles = ("Counter.TLabel", "CounterOver.TLabel")
        self.counter = ttk.Label(self.frame, text="", style="Counter.TLabel", anchor="e")
        self.counter.grid(row=1, column=0, sticky="e", pady=(3, 0))
        self.counter.grid_remove()
        self.entry.bind("<Return>", self._return)
        self.entry.bind("<KP_Enter>", self._return)
        self.variable.trace_add("write", lambda *_args: self._on_edit(self.variable.get()))

    def submit(self) -> None:
        text = self.variable.get()
        if text.strip():
            self._on_submit(text)

    def clear(self) -> None:
        self.variable.set("")

    def set_text(self, text: str) -> None:
        """Replace the draft (cursor at its end)."""
        self.variable.set(text)
        self.entry.icursor("end")
        self.entry.xview("end")

    def set_counter(self, text: str, over: bool) -> None:
        """The length counter under the entry; red past the limit; hidden when ''."""
        if not text:
            self.counter.grid_remove()
            return
        self.counter.configure(text=text, style=self._counter_styles[over])
        self.counter.grid()

    def counter_text(self) -> str:
        return str(self.counter.cget("text")) if self.counter.winfo_manager() else ""

    def text(self) -> str:
        return self.variable.get()

    def focus(self) -> None:
        self.entry.focus_set()

    def set_enabled(self, enabled: bool) -> None:
        state = "normal" if enabled else "disabled"
        self.entry.configure(state=state)
        self.button.configure(state=state)

    def _return(self, _event: object) -> str:
        self.submit()
        return "break"


class QuickSwitcher:
    """Ctrl+K: a small window over the chat; type to filter, Enter goes, Escape closes."""

    def __init__(self, master: tk.Misc, theme: Theme, entries: Mapping[str, object],
                 on_choose: Callable[[Any], None]) -> None:
        p, f = theme.palette, theme.fonts
        self._entries = entries
        self._on_choose = on_choose
        self._shown: list[str] = []
        top = master.winfo_toplevel()
        self.window = tk.Toplevel(top, background=p.border, padx=1, pady=1)
        self.window.withdraw()
        self.window.overrideredirect(True)
        self.window.transient(top)
        inner = ttk.Frame(self.window, padding=10)
        inner.grid(sticky="nsew")
        inner.columnconfigure(0, weight=1)
        ttk.Label(inner, text="Switch to… (Enter to go, Esc to close)", style="Hint.TLabel").grid(
            row=0, column=0, sticky="w", pady=(0, 6))
        self.variable = tk.StringVar(inner)
        self.entry = ttk.Entry(inner, textvariable=self.variable, font=f.body, width=34)
        self.entry.grid(row=1, column=0, sticky="ew")
        self.list = tk.Listbox(inner, height=7, activestyle="none", borderwidth=0,
                               highlightthickness=0, font=f.body, background=p.surface,
                               selectbackground=p.selection, selectforeground=p.text,
                               exportselection=False)
        self.list.grid(row=2, column=0, sticky="ew", pady=(6, 0))
        self.variable.trace_add("write", lambda *_a: self._filter())
        self.entry.bind("<Return>", lambda _e: self._choose())
        self.entry.bind("<KP_Enter>", lambda _e: self._choose())
        self.entry.bind("<Escape>", lambda _e: self.close())
        self.entry.bind("<Down>", lambda _e: self._move(1))
        self.entry.bind("<Up>", lambda _e: self._move(-1))
        self.list.bind("<Double-Button-1>", lambda _e: self._choose())
        self._filter()
        top.update_idletasks()
        x = top.winfo_rootx() + max(0, (top.winfo_width() - 380) // 2)
        y = top.winfo_rooty() + 80
        self.window.geometry(f"+{x}+{y}")
        self.window.deiconify()
        self.window.lift()
        self.entry.focus_force()

    def shown(self) -> list[str]:
        return list(self._shown)

    def close(self) -> None:
        self._finish(None)

    def _filter(self) -> None:
        self._shown = notify.rank(self.variable.get(), list(self._entries))
        self.list.delete(0, "end")
        for title in self._shown:
            self.list.insert("end", title)
        if self._shown:
            self.list.selection_set(0)

    def _move(self, step: int) -> str:
        chosen: tuple[int, ...] = self.list.curselection()  # type: ignore[no-untyped-call]
        index = (chosen[0] if chosen else -1) + step
        if 0 <= index < len(self._shown):
            self.list.selection_clear(0, "end")
            self.list.selection_set(index)
            self.list.see(index)
        return "break"

    def _choose(self) -> str:
        chosen: tuple[int, ...] = self.list.curselection()  # type: ignore[no-untyped-call]
        if chosen:
            self._finish(self._entries[self._shown[chosen[0]]])
        return "break"

    def _finish(self, choice: object) -> None:
        if self.window.winfo_exists():
            self.window.destroy()
        self._on_choose(choice)


class PasswordDialog:
    """/register and /passwd in the window: masked fields over the chat; Enter goes on to
    the next empty field and, in the last, submits; Escape closes. ``on_done`` gets the
    texts (None when closed) and returns a problem to show, keeping the dialog open, or
    None to close it."""

    def __init__(self, master: tk.Misc, theme: Theme, title: str, labels: Sequence[str],
                 on_done: Callable[[list[str] | None], str | None]) -> None:
        p = theme.palette
        self._on_done = on_done
        top = master.winfo_toplevel()
        self.window = tk.Toplevel(top, background=p.border, padx=1, pady=1)
        self.window.withdraw()
        self.window.overrideredirect(True)
        self.window.transient(top)
        inner = ttk.Frame(self.window, padding=(18, 14))
        inner.grid(sticky="nsew")
        inner.columnconfigure(0, weight=1)
        ttk.Label(inner, text=title, style="Heading.TLabel").grid(row=0, column=0, sticky="w")
        ttk.Label(inner, text="Enter to go on, Esc to cancel", style="Hint.TLabel").grid(
            row=1, column=0, sticky="w", pady=(0, 8))
        self.entries: list[ttk.Entry] = []
        for index, label in enumerate(labels):
            ttk.Label(inner, text=label.upper(), style="Field.TLabel").grid(
                row=2 + 2 * index, column=0, sticky="w")
            entry = ttk.Entry(inner, show="•", width=34)
            entry.grid(row=3 + 2 * index, column=0, sticky="ew", pady=(3, 8))
            entry.bind("<Return>", self._return)
            entry.bind("<KP_Enter>", self._return)
            entry.bind("<Escape>", lambda _e: self.close())
            self.entries.append(entry)
        self.error = ttk.Label(inner, text="", style="Error.TLabel", wraplength=300,
                               justify="left")
        self.error.grid(row=2 + 2 * len(labels), column=0, sticky="ew")
        top.update_idletasks()
        x = top.winfo_rootx() + max(0, (top.winfo_width() - 360) // 2)
        y = top.winfo_rooty() + 80
        self.window.geometry(f"+{x}+{y}")
        self.window.deiconify()
        self.window.lift()
        self.entries[0].focus_force()

    def error_text(self) -> str:
        return str(self.error.cget("text"))

    def close(self) -> None:
        if self.window.winfo_exists():
            self.window.destroy()
        self._on_done(None)

    def _return(self, event: tk.Event[tk.Misc]) -> str:
        widget = event.widget
        index = next((i for i, e in enumerate(self.entries) if e is widget), 0)
        if index + 1 < len(self.entries) and not self.entries[index + 1].get():
            self.entries[index + 1].focus_set()
        else:
            problem = self._on_done([entry.get() for entry in self.entries])
            if problem is None:
                if self.window.winfo_exists():
                    self.window.destroy()
            else:
                self.error.configure(text=problem)
        return "break"
