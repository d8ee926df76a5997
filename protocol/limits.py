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

    def __post_init__(self) -> None:
        if self.max_frame < 256:
            raise ValueError("max_frame must be at least 256 bytes")
        if self.max_text < 1:
            raise ValueError("max_text must be positive")
        if self.rate_per_s <= 0 or self.burst < 1:
            raise ValueError("rate_per_s and burst must be positive")
        if self.max_outbound < 1024:
            raise ValueError("max_outbound must be at least 1024 bytes")

    def announced(self) -> dict[str, float | int]:
        """The ``limits`` object of ``welcome``."""
        return {
            "max_frame": self.max_frame,
            "max_text": self.max_text,
            "rate_per_s": self.rate_per_s,
            "burst": self.burst,
        }
