"""CPU per delivery of the gateway's fan-out path, without the network or the machine's load.

67 sessions (a gateway's third of a room of 200), each on a socketpair, get one
live room message at a time through ``Session.deliver_messages`` ->
``Outbound.write`` -> ``send``, as the subscriber thread hands it over. The
figure is the process CPU time (``time.process_time``) of the delivery loop
alone per delivery; the reading ends are drained outside it. It runs the code
that ``PYTHONPATH`` gives, the layout before ``gateway.front`` (666e177)
included, so two commits compare side by side:

    PYTHONPATH=/path/to/checkout python docs/benchmarks/fanout_cost.py LABEL

A raw ``socket.send`` of the same line costs about 0.7 µs here, so what is
above that is Python. (Sessions are built bare, ``object.__new__``, with only
what the delivery path reads.)
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from typing import Any

try:
    from gateway.core.cursor import RoomCursor
    from gateway.front.flusher import Flusher
    from gateway.front.outbound import Outbound
    from gateway.front.session import Session
except ImportError:  # the layout of 666e177
    from gateway.outbound import Flusher, Outbound  # type: ignore[no-redef]
    from gateway.session import RoomCursor, Session  # type: ignore[no-redef]

MEMBERS = 67
LINE = (b'{"t":"message","room":"r","id":1,"from":"u1",'
        b'"text":"~T1234567890123456~ hello there","ts":1.5}\n')


def main(label: str) -> None:
    flusher: Any = Flusher()
    pairs: list[tuple[socket.socket, socket.socket]] = []
    sessions: list[Any] = []
    for _ in range(MEMBERS):
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        s: Any = object.__new__(Session)
        s._lock = threading.Lock()
        s._rooms = {"r": RoomCursor(epoch="e", last_id=0, live=True)}
        s._out = Outbound(a, 1 << 20, flusher)
        s._closing = None
        pairs.append((a, b))
        sessions.append(s)
    seq = 0

    def run(messages: int) -> float:
        nonlocal seq
        busy = 0.0
        for _ in range(messages):
            seq += 1
            started = time.process_time()
            for s in sessions:
                s.deliver_messages("r", "e", [seq], [LINE], LINE, True)
            busy += time.process_time() - started
            if seq % 16 == 0:
                for _, b in pairs:
                    try:
                        while b.recv(1 << 20):
                            pass
                    except BlockingIOError:
                        pass
        return busy / (messages * MEMBERS) * 1e6

    run(200)
    runs = sorted(run(1500) for _ in range(5))
    print(f"{label}: {runs[0]:.2f} µs per delivery (min of 5), median {runs[2]:.2f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "this checkout")
