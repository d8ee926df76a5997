"""The log-in screen: a name, a password (optional), "create an account", the gateway
address(es), and why a log-in failed.

Without a password the person joins as a guest; with one they log in to their
account; with "create an account" ticked they join as a guest and make the name
an account with that password.

The view only collects input and shows state; the app validates, connects on
a worker thread and calls ``show_error``/``set_busy`` with the outcome.
Main thread only.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from dataclasses import dataclass, field
from tkinter import ttk

from client.gui.theme import Theme
from client.gui.widgets import draw_logo


def split_addresses(text: str) -> list[str]:
    """'a:1, b:2,' -> ['a:1', 'b:2']: the comma-separated gateway field."""
    return [part.strip() for part in text.split(",") if part.strip()]


@dataclass(frozen=True, slots=True)
class LoginRequest:
    """What the person asked for; ``password`` empty for a guest."""

    name: str
    gateways: str
    password: str = field(default="", repr=False)
    create: bool = False


class LoginView:
    """A centred card with the fields; Enter anywhere in it logs in."""

    def __init__(self, master: tk.Misc, theme: Theme, gateways: str,
                 on_login: Callable[[LoginRequest], None], name: str = "",
                 on_cancel: Callable[[], None] | None = None) -> None:
        self._on_login = on_login
        self._on_cancel = on_cancel
        self.frame = ttk.Frame(master, style="Window.TFrame")
        self.frame.columnconfigure(0, weight=1)
        self.frame.rowconfigure(0, weight=1)
        self.frame.rowconfigure(2, weight=1)

        card = ttk.Frame(self.frame, style="Card.TFrame", padding=(36, 14, 36, 14))
        card.grid(row=1, column=0, padx=16, pady=8)
        card.columnconfigure(0, weight=1, minsize=340)
        self.card = card

        brand = ttk.Frame(card)
        brand.grid(row=0, column=0, sticky="w")
        logo = tk.Canvas(brand, width=40, height=40, highlightthickness=0,
                         background=theme.palette.surface)
        draw_logo(logo, theme.palette.accent, theme.palette.surface)
        logo.grid(row=0, column=0, rowspan=2, padx=(0, 12))
        ttk.Label(brand, text="ChatService", style="Title.TLabel").grid(
            row=0, column=1, sticky="w")
        ttk.Label(brand, text="Sign in to start chatting", style="Muted.TLabel").grid(
            row=1, column=1, sticky="w")
        ttk.Frame(card, height=6).grid(row=1, column=0)

        ttk.Label(card, text="YOUR NAME", style="Field.TLabel").grid(
            row=2, column=0, sticky="w")
        self.name_var = tk.StringVar(card, value=name)
        self.name_entry = ttk.Entry(card, textvariable=self.name_var)
        self.name_entry.grid(row=3, column=0, sticky="ew", pady=(3, 6))

        password_label = ttk.Frame(card)
        password_label.grid(row=4, column=0, sticky="ew")
        ttk.Label(password_label, text="PASSWORD", style="Field.TLabel").grid(
            row=0, column=0, sticky="w")
        ttk.Label(password_label, text="  optional — empty to join as a guest",
                  style="Hint.TLabel").grid(row=0, column=1, sticky="w")
        self.password_var = tk.StringVar(card, value="")
        self.password_entry = ttk.Entry(card, textvariable=self.password_var, show="•")
        self.password_entry.grid(row=5, column=0, sticky="ew", pady=(3, 2))
        self.create_var = tk.BooleanVar(card, value=False)
        self.create_check = ttk.Checkbutton(
            card, text="Create an account with this name and password",
            variable=self.create_var)
        self.create_check.grid(row=6, column=0, sticky="w", pady=(2, 6))

        gateway_label = ttk.Frame(card)
        gateway_label.grid(row=7, column=0, sticky="ew")
        ttk.Label(gateway_label, text="GATEWAY ADDRESS", style="Field.TLabel").grid(
            row=0, column=0, sticky="w")
        ttk.Label(gateway_label, text="  host:port, several comma-separated",
                  style="Hint.TLabel").grid(row=0, column=1, sticky="w")
        self.gateways_var = tk.StringVar(card, value=gateways)
        self.gateways_entry = ttk.Entry(card, textvariable=self.gateways_var)
        self.gateways_entry.grid(row=8, column=0, sticky="ew", pady=(3, 0))

        self.error_var = tk.StringVar(card, value="")
        self.error_label = ttk.Label(card, textvariable=self.error_var, style="Error.TLabel",
                                     wraplength=340, justify="left")
        self.error_label.grid(row=10, column=0, sticky="ew", pady=(8, 0))
        self.error_label.grid_remove()
        self.error_var.trace_add("write", lambda *_a: self._error_changed())

        self.button = ttk.Button(card, text="Log in", style="Accent.TButton",
                                 command=self.submit)
        self.button.grid(row=11, column=0, sticky="ew", pady=(10, 0), ipady=3)
        self.progress = ttk.Progressbar(card, mode="indeterminate", length=320)
        self.progress.grid(row=12, column=0, sticky="ew", pady=(8, 0))
        self.progress.grid_remove()
        self.cancel_hint = ttk.Label(card, text="Esc to cancel", style="Hint.TLabel")
        self.cancel_hint.grid(row=13, column=0, pady=(4, 0))
        self.cancel_hint.grid_remove()
        self._busy = False

        for widget in (self.name_entry, self.password_entry, self.gateways_entry,
                       self.create_check):
            widget.bind("<Return>", self._return)
            widget.bind("<KP_Enter>", self._return)
        escapable: tuple[tk.Misc, ...] = (self.name_entry, self.password_entry,
                                          self.create_check, self.gateways_entry,
                                          self.button, self.frame)
        for escaping in escapable:
            escaping.bind("<Escape>", self._escape)
        for variable in (self.name_var, self.password_var, self.gateways_var, self.create_var):
            variable.trace_add("write", lambda *_a: self._edited())
        self.create_var.trace_add("write", lambda *_a: self._create_changed())

    # -- what the app calls --------------------------------------------------

    def focus(self) -> None:
        """Put the cursor in the name field."""
        self.name_entry.focus_set()
        self.name_entry.icursor("end")

    def submit(self) -> None:
        if not self._busy:
            self._on_login(LoginRequest(self.name_var.get().strip(), self.gateways_var.get(),
                                        self.password_var.get(), self.create_var.get()))

    def focus_password(self) -> None:
        """After a wrong password: the cursor in the password field, its text selected."""
        self.password_entry.focus_set()
        self.password_entry.selection_range(0, "end")
        self.password_entry.icursor("end")

    def show_error(self, text: str) -> None:
        self.error_var.set(text)

    def error_text(self) -> str:
        return self.error_var.get()

    def set_busy(self, busy: bool) -> None:
        """While connecting: the button says so, the fields are read-only."""
        self._busy = busy
        state = "disabled" if busy else "!disabled"
        for widget in (self.name_entry, self.password_entry, self.create_check,
                       self.gateways_entry, self.button):
            widget.state([state])
        self._create_changed()
        if busy:
            self.error_var.set("")
            self.progress.grid()
            self.progress.start(12)
            self.cancel_hint.grid()
            self.frame.focus_set()  # the fields are disabled: Escape must still reach us
        else:
            self.progress.stop()
            self.progress.grid_remove()
            self.cancel_hint.grid_remove()
            self.focus()

    @property
    def busy(self) -> bool:
        return self._busy

    def _return(self, _event: object) -> str:
        self.submit()
        return "break"

    def _escape(self, _event: object) -> str:
        """Escape while "Connecting…": give up on this log-in."""
        if self._busy and self._on_cancel is not None:
            self._on_cancel()
        return "break"

    def _create_changed(self) -> None:
        create = self.create_var.get()
        if self._busy:
            text = "Creating your account…" if create else "Connecting…"
        else:
            text = "Create account" if create else "Log in"
        self.button.configure(text=text)

    def _error_changed(self) -> None:
        if self.error_var.get():
            self.error_label.grid()
        else:
            self.error_label.grid_remove()

    def _edited(self) -> None:
        if not self._busy and self.error_var.get():
            self.error_var.set("")
