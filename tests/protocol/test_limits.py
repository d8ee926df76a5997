"""protocol.limits: docs/protocol.md's defaults, and limits that cannot be nonsense."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from protocol import limits as lim
from protocol.limits import Limits


def test_defaults_are_the_ones_protocol_md_states() -> None:
    limits = Limits()
    assert limits.max_frame == 16384
    assert limits.max_text == 4000
    assert limits.rate_per_s == 20.0
    assert limits.burst == 40
    assert limits.idle_timeout_s == 90.0
    assert limits.login_timeout_s == 10.0
    assert limits.max_outbound == 1 << 20
    assert limits.typing_interval_s == 2.0
    assert limits.max_rooms == 50


def test_fixed_protocol_constants() -> None:
    assert (lim.MAX_NAME, lim.MAX_ROOM, lim.MAX_ROOMS_PER_SESSION) == (32, 32, 50)
    assert (lim.DEFAULT_HISTORY_LIMIT, lim.MAX_HISTORY_LIMIT) == (50, 200)
    assert lim.MAX_SERVER_LINE == 1 << 20


def test_announced_is_the_welcome_limits_object() -> None:
    assert Limits().announced() == {
        "max_frame": 16384,
        "max_text": 4000,
        "rate_per_s": 20.0,
        "burst": 40,
    }
    assert Limits(max_frame=1000, max_text=7, rate_per_s=1.5, burst=2).announced() == {
        "max_frame": 1000,
        "max_text": 7,
        "rate_per_s": 1.5,
        "burst": 2,
    }


@pytest.mark.parametrize(
    ("field", "bad", "smallest_good"),
    [
        ("max_frame", 255, 256),
        ("max_text", 0, 1),
        ("rate_per_s", 0.0, 0.001),
        ("rate_per_s", -1.0, 0.001),
        ("burst", 0, 1),
        ("max_outbound", 1023, 1024),
    ],
)
def test_nonsense_limits_are_refused_at_construction(
    field: str, bad: float, smallest_good: float
) -> None:
    bad_kwargs: dict[str, Any] = {field: bad}
    good_kwargs: dict[str, Any] = {field: smallest_good}
    with pytest.raises(ValueError, match=field):
        Limits(**bad_kwargs)
    assert getattr(Limits(**good_kwargs), field) == smallest_good


def test_limits_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Limits().max_frame = 1  # type: ignore[misc]
