"""``chat-gateway`` / ``python -m gateway``: run one gateway until SIGTERM or SIGINT."""

from __future__ import annotations

import json
import logging
import os
import resource
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from gateway.config import parse_config
from gateway.redis.endpoint import TopologyError
from gateway.redis.target import TargetError
from gateway.server import DuplicateGateway, Gateway


def raise_open_files_limit() -> int:
    """Lift the soft RLIMIT_NOFILE to the hard limit; returns the soft limit now in force.

    Every client is a file descriptor, and many systems start processes with a
    soft limit of 1024: without this a gateway refuses clients (EMFILE) long
    before ``--max-connections``.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            logging.getLogger("gateway").warning(
                "event=nofile_limit_kept soft=%d hard=%d error=%s", soft, hard, exc)
    return soft


def write_ports_file(path: str, gateway: Gateway) -> None:
    """The ports ``gateway`` listens on, as JSON in ``path``, written whole or not at all
    (a temporary file renamed over it): a reader never sees half of it."""
    health = gateway.health_address
    data = {"port": gateway.address[1], "health_port": health[1] if health else None}
    target = Path(path)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(data) + "\n", encoding="utf-8")
    os.replace(temporary, target)


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_config(argv)
    logging.basicConfig(
        level=config.log_level,
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
        stream=sys.stderr,
    )
    open_files = raise_open_files_limit()
    if open_files < config.max_connections + 64:
        logging.getLogger("gateway").warning(
            "event=nofile_limit_low limit=%d max_connections=%d hint='raise ulimit -n'",
            open_files, config.max_connections)
    # Small stacks keep thousands of idle connections cheap; set before any thread starts.
    threading.stack_size(config.thread_stack_kib * 1024)
    sys.setswitchinterval(config.switch_interval_ms / 1000)
    try:
        gateway = Gateway(config)
    except (TargetError, TopologyError) as exc:
        logging.getLogger("gateway").error("event=bad_redis_url error=%s", exc)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        gateway.start()
    except DuplicateGateway as exc:
        logging.getLogger("gateway").error("event=duplicate_gateway_id error=%s", exc)
        return 3
    except OSError as exc:
        logging.getLogger("gateway").error("event=cannot_listen error=%s", exc)
        return 2
    except TopologyError as exc:
        logging.getLogger("gateway").error("event=redis_topology_mismatch error=%s", exc)
        gateway.broker.close()
        return 2
    if config.ports_file:
        try:
            write_ports_file(config.ports_file, gateway)
        except OSError as exc:
            logging.getLogger("gateway").error("event=cannot_write_ports_file path=%s error=%s",
                                               config.ports_file, exc)
            gateway.shutdown()
            return 2
    stop.wait()
    gateway.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
