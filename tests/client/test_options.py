"""The clients' command lines: every gateway given is kept, checked at start; no abbreviations."""

from __future__ import annotations

import pytest

from client import __main__ as gui_main
from client import term
from client.options import gateway_list


def test_repeated_gateway_flags_are_all_kept_in_order() -> None:
    options = gui_main.parse(["--gateway", "a:5050", "--gateway", "b:5051"], {})
    assert options.gateways == ("a:5050", "b:5051")


def test_gateways_list_flag_and_environment() -> None:
    assert gui_main.parse(["--gateways", "a:1,b:2"], {}).gateways == ("a:1", "b:2")
    assert gui_main.parse([], {"CHAT_GATEWAYS": "c:3, d:4"}).gateways == ("c:3", "d:4")
    assert gui_main.parse([], {}).gateways == ("localhost:5050",)
    assert gateway_list(["x:1"], ["y:2,z:3"], {"CHAT_GATEWAYS": "ignored:9"}) == \
        ["x:1", "y:2", "z:3"]


@pytest.mark.parametrize("argv", [["--gateway", "a:1", "--gateway", "b:2"],
                                  ["--gateways", "a:1,b:2"]])
def test_chat_term_keeps_every_gateway(argv: list[str]) -> None:
    options = term.parse(["--name", "alice", *argv], {})
    assert options.gateways == ("a:1", "b:2")


@pytest.mark.parametrize("parse", [gui_main.parse,
                                   lambda argv, env: term.parse(["--name", "x", *argv], env)])
def test_a_malformed_address_is_a_clear_error_at_start(
        parse: object, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse(["--gateway", "a:1", "--gateway", "b:notaport"], {})  # type: ignore[operator]
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "bad port in gateway address 'b:notaport'" in err
    assert "HOST:PORT" in err


def test_abbreviations_are_not_accepted(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        gui_main.parse(["--gate", "a:1"], {})
    assert "unrecognized arguments: --gate" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        term.parse(["--na", "alice"], {})


@pytest.mark.parametrize("parse", [gui_main.parse, term.parse])
def test_version(parse: object, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse(["--version"], {})  # type: ignore[operator]
    assert info.value.code == 0
    assert capsys.readouterr().out.split()[1][0].isdigit()


def test_no_parser_of_the_project_takes_abbreviations() -> None:
    from bench.options import build_parser as bench_parser
    from deploy.cluster import build_parser as cluster_parser
    from gateway.config import build_parser as gateway_parser

    for parser in (bench_parser(), cluster_parser(), gateway_parser({})):
        assert parser.allow_abbrev is False, parser.prog
