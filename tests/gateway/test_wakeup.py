"""gateway.wakeup.Waker: one thread's poll woken by another, without polling."""

from __future__ import annotations

import select
import threading

from gateway.wakeup import Waker


def test_wake_makes_a_blocked_select_return_and_drain_clears_it() -> None:
    waker = Waker()
    try:
        woken = threading.Event()

        def waiter() -> None:
            if select.select([waker], [], [], 30)[0]:
                woken.set()

        thread = threading.Thread(target=waiter)
        thread.start()
        waker.wake()
        thread.join(30)
        assert woken.is_set()
        waker.drain()
        assert select.select([waker], [], [], 0)[0] == []
    finally:
        waker.close()


def test_many_wakes_never_block_and_a_wake_after_close_does_nothing() -> None:
    waker = Waker()
    for _ in range(100_000):
        waker.wake()
    assert select.select([waker], [], [], 0)[0] == [waker]
    waker.close()
    waker.close()
    waker.wake()
