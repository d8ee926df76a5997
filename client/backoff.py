"""How long to wait before reconnect attempt number *n*: small swappable policies.

``ChatClient`` asks ``delay(attempt)`` before each attempt of one reconnect
episode (attempt 1 is the first try after a drop). The default grows
exponentially to a cap, with jitter so that the clients of a gateway that
died do not all hit the next one in the same millisecond. Tests inject
``NoBackoff`` or ``ConstantBackoff`` so that nothing sleeps long.
"""

from __future__ import annotations

import abc
import random


class Backoff(abc.ABC):
    """A retry delay policy; stateless, so one instance may serve many clients."""

    @abc.abstractmethod
    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt`` (1-based) of a reconnect episode."""


class ExponentialBackoff(Backoff):
    """``base * 2**(attempt-1)`` capped at ``cap``, reduced by up to ``jitter`` of itself.

    With the defaults: about 0.1-0.2 s, 0.2-0.4 s, ... and never more than 10 s.
    """

    def __init__(self, base: float = 0.2, cap: float = 10.0, jitter: float = 0.5,
                 rng: random.Random | None = None) -> None:
        if base <= 0 or cap < base:
            raise ValueError("need 0 < base <= cap")
        if not 0.0 <= jitter <= 1.0:
            raise ValueError("jitter is a fraction from 0 to 1")
        self.base = base
        self.cap = cap
        self.jitter = jitter
        self._rng = rng or random.Random()

    def delay(self, attempt: int) -> float:
        if attempt < 1:
            raise ValueError("attempts count from 1")
        # Cap the exponent first: 2**attempt for a huge attempt is a huge int.
        ceiling = min(self.cap, self.base * 2.0 ** min(attempt - 1, 62))
        return ceiling * (1.0 - self.jitter * self._rng.random())


class ConstantBackoff(Backoff):
    """The same delay every time: for tests that need a short, non-zero pause."""

    def __init__(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("delay must not be negative")
        self.seconds = seconds

    def delay(self, attempt: int) -> float:
        return self.seconds


class NoBackoff(ConstantBackoff):
    """Retry at once: for tests whose next attempt is known to succeed."""

    def __init__(self) -> None:
        super().__init__(0.0)
