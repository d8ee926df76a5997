"""Who a user is, as the gateway sees it: never what a client claims in a frame.

``from`` is set by the gateway; name tokens are 128-bit random secrets of
which Redis keeps only a hash; a wrong token cannot take a name; names and
rooms are checked exactly, so a look-alike Unicode name is refused end to end.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import redis

from gateway.redis import keys
from gateway.server import Gateway
from protocol.limits import Limits
from tests.conftest import Connect, StartGateway
from tests.support.redis_server import RedisEndpoint
from tests.support.waiting import wait_for
from tests.support.wire import WireClient


def login(client: WireClient, name: str, rooms: tuple[str, ...] = ("lobby",),
          **extra: Any) -> dict[str, Any]:
    """``hello``; returns the ``welcome`` after reading one ``history`` per room."""
    welcome = client.hello(name, rooms=list(rooms), **extra)
    for room in rooms:
        client.recv_type("history", room=room)
    return welcome


def refused(client: WireClient, code: str, **frame: Any) -> dict[str, Any]:
    """Send ``frame``; the answer is an ``error`` with ``code`` and the connection stays open."""
    client.send(**frame)
    error = client.recv_type("error")
    assert error["code"] == code, (frame, error)
    assert_open(client)
    return error


def assert_open(client: WireClient) -> None:
    """The connection still answers (``pong``, or ``not_logged_in`` before a login)."""
    client.send(type="ping", ref="still-open")
    answer = client.recv()
    while answer.get("ref") != "still-open":  # a joined, a message: not an error
        assert answer["type"] != "error", answer
        answer = client.recv()
    assert answer["type"] == "pong" or answer.get("code") == "not_logged_in", answer


def redis_dump(r: redis.Redis) -> str:
    """Every key and every stored value in Redis as text, for searching."""
    out: list[object] = []
    for key in r.scan_iter(count=1000):
        out.append(key)
        kind = r.type(key)
        if kind == b"string":
            out.append(r.get(key))
        elif kind == b"list":
            out += r.lrange(key, 0, -1)
        elif kind == b"hash":
            out.append(r.hgetall(key))
        elif kind == b"set":
            out.append(r.smembers(key))
        elif kind == b"zset":
            out.append(r.zrange(key, 0, -1))
    return "\n".join(map(repr, out))


def test_forged_from_is_replaced_by_the_real_name(gateway: Gateway, connect: Connect,
                                                   shared_redis: RedisEndpoint) -> None:
    alice, bob = connect(gateway.address), connect(gateway.address)
    login(alice, "alice")
    login(bob, "bob")
    alice.recv_type("joined", name="bob")
    alice.send(type="send", room="lobby", text="hi", ref="r1", **{"from": "bob"},
               id=999, ts=1.0, name="bob")
    ack = alice.recv_type("ack", ref="r1")
    message = bob.recv_type("message")
    assert (message["from"], message["id"], message["text"]) == ("alice", ack["id"], "hi")
    assert message["id"] == 1 and message["ts"] > 1.0
    stored = [json.loads(line) for line in
              shared_redis.client().lrange("{room:lobby}:log", 0, -1)]
    assert [m["from"] for m in stored] == ["alice"]

    alice.send(type="dm", to="bob", text="psst", ref="d1", **{"from": "carol"})
    dm = bob.recv_type("dm")
    assert (dm["from"], dm["to"], dm["text"]) == ("alice", "bob", "psst")

    alice.send(type="typing", room="lobby", name="bob")
    assert bob.recv_type("typing")["name"] == "alice"


def test_tokens_are_128_bit_random_and_only_their_hash_is_stored(
        gateway: Gateway, connect: Connect, shared_redis: RedisEndpoint) -> None:
    tokens = []
    for i in range(40):
        client = connect(gateway.address)
        tokens.append(login(client, f"user{i}", rooms=())["token"])
    raw = [base64.urlsafe_b64decode(t + "=" * (-len(t) % 4)) for t in tokens]
    assert {len(r) for r in raw} == {16}, "a token carries 128 bits"
    assert len(set(raw)) == len(raw)
    bits = "".join(f"{byte:08b}" for r in raw for byte in r)
    assert 0.45 < bits.count("1") / len(bits) < 0.55, "token bits are not balanced"
    for position in range(128):  # no bit stuck: each varies across 40 tokens (p = 2**-39)
        assert len({bits[i * 128 + position] for i in range(40)}) == 2, position

    r = shared_redis.client()
    record = r.hgetall(keys.user("user0"))
    assert record[b"token"] == hashlib.sha256(tokens[0].encode()).hexdigest().encode()
    assert record[b"name"] == b"user0"
    stored = redis_dump(r)
    for token in tokens:
        assert token not in stored, "a raw token reached Redis"


def test_wrong_token_gets_name_taken_and_the_right_one_takes_over(
        gateway: Gateway, connect: Connect) -> None:
    holder = connect(gateway.address)
    token = login(holder, "alice", rooms=())["token"]
    thief = connect(gateway.address)
    wrong = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    for name, extra in [("alice", {"token": wrong}), ("ALICE", {}), ("Alice", {"token": ""}),
                        ("alice", {"token": "x" * 128})]:
        refused(thief, "name_taken", type="hello", name=name, rooms=[], **extra)
    holder.send(type="ping", ref="h")
    assert holder.recv_type("pong")["ref"] == "h", "the holder lost its session"

    heir = connect(gateway.address)
    assert login(heir, "Alice", rooms=(), token=token)["name"] == "Alice"
    assert holder.wait_closed()[-1] == {"type": "bye", "reason": "replaced"}


LOOKALIKE_NAMES = [
    "\u0430lice",        # Cyrillic a
    "\uff41lice",        # fullwidth a
    "alice\u200b",       # zero-width space
    "al\u0131ce",        # dotless i
    "\u212aen",          # Kelvin sign: lower() is an ASCII k
    "\u2160x",           # Roman numeral one
    "alic\u00e9",        # e with acute
    "alice\u0301",       # combining acute
    "alice ",            # trailing space
    "a" * 33,            # one too long
    "",
    "al|ce",
]
LOOKALIKE_ROOMS = [
    "lobb\u0443",        # Cyrillic u
    "\uff4cobby",        # fullwidth l
    "Lobby",             # upper case
    "lobby\u200b",
    "l\u00f6bby",
    "lobby.x",
    "r" * 33,
    "",
]


def test_lookalike_names_and_rooms_are_refused_over_tcp(
        start_gateway: StartGateway, connect: Connect, shared_redis: RedisEndpoint) -> None:
    # Some 60 refused frames on one connection: every line costs a frame token, so the
    # rate limit is out of the way here (it has tests of its own).
    gateway = start_gateway(limits=Limits(rate_per_s=10_000.0, burst=10_000))
    client = connect(gateway.address)
    for name in LOOKALIKE_NAMES:
        # as \\u escapes and as raw UTF-8: the same refusal
        refused(client, "bad_name", type="hello", name=name, rooms=[])
        client.send_raw(b'{"type":"hello","rooms":[],"name":"' + name.encode() + b'"}\n')
        assert client.recv_type("error")["code"] == "bad_name", name
    for room in LOOKALIKE_ROOMS:
        refused(client, "bad_room", type="hello", name="alice", rooms=[room])
    login(client, "a" * 32, rooms=("r" * 32,))  # the longest valid ones pass

    for room in LOOKALIKE_ROOMS:
        refused(client, "bad_room", type="join", room=room)
        refused(client, "bad_room", type="send", room=room, text="x")
        refused(client, "bad_room", type="who", room=room)
    for name in LOOKALIKE_NAMES:
        refused(client, "bad_name", type="dm", to=name, text="x")

    # nothing of the refused names or rooms reached Redis
    keys = {k.decode() for k in shared_redis.client().scan_iter(count=1000)}
    users = {k.split("}")[0] for k in keys if k.startswith("{user:")}
    rooms = {k.split("}")[0] for k in keys if k.startswith("{room:")}
    assert users == {"{user:" + "a" * 32}, users
    assert rooms <= {"{room:" + "r" * 32}, rooms
    # and the Kelvin-sign name never claimed "ken"
    other = connect(gateway.address)
    assert login(other, "ken", rooms=())["name"] == "ken"
    wait_for(lambda: len(gateway.registry) == 2, timeout=5, what="two sessions")
