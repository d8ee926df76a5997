"""``chat-gateway`` / ``python -m gateway``: run one gateway until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from gateway.broker import BrokerUnavailable
from gateway.config import parse_config
from gateway.server import Gateway


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_config(argv)
    logging.basicConfig(
        level=config.log_level,
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
        stream=sys.stderr,
    )
    # Small stacks keep thousands of idle connections cheap; set before any thread starts.
    threading.stack_size(config.thread_stack_kib * 1024)
    gateway = Gateway(config)
    if not gateway.broker.ping():
        logging.getLogger("gateway").error(
            "event=redis_unreachable redis=%s hint='is Redis running? For a local Redis and "
            "gateways in one command run: chat-cluster'", gateway.subscriber_host())
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        gateway.start()
    except OSError as exc:
        logging.getLogger("gateway").error("event=cannot_listen error=%s", exc)
        return 2
    except BrokerUnavailable:
        pass
    stop.wait()
    gateway.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
