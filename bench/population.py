"""Who is in which room for the many-rooms scenario (pure).

``assign`` places U users in N rooms so that every room has a size in one
span (say 5 to 10) and every user is in a number of rooms in another (say 2
or 3), at random but reproducibly from a seeded ``random.Random``. Both
sides must count the same memberships, so not every triple is possible:
400 rooms of 5 to 10 hold at most 4,000 memberships, fewer than 2,000 users
in 2 or 3 rooms each need. ``feasible_memberships`` says what is possible and
``default_rooms`` picks the room count that fits the two spans' means.

The draw: membership counts per user and sizes per room are spread at
random within their spans to the same total; the users' slots are shuffled
and dealt into the rooms; the rare user dealt twice into one room is swapped
with a member of another room.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass

MAX_REPAIR_ATTEMPTS = 10_000


@dataclass(frozen=True, slots=True)
class Span:
    """An inclusive range of whole numbers, ``low`` to ``high``."""

    low: int
    high: int

    def __post_init__(self) -> None:
        if self.low < 1 or self.high < self.low:
            raise ValueError(f"not a range of positive integers: {self.low}-{self.high}")

    @property
    def mean(self) -> float:
        return (self.low + self.high) / 2

    @classmethod
    def parse(cls, text: str) -> Span:
        """``"5-10"`` or ``"7"`` -> Span, or ValueError."""
        low, sep, high = text.strip().partition("-")
        try:
            return cls(int(low), int(high) if sep else int(low))
        except ValueError:
            raise ValueError(f"not a range such as 5-10: {text!r}") from None

    def __str__(self) -> str:
        return str(self.low) if self.low == self.high else f"{self.low}-{self.high}"


@dataclass(frozen=True, slots=True)
class Population:
    """Rooms' members and users' rooms, two views of the same memberships."""

    members: tuple[tuple[int, ...], ...]
    """Room index -> the users in it."""
    rooms_of: tuple[tuple[int, ...], ...]
    """User index -> the rooms it is in."""

    @property
    def users(self) -> int:
        return len(self.rooms_of)

    @property
    def rooms(self) -> int:
        return len(self.members)

    @property
    def memberships(self) -> int:
        return sum(len(m) for m in self.members)

    @property
    def mean_room_size(self) -> float:
        return self.memberships / self.rooms if self.rooms else 0.0


def feasible_memberships(users: int, rooms: int, size: Span, per_user: Span) -> range:
    """The membership totals both sides allow (empty when none)."""
    low = max(users * per_user.low, rooms * size.low)
    high = min(users * per_user.high, rooms * size.high)
    return range(low, high + 1)


def default_rooms(users: int, size: Span, per_user: Span) -> int:
    """The room count at which the spans' means meet (users x mean rooms / mean size)."""
    rooms = round(users * per_user.mean / size.mean)
    fewest = math.ceil(users * per_user.low / size.high)
    most = users * per_user.high // size.low
    return min(max(rooms, fewest, 1), max(most, 1))


def spread(total: int, slots: int, span: Span, rng: random.Random) -> list[int]:
    """``slots`` values in ``span`` summing to ``total``, the surplus placed at random."""
    if not slots * span.low <= total <= slots * span.high:
        raise ValueError(f"{total} cannot be split into {slots} values in {span}")
    values = [span.low] * slots
    room = [i for i in range(slots) for _ in range(span.high - span.low)]
    for i in rng.sample(room, total - slots * span.low):
        values[i] += 1
    return values


def assign(users: int, rooms: int, size: Span, per_user: Span,
           rng: random.Random) -> Population:
    """A random population meeting both spans, or ValueError if none can."""
    if size.high > users:
        raise ValueError(f"rooms of up to {size.high} need at least that many users")
    if per_user.high > rooms:
        raise ValueError(f"users in up to {per_user.high} rooms need at least that many rooms")
    possible = feasible_memberships(users, rooms, size, per_user)
    if not possible:
        raise ValueError(
            f"{rooms} rooms of {size} members hold {rooms * size.low} to {rooms * size.high} "
            f"memberships; {users} users in {per_user} rooms each need "
            f"{users * per_user.low} to {users * per_user.high}: change --rooms "
            f"(about {default_rooms(users, size, per_user)} fits)")
    total = min(max(round(users * per_user.mean), possible.start), possible.stop - 1)
    degrees = spread(total, users, per_user, rng)
    sizes = spread(total, rooms, size, rng)
    slots = [u for u, d in enumerate(degrees) for _ in range(d)]
    rng.shuffle(slots)
    dealt: list[list[int]] = []
    start = 0
    for n in sizes:
        dealt.append(slots[start : start + n])
        start += n
    _repair(dealt, rng)
    rooms_of: list[list[int]] = [[] for _ in range(users)]
    for r, members in enumerate(dealt):
        for u in members:
            rooms_of[u].append(r)
    return Population(members=tuple(tuple(sorted(m)) for m in dealt),
                      rooms_of=tuple(tuple(r) for r in rooms_of))


def _repair(dealt: list[list[int]], rng: random.Random) -> None:
    """Swap users dealt twice into one room with members of other rooms."""
    sets = [set(m) for m in dealt]
    for r, members in enumerate(dealt):
        for dup in [u for u, n in Counter(members).items() for _ in range(n - 1)]:
            for _ in range(MAX_REPAIR_ATTEMPTS):
                q = rng.randrange(len(dealt))
                if q == r or dup in sets[q]:
                    continue
                j = rng.randrange(len(dealt[q]))
                other = dealt[q][j]
                if other in sets[r]:
                    continue
                members[members.index(dup)] = other
                dealt[q][j] = dup
                sets[r], sets[q] = set(members), set(dealt[q])
                break
            else:
                raise ValueError("could not place every user in distinct rooms; "
                                 "use more users or rooms")
