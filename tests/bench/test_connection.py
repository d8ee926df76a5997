"""BenchConnection against a scripted server on a real loopback socket.

The server is a few lines that write fixed gateway frames: what is tested is
the bench's reading (login, the switch from decoding to counting at the
start marker, ack picking, latency stamps), not a gateway.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import Awaitable, Callable

import pytest

from bench.connection import RECEIVER_MARKERS, BenchConnection, LoginFailed, connect
from bench.scenarios.fanout import Sender
from bench.wire import hello, start_marker
from protocol.address import Address
from protocol.codec import encode
from protocol.errors import ErrorCode
from protocol.frames import Ack, Error, History, Joined, Left, Message, Welcome

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

WELCOME = encode(Welcome("bob", "gw1", ("r",), "tok", {"max_frame": 16384}))


async def serve(script: Script) -> tuple[asyncio.Server, Address]:
    server = await asyncio.start_server(script, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, Address("127.0.0.1", port)


def message(text: str, msg_id: int) -> bytes:
    return encode(Message("r", msg_id, "alice", text, 1.0))


def test_counting_starts_right_after_the_marker_in_the_same_read() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()  # hello
        writer.write(WELCOME + encode(History("r", "e1", (), True)))
        await reader.readline()  # the test's "go" line
        stamp = time.monotonic_ns()
        writer.write(
            encode(Joined("r", "carol"))
            + message(start_marker("run1"), 1)
            + message(f"~T{stamp}~ a", 2)
            + message(f"~T{stamp}~ b", 3)
            + message(f"~T{stamp}~ c", 4)[:10]  # half a line
        )
        await writer.drain()
        writer.write(message(f"~T{stamp}~ c", 4)[10:] + encode(Left("r", "carol")))
        await writer.drain()
        await reader.read()  # until the client closes
        writer.close()

    async def scenario() -> tuple[int, int, int, int]:
        server, address = await serve(script)
        async with server:
            conn = await connect(lambda: BenchConnection("bob", RECEIVER_MARKERS), address, 5.0)
            welcome = await conn.login(hello("bob", ["r"]), 5.0)
            assert welcome.token == "tok"
            conn.stamps = array("q")
            switched = conn.count_after(start_marker("run1"))
            conn.write(b"go\n")
            await asyncio.wait_for(switched, 5.0)
            while conn.lines < 4:
                await asyncio.sleep(0.01)
            conn.close()
            await conn.closed
            return conn.lines, conn.messages, len(conn.stamps), min(conn.stamps)

    lines, messages, stamps, smallest = asyncio.run(asyncio.wait_for(scenario(), 20))
    assert lines == 4  # the joined frame and the marker came before counting began
    assert messages == 3  # the left frame is a line but not a message
    assert stamps == 3
    assert smallest >= 0


def test_login_refused_raises_with_the_code() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(encode(Error(ErrorCode.NAME_TAKEN, "taken")))
        await writer.drain()
        writer.close()

    async def scenario() -> None:
        server, address = await serve(script)
        async with server:
            conn = await connect(lambda: BenchConnection("bob"), address, 5.0)
            await conn.login(hello("bob", ["r"]), 5.0)

    with pytest.raises(LoginFailed, match="name_taken"):
        asyncio.run(asyncio.wait_for(scenario(), 20))


def test_login_fails_when_the_server_closes() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.close()

    async def scenario() -> None:
        server, address = await serve(script)
        async with server:
            conn = await connect(lambda: BenchConnection("bob"), address, 5.0)
            await conn.login(hello("bob", ["r"]), 5.0)

    with pytest.raises(LoginFailed, match="closed"):
        asyncio.run(asyncio.wait_for(scenario(), 20))


def test_sender_refills_its_window_from_acks_while_counting() -> None:
    received: list[bytes] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(WELCOME)
        # Ack every send; stop after 10, refusing the last with an error.
        for n in range(1, 11):
            line = await reader.readline()
            received.append(line)
            ref = f"~A0.{n}"
            frame = Error(ErrorCode.RATE_LIMITED, "slow", ref) if n == 10 else Ack(ref, n)
            writer.write(message("noise", 100 + n) + encode(frame))
            await writer.drain()
        await reader.read()
        writer.close()

    async def scenario() -> Sender:
        server, address = await serve(script)
        async with server:
            sender = await connect(lambda: Sender("s0", 0, "r", "pad"), address, 5.0)
            await sender.login(hello("s0", ["r"]), 5.0)
            sender.count_now()
            sender.start_saturating(2)
            while sender.acked + sender.errors < 10:
                await asyncio.sleep(0.01)
            sender.stop()
            sender.close()
            await sender.closed
            return sender

    sender = asyncio.run(asyncio.wait_for(scenario(), 20))
    assert sender.acked == 9 and sender.errors == 1 and sender.max_id == 9
    assert sender.first_error is not None and "rate_limited" in sender.first_error
    assert sender.sent >= 10
    assert all(b'"type":"send"' in line for line in received)
