"""Helpers every scenario uses: logging many clients in, waiting for drains."""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from bench.connection import BenchConnection, LoginFailed, connect
from protocol.address import Address
from protocol.errors import ChatError

C = TypeVar("C", bound=BenchConnection)

ProgressFn = Callable[[int, int], None]
"""Called with (done, total) as logins complete."""


@dataclass(frozen=True, slots=True)
class LoginPlan(Generic[C]):
    """How to open and log in one client."""

    factory: Callable[[], C]
    address: Address
    hello: bytes
    rcvbuf: int | None = None


@dataclass(frozen=True, slots=True)
class Logins(Generic[C]):
    """The outcome of logging many clients in."""

    connections: tuple[C | None, ...]
    """Index-aligned with the plans; None where the login failed or was not tried."""
    attempted: int
    failures: int
    first_failure: str | None
    latencies_ns: array[int]
    """Connect-to-welcome time of each success."""
    finished_ns: array[int]
    """When each success completed (monotonic ns), for per-second peaks."""
    elapsed_s: float

    @property
    def live(self) -> list[C]:
        return [c for c in self.connections if c is not None]

    @property
    def succeeded(self) -> int:
        return len(self.latencies_ns)


class LoginError(ChatError):
    """A scenario that needs every client could not log one in."""


async def login_many(
    plans: list[LoginPlan[C]],
    concurrency: int,
    timeout: float,
    stop_on_failure: bool,
    on_progress: ProgressFn | None = None,
) -> Logins[C]:
    """Log ``plans`` in with at most ``concurrency`` logins in flight.

    With ``stop_on_failure`` no new login starts after the first failure (a
    storm stops at its breaking point); otherwise every plan is tried.
    """
    results: list[C | None] = [None] * len(plans)
    latencies: array[int] = array("q")
    finished: array[int] = array("q")
    failures = 0
    first_failure: str | None = None
    attempted = 0
    next_index = 0
    stop = False
    start = time.monotonic_ns()

    async def worker() -> None:
        nonlocal next_index, failures, first_failure, attempted, stop
        while not stop and next_index < len(plans):
            index = next_index
            next_index += 1
            attempted += 1
            plan = plans[index]
            began = time.monotonic_ns()
            conn: C | None = None
            try:
                conn = await connect(plan.factory, plan.address, timeout, plan.rcvbuf)
                await conn.login(plan.hello, timeout)
            except (OSError, TimeoutError, LoginFailed) as exc:
                if conn is not None:
                    conn.abort()
                failures += 1
                if first_failure is None:
                    first_failure = f"client {index}: {_describe(exc)}"
                if stop_on_failure:
                    stop = True
                continue
            done = time.monotonic_ns()
            results[index] = conn
            latencies.append(done - began)
            finished.append(done)
            if on_progress is not None:
                on_progress(len(latencies), len(plans))

    workers = [asyncio.create_task(worker()) for _ in range(min(concurrency, len(plans)))]
    try:
        await asyncio.gather(*workers)
    except BaseException:
        for task in workers:
            task.cancel()
        for conn in results:
            if conn is not None:
                conn.abort()
        raise
    return Logins(
        connections=tuple(results), attempted=attempted, failures=failures,
        first_failure=first_failure, latencies_ns=latencies, finished_ns=finished,
        elapsed_s=(time.monotonic_ns() - start) / 1e9,
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "connect timed out"
    return f"{type(exc).__name__}: {exc}"


def require_all(logins: Logins[C]) -> list[C]:
    """Every connection, or ``LoginError`` (closing those that did log in)."""
    if logins.failures:
        close_all(logins.live)
        raise LoginError(f"{logins.failures} of {len(logins.connections)} logins failed; "
                         f"first: {logins.first_failure}")
    return logins.live


def peak_per_second(finished_ns: array[int], window_ns: int = 250_000_000) -> float:
    """The best rate of completions over any ``window_ns`` window (sliding), per second.

    A short window, so that storms shorter than a second still have a peak;
    never less than the mean over the whole span.
    """
    times = sorted(finished_ns)
    if not times:
        return 0.0
    best = 0
    lo = 0
    for hi, t in enumerate(times):
        while t - times[lo] >= window_ns:
            lo += 1
        best = max(best, hi - lo + 1)
    span = times[-1] - times[0]
    mean = len(times) / (span / 1e9) if span >= window_ns else 0.0
    return max(best / (window_ns / 1e9), mean)


async def wait_progress(done: Callable[[], bool], value: Callable[[], int],
                        idle_timeout: float, poll_s: float = 0.02) -> bool:
    """Wait until ``done()``; give up once ``value()`` stops changing for ``idle_timeout``.

    Returns whether ``done()`` became true. Draining waits for an event, but
    a lost message never comes, so the wait ends when nothing moves any more.
    """
    last = value()
    last_change = time.monotonic()
    while not done():
        await asyncio.sleep(poll_s)
        now_value = value()
        now = time.monotonic()
        if now_value != last:
            last, last_change = now_value, now
        elif now - last_change > idle_timeout:
            return done()
    return True


def close_all(connections: list[C]) -> None:
    for conn in connections:
        conn.close()


async def closed_all(connections: list[C], timeout: float = 10.0) -> None:
    """Close every connection and wait (bounded) until the transports are gone."""
    close_all(connections)
    pending = [c.closed for c in connections if not c.closed.done()]
    if pending:
        await asyncio.wait(pending, timeout=timeout)
