"""Everything the app says to a person, in plain words.

Error codes, connection states and typing hints become short sentences here,
in one place, so views show text and tests can compare against the same
functions. Pure: no Tk, no I/O.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from protocol.errors import ErrorCode, ProtocolError
from protocol.limits import MAX_NAME, MAX_PASSWORD, MIN_PASSWORD

NAME_RULE = (f"A name is 1 to {MAX_NAME} characters, each a letter from A to Z (either case), "
             "a digit, or one of _ - . (no spaces, no accented letters), starting with a "
             "letter or digit.")

_CODE_WORDS: dict[ErrorCode, str] = {
    ErrorCode.BAD_NAME: f"That name is not allowed. {NAME_RULE}",
    ErrorCode.NAME_TAKEN: "That name is already taken. Please pick another one.",
    ErrorCode.BAD_ROOM: "Room names are 1 to 32 lower-case letters, digits, _ or -.",
    ErrorCode.NOT_IN_ROOM: "You are not in that room. Join it first.",
    ErrorCode.BAD_TEXT: "That message cannot be sent: it is empty, too long, "
                        "or contains control or text-direction characters.",
    ErrorCode.RATE_LIMITED: "You are sending too fast. Wait a moment and try again.",
    ErrorCode.NO_SUCH_USER: "Nobody with that name is online.",
    ErrorCode.UNAVAILABLE: "The chat server is having trouble right now. Try again shortly.",
    ErrorCode.INTERNAL: "The chat server hit an internal error. Try again.",
    ErrorCode.FRAME_TOO_LARGE: "That message is too large to send.",
}


def refusal(error: ProtocolError) -> str:
    """A refusal from the server as a sentence; unknown codes fall back to its message."""
    return _CODE_WORDS.get(error.code, error.message or str(error.code))


PASSWORD_RULE = (f"A password is {MIN_PASSWORD} to {MAX_PASSWORD} characters "
                 "(letters of any language, digits, spaces and symbols all count).")

TOO_MANY_ATTEMPTS = ("Too many wrong passwords for this name or from this computer. "
                     "Wait a few minutes, then try again.")


def login_refusal(error: ProtocolError, name: str, password: bool = False,
                  create: bool = False) -> str:
    """Why the log-in did not work, naming the name where that helps.

    ``password``: the log-in carried a password; ``create``: the person asked to
    create an account (a guest log-in, then ``register``).
    """
    if error.code is ErrorCode.NAME_TAKEN:
        if create:
            return (f"The name “{name}” is already taken: someone is using it or it belongs "
                    "to an account. Pick another name for your new account.")
        return (f"The name “{name}” is already taken. Please pick another one. "
                "If that name belongs to your account, enter its password.")
    if error.code is ErrorCode.BAD_NAME:
        return f"“{name}” is not a valid name. {NAME_RULE}"
    if error.code is ErrorCode.AUTH_FAILED:
        if not password:
            return ("This server admits accounts only: enter your password "
                    "(accounts are created by its operator).")
        return (f"Wrong password for “{name}”, or “{name}” has no account. Check the "
                "password, or leave it empty to join as a guest.")
    if error.code is ErrorCode.RATE_LIMITED:
        return TOO_MANY_ATTEMPTS
    if error.code is ErrorCode.BAD_PASSWORD:
        return f"That password cannot be used. {PASSWORD_RULE}"
    return refusal(error)


def register_refusal(error: ProtocolError, name: str) -> str:
    """Why "create account" did not work (the answer to ``register``)."""
    if error.code is ErrorCode.NAME_TAKEN:
        return (f"“{name}” already belongs to an account: log in with its password, "
                "or pick another name.")
    if error.code is ErrorCode.AUTH_FAILED:
        return "This server does not let people create accounts: ask its operator for one."
    if error.code is ErrorCode.BAD_PASSWORD:
        return f"That password cannot be used. {PASSWORD_RULE}"
    if error.code is ErrorCode.RATE_LIMITED:
        return TOO_MANY_ATTEMPTS
    return refusal(error)


def passwd_refusal(error: ProtocolError) -> str:
    """Why a password change did not work (the answer to ``passwd``)."""
    if error.code is ErrorCode.AUTH_FAILED:
        return "The current password is wrong (or this name has no account)."
    return register_refusal(error, "")


WEAK_PASSWORD = f"That password is too short or too long. {PASSWORD_RULE}"
CREATE_NEEDS_PASSWORD = f"To create an account, choose a password. {PASSWORD_RULE}"
REGISTER_LOST = "The connection was lost while creating the account. Please try again."


def no_gateway(addresses: Sequence[str]) -> str:
    where = ", ".join(addresses) if addresses else "the given address"
    return (f"No chat gateway is reachable at {where}. "
            "Check the address and that the server is running.")


def bad_addresses(detail: str) -> str:
    return f"The gateway address is not valid: {detail}"


EMPTY_NAME = "Please enter a name."
CANCELLED = "Cancelled. Check the name and address, then log in again."


def account_created(name: str) -> str:
    return (f"Your account is ready: the name {name} is yours, and your direct messages "
            "are kept, also while you are offline.")
EMPTY_GATEWAYS = "Please enter at least one gateway address, like localhost:5050."


def typing_line(names: Sequence[str]) -> str:
    """'alice is typing…', 'alice and bob are typing…', 'several people are typing…'."""
    if not names:
        return ""
    if len(names) == 1:
        return f"{names[0]} is typing…"
    if len(names) == 2:
        return f"{names[0]} and {names[1]} are typing…"
    if len(names) == 3:
        return f"{names[0]}, {names[1]} and {names[2]} are typing…"
    return "Several people are typing…"


def connected(gateway: str, name: str, resumed: bool) -> str:
    return f"Connected to {gateway} as {name}" + (" (resumed)" if resumed else "")


def reconnecting(address: str, seconds_left: float, attempt: int) -> str:
    when = f"in {round(seconds_left)} s" if seconds_left >= 0.5 else "now"
    suffix = f" (attempt {attempt})" if attempt > 1 else ""
    return f"Reconnecting to {address} {when}…{suffix}"


def disconnected(reason: str) -> str:
    return f"Connection lost ({reason}). Waiting to reconnect…" if reason else \
        "Connection lost. Waiting to reconnect…"


def offline(reason: str) -> str:
    if reason == "replaced":
        return "Offline: you logged in from somewhere else."
    return f"Offline ({reason})" if reason else "Offline"


def clock(ts: float) -> str:
    """The local time of a message, HH:MM."""
    return time.strftime("%H:%M", time.localtime(ts))


def day(ts: float) -> str:
    return time.strftime("%A, %d %B %Y", time.localtime(ts))


GUI_TIPS: tuple[str, ...] = (
    "Tip: type a room name in the field on the left to join it; "
    "double-click a member to message them.",
)
