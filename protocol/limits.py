"""Limits of PROTOCOL.md with their defaults; every gateway flag maps onto one."""

from __future__ import annotations

from dataclasses import dataclass

MAX_NAME = 32
MAX_ROOM = 32
MAX_ROOMS_PER_SESSION = 50
MAX_HISTORY_LIMIT = 200
DEFAULT_HISTORY_LIMIT = 50
MAX_REF = 128
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
"""Passwords are 8 to 1024 characters after NFKC normalisation (v1.1)."""
MAX_SERVER_LINE = 1 << 20
"""Clients accept server lines up to this many bytes (a history batch)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """What a gateway enforces per connection; announced in ``welcome``."""

    max_frame: int = 16384
    max_text: int = 4000
    rate_per_s: float = 20.0
    burst: int = 40
    idle_timeout_s: float = 90.0
    login_timeout_s: float = 10.0
    max_outbound: int = 1 << 20
    typing_interval_s: float = 2.0
    max_rooms: int = MAX_ROOMS_PER_SESSION
    max_refused: int = 2000
    """Refused frames a connection may send beyond one per frame-rate token (the
    budget refills at ``rate_per_s``); past it: ``bye``/``abuse``."""
    send_timeout_s: float = 5.0
    """Output waiting while not one byte reaches the client for this long: a slow consumer."""
    history_bytes_per_s: float = 256 * 1024
    """History answers (``history``, ``join``, catch-up) a connection may draw, bytes a second."""
    history_burst_bytes: int = 1 << 20
    """... and saved up: a request is served while the budget is above zero."""

    def __post_init__(self) -> None:
        if self.max_frame < 256:
            raise ValueError("max_frame must be at least 256 bytes")
        if self.max_text < 1:
            raise ValueError("max_text must be positive")
        if self.rate_per_s <= 0 or self.burst < 1:
            raise ValueError("rate_per_s and burst must be positive")
        if self.max_outbound < 1024:
            raise ValueError("max_outbound must be at least 1024 bytes")
        if self.max_refused < 1 or self.send_timeout_s <= 0:
            raise ValueError("max_refused and send_timeout_s must be positive")
        if self.history_bytes_per_s <= 0 or self.history_burst_bytes < 1:
            raise ValueError("history_bytes_per_s and history_burst_bytes must be positive")

    def announced(self) -> dict[str, float | int]:
        """The ``limits`` object of ``welcome``."""
        return {
            "max_frame": self.max_frame,
            "max_text": self.max_text,
            "rate_per_s": self.rate_per_s,
            "burst": self.burst,
        }
