"""The part of ``ChatClient`` the Tk app uses, as a structural type.

The app is written against this protocol rather than the concrete class so a
test can drive the views with a small stand-in, and so the GUI's dependency on
the connection library is written down in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from protocol.frames import Welcome


class ChatClientLike(Protocol):
    """What ``client.connection.ChatClient`` offers the app (see docs: client API)."""

    @property
    def name(self) -> str: ...

    def connect(self, timeout: float = ...) -> Welcome: ...

    def send(self, room: str, text: str) -> str: ...

    def dm(self, to: str, text: str) -> str: ...

    def join(self, room: str) -> object: ...

    def leave(self, room: str) -> object: ...

    def who(self, room: str) -> object: ...

    def typing(self, room: str) -> object: ...

    def history(self, room: str, before: int | None = ..., limit: int = ...) -> object: ...

    def close(self) -> None: ...

    # accounts and stored conversations (protocol v1.1)

    @property
    def account(self) -> bool: ...

    def register(self, password: str) -> object: ...

    def passwd(self, old: str, new: str) -> object: ...

    def mark_read(self, room: str | None = ..., *, peer: str | None = ...,
                  up_to: int) -> object: ...

    def dm_history(self, peer: str, before: int | None = ..., limit: int = ...) -> object: ...


EventSink = Callable[[object], None]
"""Where the client delivers its events: ``queue.Queue.put`` of the app."""

ClientFactory = Callable[[str, Sequence[str], EventSink, str | None], ChatClientLike]
"""Builds a client for (name, gateway addresses, event sink, password or None for a
guest); not yet connected."""
