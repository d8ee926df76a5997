"""Token bucket for per-connection frame rates: pure, clock injected."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; one token a frame."""

    __slots__ = ("_burst", "_clock", "_rate", "_stamp", "_tokens")

    def __init__(self, rate: float, burst: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._stamp = clock()

    def take(self) -> bool:
        """Spend one token; False when the bucket is empty (the frame is dropped)."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class ByteBudget:
    """``rate`` bytes a second, at most ``burst`` saved up, spent after the fact.

    An answer's size is known only once it is read, so a request is served
    while the budget is above zero and its answer may take it below: the debt
    is repaid at ``rate`` before the next one is served. Over time a client
    draws no more than ``rate`` (plus ``burst`` and one answer).
    """

    __slots__ = ("_burst", "_clock", "_rate", "_stamp", "_tokens")

    def __init__(self, rate: float, burst: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now

    def ready(self) -> bool:
        """True when a request may be served now."""
        self._refill()
        return self._tokens > 0

    def spend(self, size: int) -> None:
        """Charge an answer of ``size`` bytes, into debt if need be."""
        self._refill()
        self._tokens -= size
