"""Command-line options the two clients share: gateways, ``--version``.

Both ``chat-client`` and ``chat-term`` take the gateways three ways, all
kept, in this order of precedence:

- ``--gateway HOST:PORT``, repeated (``tls://HOST:PORT`` for TLS);
- ``--gateways A,B`` (commas or spaces), also repeatable;
- ``$CHAT_GATEWAYS`` (commas or spaces) when neither flag is given;

and fall back to ``localhost:5050``. Every address is checked when the
program starts, so a typo is one clear error, not a failed connect later.
Pure apart from ``argparse``: tests call ``gateway_list`` directly.
"""

from __future__ import annotations

import argparse
import importlib.metadata
from collections.abc import Mapping, Sequence

from client.transport import parse_address

DEFAULT_GATEWAY = "localhost:5050"


def version() -> str:
    """The installed project's version, or "unknown" when run from a bare checkout."""
    try:
        return importlib.metadata.version("chatservice")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def new_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` without abbreviations (``--gateway`` is not ``--gateways``)."""
    parser = argparse.ArgumentParser(prog=prog, description=description, allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    return parser


def add_gateway_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gateway", action="append", dest="gateway", default=[],
                        metavar="HOST:PORT",
                        help="a gateway (tls://HOST:PORT for TLS); repeat it to fail over "
                             "along the list")
    parser.add_argument("--gateways", action="append", dest="gateways", default=[],
                        metavar="A,B,...",
                        help="several gateways at once, separated by commas "
                             "(default: $CHAT_GATEWAYS, else localhost:5050)")


def split_list(text: str) -> list[str]:
    """'a:1, b:2 c:3,' -> ['a:1', 'b:2', 'c:3']."""
    return [part for part in text.replace(",", " ").split() if part]


def gateway_list(repeated: Sequence[str], lists: Sequence[str],
                 environ: Mapping[str, str]) -> list[str]:
    """Every gateway given, in order, each checked; ``ValueError`` names a bad one.

    Flags win over ``$CHAT_GATEWAYS``; with neither, ``localhost:5050``.
    """
    given = [g.strip() for g in repeated if g.strip()]
    for text in lists:
        given.extend(split_list(text))
    if not given:
        given = split_list(environ.get("CHAT_GATEWAYS", "")) or [DEFAULT_GATEWAY]
    for address in given:
        parse_address(address)  # raises ValueError with the address in its message
    return given


def gateways_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace,
                       environ: Mapping[str, str]) -> list[str]:
    """``gateway_list`` for parsed ``args``; a bad address ends the program (exit 2)."""
    try:
        return gateway_list(args.gateway, args.gateways, environ)
    except ValueError as exc:
        parser.error(f"{exc} (expected HOST:PORT, [IPv6]:PORT or tls://HOST:PORT)")
