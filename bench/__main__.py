"""chat-bench: ``python -m bench SCENARIO [options]`` (see ``--help``)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from bench.cluster import ClusterError
from bench.options import parse_args
from bench.plots import write_plots
from bench.procstat import raise_open_files_limit
from bench.report import Progress, render
from bench.results import RunRecord, append_record
from bench.runner import execute
from protocol.errors import ChatError

log = logging.getLogger("bench")


def emit(text: str) -> None:
    """CLI output: the tables go to stdout."""
    sys.stdout.write(text)
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    common = opts.common
    logging.basicConfig(level=common.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    limit = raise_open_files_limit()
    log.info("open files limit: %d", limit)
    progress = Progress(sys.stderr, common.progress)

    def on_record(record: RunRecord) -> None:
        emit(render(record) + "\n")
        if common.results is not None:
            append_record(common.results, record)

    try:
        records = execute(opts, progress, on_record)
    except (ChatError, ClusterError, OSError) as exc:
        log.error("chat-bench failed: %s", exc)
        return 1
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    if common.plots is not None:
        for path in write_plots(records, common.plots):
            emit(f"plot: {path}\n")
    if common.results is not None:
        emit(f"results appended to {common.results}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
