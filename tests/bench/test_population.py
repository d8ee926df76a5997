"""Room assignment of the many-rooms scenario: spans met, users in distinct rooms."""

from __future__ import annotations

import random

import pytest

from bench.population import Span, assign, default_rooms, feasible_memberships, spread


def test_span_parses_a_range_or_one_number() -> None:
    assert Span.parse("5-10") == Span(5, 10)
    assert Span.parse("7") == Span(7, 7)
    assert str(Span(2, 3)) == "2-3" and str(Span(4, 4)) == "4"
    for bad in ("", "a-b", "10-5", "0-3"):
        with pytest.raises(ValueError):
            Span.parse(bad)


def test_spread_sums_to_the_total_within_the_span() -> None:
    values = spread(25, 10, Span(2, 3), random.Random(1))
    assert sum(values) == 25 and set(values) <= {2, 3}
    with pytest.raises(ValueError):
        spread(31, 10, Span(2, 3), random.Random(1))


def test_the_default_population_meets_both_spans() -> None:
    size, per_user = Span(5, 10), Span(2, 3)
    rooms = default_rooms(2000, size, per_user)
    assert rooms == 667
    pop = assign(2000, rooms, size, per_user, random.Random(7))
    assert pop.users == 2000 and pop.rooms == 667
    assert all(5 <= len(m) <= 10 for m in pop.members)
    assert all(len(set(m)) == len(m) for m in pop.members), "a user twice in one room"
    assert all(2 <= len(r) <= 3 for r in pop.rooms_of)
    assert pop.memberships == sum(len(r) for r in pop.rooms_of) == 5000
    for user, rooms_of_user in enumerate(pop.rooms_of):
        assert all(user in pop.members[r] for r in rooms_of_user)


def test_tight_populations_still_place_users_in_distinct_rooms() -> None:
    # 12 users, 4 rooms of 6, 2 rooms each: duplicates are likely and must be repaired.
    for seed in range(20):
        pop = assign(12, 4, Span(6, 6), Span(2, 2), random.Random(seed))
        assert all(len(set(m)) == 6 for m in pop.members)
        assert all(len(set(r)) == 2 for r in pop.rooms_of)


def test_the_same_seed_gives_the_same_population() -> None:
    a = assign(100, 30, Span(5, 10), Span(2, 3), random.Random(3))
    b = assign(100, 30, Span(5, 10), Span(2, 3), random.Random(3))
    assert a == b


def test_infeasible_spans_are_refused_with_a_room_count_that_fits() -> None:
    # 400 rooms of 5-10 hold at most 4,000 memberships; 2,000 users in 2-3 rooms need 4,000+.
    assert feasible_memberships(2000, 400, Span(5, 10), Span(2, 3)) == range(4000, 4001)
    assert not feasible_memberships(2000, 300, Span(5, 10), Span(2, 3))
    with pytest.raises(ValueError, match="about 667 fits"):
        assign(2000, 300, Span(5, 10), Span(2, 3), random.Random(1))
    with pytest.raises(ValueError):
        assign(4, 10, Span(5, 10), Span(1, 1), random.Random(1))  # rooms larger than users
