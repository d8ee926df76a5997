"""One token bucket (``TokenBucket``) for every rate: per-connection frames and refusals,
history bytes (``ByteBudget``), per-address connections (``AddressRate``). Pure, clock
injected; each bucket has one owner thread and no lock."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; one token a frame."""

    __slots__ = ("_burst", "_ceiling", "_ceiling_until", "_clock", "_rate", "_stamp",
                 "_tokens")

    def __init__(self, rate: float, burst: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._stamp = clock()
        self._ceiling = self._burst
        """What may be saved up: the burst, or more for a while after ``credit``."""
        self._ceiling_until = 0.0

    def _refill(self) -> None:
        now = self._clock()
        if self._ceiling > self._burst and now >= self._ceiling_until:
            self._ceiling = self._burst
            self._tokens = min(self._tokens, self._burst)
        self._tokens = min(self._ceiling, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now

    def credit(self, seconds: float) -> None:
        """The owner did not read for ``seconds`` through no fault of the client (its
        reader waited for Redis): what the client sent meanwhile, within its rate, now
        comes in at once and must not count as a burst. For the next ``seconds`` the
        bucket may hold ``seconds`` worth of tokens past its burst (earned during the
        wait, as if each frame had been read when it came); then the burst again."""
        if seconds <= 0:
            return
        self._ceiling = max(self._ceiling, self._burst + seconds * self._rate)
        self._ceiling_until = max(self._ceiling_until, self._clock() + seconds)
        self._refill()  # what the wait earned, no longer cut at the burst

    def take(self) -> bool:
        """Spend one token; False when the bucket is empty (the frame is dropped)."""
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def ready(self) -> bool:
        """Above zero: a request whose cost is known only afterwards may be served."""
        self._refill()
        return self._tokens > 0

    def spend(self, size: int) -> None:
        """Charge ``size`` tokens after the fact, into debt if need be."""
        self._refill()
        self._tokens -= size

    def full(self) -> bool:
        """Saved up to its burst again: forgetting it changes nothing."""
        return self._tokens + (self._clock() - self._stamp) * self._rate >= self._burst


class ByteBudget(TokenBucket):
    """``rate`` bytes a second, at most ``burst`` saved up, spent after the fact.

    An answer's size is known only once it is read, so a request is served
    while the budget is above zero (``ready``) and its answer may take it below
    (``spend``): the debt is repaid at ``rate`` before the next one is served.
    Over time a client draws no more than ``rate`` (plus ``burst`` and one answer).
    """

    __slots__ = ()


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
