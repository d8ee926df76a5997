"""Driving the app like a person: type into entries, press Enter, wait for the view."""

from __future__ import annotations

import tkinter as tk
from tkinter import ttk

from client.gui.app import ChatApp
from client.gui.chat_controller import ChatController
from client.gui.model import ConvKey
from tests.gui.conftest import settle


def give_focus(root: tk.Tk) -> None:
    """What a window manager does when the window appears: it gets the keyboard.

    Tk then puts the focus where the app last asked for it (``focus_set``).
    """
    root.update()
    (root.focus_lastfor() or root).focus_force()
    root.update()


def type_and_enter(entry: ttk.Entry | tk.Entry, text: str) -> None:
    """Replace the entry's text and press Enter in it (it must hold the keyboard focus)."""
    entry.delete(0, "end")
    entry.insert("end", text)
    entry.event_generate("<Return>")
    entry.update()


def log_in(app: ChatApp, name: str, gateways: str | None = None) -> ChatController:
    view = app.login_view
    assert view is not None
    if gateways is not None:
        view.gateways_var.set(gateways)
    type_and_enter(view.name_entry, name)
    settle(app.root, lambda: app.chat is not None, what="the chat view")
    assert app.chat is not None
    settle(app.root, lambda: app.chat is not None and app.chat.view.active is not None,
           what="a selected conversation")
    return app.chat


def send(chat: ChatController, text: str) -> None:
    """Type in the composer and press Enter; the composer must have the focus."""
    type_and_enter(chat.view.composer.entry, text)


def shown(chat: ChatController, key: ConvKey) -> str:
    return chat.view.view(key).contents()


LOBBY = ConvKey.room("lobby")
