"""chat-bench's command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.options import (
    Address,
    FanoutOptions,
    IdleOptions,
    ResumeOptions,
    StormOptions,
    parse_address,
    parse_args,
)


def test_fanout_defaults_and_common_options_after_the_scenario() -> None:
    opts = parse_args(["fanout", "--local", "3", "--results", "out.jsonl"])
    assert isinstance(opts, FanoutOptions)
    assert opts.common.local == 3 and opts.common.gateways == ()
    assert opts.common.results == Path("out.jsonl")
    assert opts.receivers == (200,) and opts.senders == 10
    assert opts.mode == "saturate" and opts.window == 32


def test_receivers_sweep_and_rate_mode() -> None:
    opts = parse_args(["fanout", "--gateways", "127.0.0.1:5050,127.0.0.2:5051",
                       "--receivers", "50,100,200", "--mode", "rate", "--rate", "500"])
    assert isinstance(opts, FanoutOptions)
    assert opts.receivers == (50, 100, 200)
    assert opts.rate == 500.0
    assert opts.common.gateways == (Address("127.0.0.1", 5050), Address("127.0.0.2", 5051))


@pytest.mark.parametrize("argv", [
    ["fanout"],                                              # nowhere to send
    ["fanout", "--local", "2", "--mode", "rate"],            # rate without --rate
    ["fanout", "--local", "2", "--gateways", "127.0.0.1:1"],  # both
    ["fanout", "--local", "2", "--receivers", "0"],
    ["fanout", "--local", "2", "--receivers", "a,b"],
    ["fanout", "--gateways", "nohost"],
    ["fanout", "--local", "2", "--room", "Bad Room"],
    ["fanout", "--local", "2", "--senders", "0"],
    ["resume", "--local", "1"],                               # nothing to resume on
    ["resume", "--gateways", "127.0.0.1:5050"],
    ["storm", "--local", "1", "--background-rate", "-1"],
])
def test_bad_command_lines_exit_with_usage(argv: list[str],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse_args(argv)
    assert info.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_idle_storm_and_resume_options() -> None:
    idle = parse_args(["idle", "--local", "1", "--connections", "1000,10000", "--room-size", "50"])
    assert isinstance(idle, IdleOptions)
    assert idle.connections == (1000, 10000) and idle.room_size == 50
    assert idle.ping_spread == 5.0
    storm = parse_args(["storm", "--local", "3", "--connections", "1000",
                        "--background-rate", "500"])
    assert isinstance(storm, StormOptions)
    assert storm.connections == 1000 and storm.background_rate == 500.0 and storm.room is None
    resume = parse_args(["resume", "--local", "2", "--clients", "5"])
    assert isinstance(resume, ResumeOptions) and resume.clients == 5


def test_parse_address() -> None:
    assert parse_address("localhost:5050") == Address("localhost", 5050)
    assert parse_address("[::1]:5050") == Address("::1", 5050)
    for bad in ("localhost", ":5050", "host:0", "host:99999", "host:x"):
        with pytest.raises(ValueError):
            parse_address(bad)


def test_rooms_defaults_are_a_feasible_population_stepped_to_a_p99() -> None:
    from bench.options import RoomsOptions
    from bench.population import Span

    opts = parse_args(["rooms", "--local", "1"])
    assert isinstance(opts, RoomsOptions)
    assert opts.users == 2000 and opts.rooms is None
    assert opts.room_size == Span(5, 10) and opts.rooms_per_user == Span(2, 3)
    assert opts.mode == "step" and opts.p99_ms == 10.0 and opts.budget == 120.0


def test_rooms_that_cannot_hold_the_users_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["rooms", "--local", "1", "--rooms", "300"])
    assert "about 667 rooms would" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["rooms", "--local", "1", "--room-size", "10-5"])


def test_redis_url_is_a_common_option() -> None:
    opts = parse_args(["fanout", "--gateways", "127.0.0.1:5050",
                       "--redis-url", "redis://127.0.0.1:6390/0"])
    assert opts.common.redis_url == "redis://127.0.0.1:6390/0"
