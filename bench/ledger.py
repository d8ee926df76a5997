"""Zero-loss accounting for the many-rooms scenario (pure).

Every send carries its sequence number in its text, and every member records
the numbers it receives. ``account`` then checks that every acknowledged
message reached every member of its room exactly once: no loss, no
duplicate, nothing delivered to a user outside the room. Messages whose send
was refused or never answered may still have been delivered (a deadline can
pass after the publish); those are counted apart and are not a failure.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bench.population import Population


@dataclass(frozen=True, slots=True)
class Accounting:
    acked: int
    expected: int
    """Deliveries owed: each acked message times the members of its room."""
    delivered: int
    """Owed deliveries that arrived."""
    lost: int
    duplicates: int
    """Deliveries beyond the first of one message to one member."""
    unacked_delivered: int
    """Deliveries of messages whose send was not acked (allowed, reported)."""
    misdelivered: int
    """Deliveries to a user who is not in the message's room (or of unknown messages)."""

    @property
    def exact(self) -> bool:
        """Every acked message reached every member exactly once, and nobody else."""
        return self.lost == 0 and self.duplicates == 0 and self.misdelivered == 0


def account(population: Population, room_of: Sequence[int], acked: Iterable[int],
            received: Sequence[Iterable[int]]) -> Accounting:
    """Compare what each user received (sequence numbers) with what it was owed.

    ``room_of[seq]`` is the room message ``seq`` was sent to; ``received[u]``
    the sequence numbers user ``u`` got, in any order, repeats included.
    """
    acked_set = set(acked)
    owed: list[list[int]] = [[] for _ in range(population.users)]
    for seq in acked_set:
        for user in population.members[room_of[seq]]:
            owed[user].append(seq)
    expected = delivered = lost = duplicates = unacked = misdelivered = 0
    for user, got in enumerate(received):
        got_list = list(got)
        seen = set(got_list)
        duplicates += len(got_list) - len(seen)
        mine = set(owed[user])
        expected += len(mine)
        arrived = len(mine & seen)
        delivered += arrived
        lost += len(mine) - arrived
        rooms = population.rooms_of[user]
        for seq in seen - mine:
            if seq not in acked_set and 0 <= seq < len(room_of) and room_of[seq] in rooms:
                unacked += 1
            else:
                misdelivered += 1
    for user in range(len(received), population.users):
        expected += len(owed[user])
        lost += len(owed[user])
    return Accounting(acked=len(acked_set), expected=expected, delivered=delivered, lost=lost,
                      duplicates=duplicates, unacked_delivered=unacked,
                      misdelivered=misdelivered)
