"""``chat-client`` / ``python -m client``: the Tk chat app."""

from __future__ import annotations

import logging
import os
import sys
import tkinter as tk
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from client.connection import ChatClient
from client.gui.app import ChatApp
from client.gui.ports import EventSink
from client.options import add_gateway_options, gateways_from_args, new_parser

HOLD_UNAVAILABLE_S = 120.0
"""How long a send the server answered ``unavailable`` stays "sending…" and is retried."""


def _client(name: str, gateways: Sequence[str], sink: EventSink,
            password: str | None) -> ChatClient:
    return ChatClient(name, gateways, on_event=sink, hold_unavailable=HOLD_UNAVAILABLE_S,
                      password=password)


def _say(text: str) -> None:
    sys.stderr.write(text + "\n")


@dataclass(frozen=True, slots=True)
class Options:
    name: str
    gateways: tuple[str, ...]
    log_level: str


def parse(argv: Sequence[str] | None, environ: Mapping[str, str]) -> Options:
    """The command line (and ``$CHAT_NAME``, ``$CHAT_GATEWAYS``); exits 2 on a bad one."""
    parser = new_parser("chat-client", "ChatService desktop client")
    parser.add_argument("--name", default=environ.get("CHAT_NAME", ""),
                        help="prefill the user name (default: $CHAT_NAME)")
    add_gateway_options(parser)
    parser.add_argument("--log-level", default="WARNING",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    gateways = gateways_from_args(parser, args, environ)
    return Options(args.name, tuple(gateways), args.log_level)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv, os.environ)
    logging.basicConfig(level=args.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        root = tk.Tk(className="ChatService")
    except tk.TclError as exc:
        _say(f"chat-client needs a graphical display: {exc}")
        return 1
    ChatApp(root, _client, gateways=", ".join(args.gateways), name=args.name)
    root.mainloop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
