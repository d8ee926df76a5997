"""Token buckets: per-connection frame rates, per-address connection rates. Pure, clock
injected."""

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

    def full(self) -> bool:
        """Saved up to its burst again: forgetting it changes nothing."""
        return self._tokens + (self._clock() - self._stamp) * self._rate >= self._burst


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


class AddressRate:
    """New connections per source address: ``rate`` a second, a burst of five seconds'
    worth (at least 1). One owner thread (the accept loop): no lock. Buckets that are
    full again are forgotten now and then, so idle addresses cost nothing."""

    PRUNE_EVERY = 1024
    """Connections between two sweeps of full buckets."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._rate = rate
        self._burst = max(1, round(rate * 5))
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._since_prune = 0

    def take(self, address: str) -> bool:
        """Count a new connection from ``address``; False when over its rate."""
        self._since_prune += 1
        if self._since_prune >= self.PRUNE_EVERY:
            self._since_prune = 0
            self._buckets = {a: b for a, b in self._buckets.items() if not b.full()}
        bucket = self._buckets.get(address)
        if bucket is None:
            bucket = self._buckets[address] = TokenBucket(self._rate, self._burst, self._clock)
        return bucket.take()

    def __len__(self) -> int:
        return len(self._buckets)
