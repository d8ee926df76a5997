"""When who sends where, and which rate to try next (pure).

``poisson_schedule`` draws the sends of one step of the many-rooms scenario:
an aggregate Poisson process at the target rate (exponential gaps), each
send from a user drawn uniformly, into one of that user's rooms drawn
uniformly. That is the same as every user sending at random intervals at
``rate / users`` on average, independently of the others. The whole step is
drawn before it starts, into flat arrays, so the pacing loop only reads.

``RateSearch`` picks the rates of a stepped run: up by a factor while steps
meet the latency target, then halving the gap (geometrically) between the
best step that met it and the lowest that did not, until they are close.
"""

from __future__ import annotations

import math
import random
from array import array
from dataclasses import dataclass

from bench.population import Population

NS_PER_S = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Schedule:
    """One step's sends, in time order; index i is the i-th send."""

    offsets_ns: array[int]
    """When to send, from the start of the step (ascending)."""
    senders: array[int]
    rooms: array[int]

    def __len__(self) -> int:
        return len(self.offsets_ns)


def poisson_schedule(rate: float, duration_s: float, population: Population,
                     rng: random.Random) -> Schedule:
    """Sends at ``rate`` per second on average for ``duration_s``, at Poisson times."""
    if rate <= 0 or duration_s <= 0:
        raise ValueError("rate and duration must be positive")
    offsets: array[int] = array("q")
    senders: array[int] = array("l")
    rooms: array[int] = array("l")
    rooms_of = population.rooms_of
    users = len(rooms_of)
    t = rng.expovariate(rate)
    while t < duration_s:
        user = rng.randrange(users)
        offsets.append(int(t * NS_PER_S))
        senders.append(user)
        rooms.append(rng.choice(rooms_of[user]))
        t += rng.expovariate(rate)
    return Schedule(offsets, senders, rooms)


class RateSearch:
    """The next rate to try, from the outcomes so far. Owned by one run.

    Starts at ``start``; multiplies by ``factor`` after each step that met the
    target; once one fails, tries the geometric mean of the best pass and the
    lowest fail until their ratio is at most ``1 + resolution``. If the first
    step fails it divides by ``factor`` until one passes or the rate falls
    below ``floor``. ``next_rate`` is None when the search is over.
    """

    def __init__(self, start: float, factor: float = 1.5, resolution: float = 0.1,
                 floor: float = 1.0) -> None:
        if start <= 0 or factor <= 1 or resolution <= 0:
            raise ValueError("start > 0, factor > 1 and resolution > 0 are required")
        self._start = start
        self._factor = factor
        self._resolution = resolution
        self._floor = floor
        self.best: float | None = None
        """The highest rate that met the target."""
        self.lowest_fail: float | None = None

    def record(self, rate: float, met: bool) -> None:
        if met:
            if self.best is None or rate > self.best:
                self.best = rate
        elif self.lowest_fail is None or rate < self.lowest_fail:
            self.lowest_fail = rate

    def next_rate(self) -> float | None:
        best, fail = self.best, self.lowest_fail
        if best is None and fail is None:
            return self._start
        if fail is None:
            assert best is not None
            return best * self._factor
        if best is None:
            lower = fail / self._factor
            return lower if lower >= self._floor else None
        if fail <= best or fail / best <= 1 + self._resolution:
            return None
        return math.sqrt(best * fail)
