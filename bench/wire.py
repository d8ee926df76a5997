"""What the bench sends and the few things it reads back.

Frames are built with the ``protocol`` package, so the bench speaks exactly
PROTOCOL.md. Texts and refs carry markers that the cheap reader can find
without decoding JSON:

- every ``ref`` starts with ``~A``, so ``"~A`` occurs in an ``ack`` (or an
  ``error`` about a send) and nowhere else in our rooms;
- a timed text holds ``~T<ns>~``, the sender's ``time.monotonic_ns()``; the
  bench is one process, so receipt minus stamp is the end-to-end latency;
  a numbered text (many rooms) holds ``~T<ns>~<seq>~``, its ref ``~A<seq>``;
- ``~GO<nonce>`` marks the message after which receivers start counting.

Texts never contain ``"`` or ``\\``, so JSON escaping cannot forge a marker.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping

from protocol.codec import encode
from protocol.frames import Hello, Ping, Position, Send

ACK_MARK = b'"~A'
"""Found in every line that answers a send of ours (``ack`` or ``error``)."""

PONG_MARK = b'"~P'
"""Found in every ``pong`` answering a ping of ours."""

STAMP = re.compile(rb"~T(\d{1,20})~")
"""A send time embedded in a message text."""

STAMP_SEQ = re.compile(rb"~T(\d{1,20})~(\d{1,20})~")
"""A send time and a sequence number embedded in a numbered message text."""

_PAD = "abcdefghijklmnopqrstuvwxyz0123456789"


def nonce(length: int = 6) -> str:
    """A short lower-case id that makes room and user names unique per run."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(length))


def hello(name: str, rooms: Iterable[str], since: Mapping[str, Position] | None = None,
          token: str | None = None) -> bytes:
    return encode(Hello(name=name, rooms=tuple(rooms), since=dict(since or {}), token=token))


def ping(ref: str) -> bytes:
    """A ping whose pong the cheap reader finds: ``ref`` must start with ``~P``."""
    return encode(Ping(ref))


def pong_ref(index: int) -> str:
    return f"~P{index}"


def send_ref(sender: int, seq: int) -> str:
    return f"~A{sender}.{seq}"


def padding(size: int) -> str:
    """``size`` characters of filler text (never markers, quotes or spaces at the ends)."""
    return (_PAD * (size // len(_PAD) + 1))[:size]


def timed_send(room: str, ref: str, stamp_ns: int, pad: str) -> bytes:
    """A ``send`` whose text carries its send time for the receivers."""
    return encode(Send(room, f"~T{stamp_ns}~ {pad}" if pad else f"~T{stamp_ns}~", ref))


def numbered_ref(seq: int) -> str:
    return f"~A{seq}"


def numbered_send(room: str, seq: int, stamp_ns: int, pad: str) -> bytes:
    """A ``send`` whose text carries its send time and its sequence number."""
    text = f"~T{stamp_ns}~{seq}~ {pad}" if pad else f"~T{stamp_ns}~{seq}~"
    return encode(Send(room, text, f"~A{seq}"))


def start_marker(run: str) -> str:
    """The text of the message that opens a measurement."""
    return f"~GO{run}"


def marker_send(room: str, run: str) -> bytes:
    return encode(Send(room, start_marker(run), f"~Ago.{run}"))


def stamps(buffer: bytes, end: int) -> list[bytes]:
    """The digits of every stamp in ``buffer[:end]``."""
    return STAMP.findall(buffer, 0, end)
