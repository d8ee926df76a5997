"""``chat-client`` / ``python -m client``: the Tk chat app."""

from __future__ import annotations

import argparse
import logging
import sys
import tkinter as tk
from collections.abc import Sequence

from client.connection import ChatClient
from client.gui.app import ChatApp, default_gateways
from client.gui.ports import EventSink


def _client(name: str, gateways: Sequence[str], sink: EventSink) -> ChatClient:
    return ChatClient(name, gateways, on_event=sink)


def _say(text: str) -> None:
    sys.stderr.write(text + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chat-client", description="ChatService desktop client")
    parser.add_argument("--name", default="", help="prefill the user name")
    parser.add_argument("--gateways", default=default_gateways(),
                        help="gateway address(es), comma-separated "
                             "(default: $CHAT_GATEWAYS or localhost:5050)")
    parser.add_argument("--log-level", default="WARNING",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        root = tk.Tk(className="ChatService")
    except tk.TclError as exc:
        _say(f"chat-client needs a graphical display: {exc}")
        return 1
    ChatApp(root, _client, gateways=args.gateways, name=args.name)
    root.mainloop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
