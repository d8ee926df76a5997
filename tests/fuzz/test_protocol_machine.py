"""Stateful fuzzing of the protocol: three sessions, valid and invalid frames, any order.

A hypothesis ``RuleBasedStateMachine`` drives up to three connections to a
live gateway (real Redis) with ``hello``, ``send``, ``dm``, ``join``,
``leave``, ``history``, ``who``, ``typing``, ``ping``, ``bye``, garbage and
oversized lines. A model predicts every answer; after each step it checks
docs/protocol.md's rules:

- each refused request gets exactly one ``error`` with the right code (and
  the request's ``ref``), and changes nothing in Redis;
- room ids reach every member in order, with no gap and no duplicate, and
  ``ack`` ids count up from 1 per room;
- a connection closes only after ``frame_too_large`` or a ``bye``;
- ``who`` lists exactly the model's members; nothing arrives for a room a
  session is not in.

Each example works under names and rooms of its own (a fresh tag), so the
shared gateway and Redis carry nothing from one example to the next.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    rule,
    run_state_machine_as_test,
)

from gateway.redis import keys
from protocol.names import name_key
from tests.fuzz.conftest import FUZZ_LIMITS, Live
from tests.fuzz.rawclient import Frame, RawClient
from tests.support.waiting import wait_for

ASYNC_TYPES = {"message", "joined", "left", "typing", "dm", "history"}
"""Frames the model checks as they come, whoever's step it is."""

SESSION = st.integers(0, 2)
NAME = st.sampled_from([0, 0, 1, 1, 2, "bad"])
ROOM = st.sampled_from([0, 0, 1, 1, 2, "bad"])
TEXT = st.sampled_from(["ok"] * 6 + ["empty", "blank", "control", "long", "number"])
REF = st.sampled_from(["a", "b", "new", "new", "none", "bad"])

BAD_TEXTS: dict[str, Any] = {
    "empty": "", "blank": " \t\n ", "control": "a\x07b", "long": "x" * (FUZZ_LIMITS.max_text + 1),
    "number": 42,
}
GARBAGE = [
    b"not json", b"\x00\x00\x00", b"\xe2\x82", b"\xff\xfe{}", b"[1, 2]", b"42", b'"type"',
    b"{}", b'{"type": 7}', b'{"type": null}', b'{"type": "ping"', b"", b"   ",
    b'{"type": "ping", "ref": "\xed\xa0\x80"}',
]
UNKNOWN = [b'{"type": "launch"}', b'{"type": ""}', b'{"type": "HELLO", "name": "x"}',
           "{\"type\": \"p\u00efng\"}".encode()]


@dataclass
class Session:
    """What the model knows of one connection."""

    client: RawClient
    name: str | None = None
    token: str | None = None
    rooms: set[str] = field(default_factory=set)
    last_id: dict[str, int] = field(default_factory=dict)
    joining: set[str] = field(default_factory=set)
    """Rooms whose history frame is due (a join or hello under way)."""
    leaving: set[str] = field(default_factory=set)
    answers: list[Frame] = field(default_factory=list)
    """Direct answers (ack, error, welcome, who, pong, bye) not yet checked."""
    queried: list[Frame] = field(default_factory=list)
    """History frames that answer a ``history`` request."""
    replaced: bool = False
    """Another session took the name with the token: ``bye``/``replaced`` is due."""

    @property
    def key(self) -> str | None:
        return None if self.name is None else name_key(self.name)


def machine_for(live: Live, tags: Iterator[int]) -> type[RuleBasedStateMachine]:
    """The state machine class, bound to the live gateway and Redis of this test."""
    gw = live.gateway
    r = live.redis

    class ProtocolMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.tag = f"z{next(tags)}x"
            self.names = [f"{self.tag}u{i}" for i in range(3)]
            self.room_names = [f"{self.tag}r{i}" for i in range(3)]
            self.sessions = [Session(RawClient(gw.address)) for _ in range(3)]
            self.room_last: dict[str, int] = {}
            self.send_refs: dict[tuple[str, str, str], int] = {}
            self.dm_refs: set[tuple[str, str]] = set()
            self.syncs = itertools.count()

        # ------------------------------------------------------------ plumbing

        def session(self, i: int) -> Session:
            """Session ``i``; a fresh connection if the gateway closed the old one."""
            s = self.sessions[i]
            if s.client.closed:
                s = self.sessions[i] = Session(RawClient(gw.address))
            return s

        def holder(self, key: str) -> Session | None:
            return next((s for s in self.sessions if s.key == key and not s.client.closed),
                        None)

        def room(self, choice: int | str) -> str:
            return "Bad room" if choice == "bad" else self.room_names[int(choice)]

        def snapshot(self) -> dict[bytes, Any]:
            """Redis as far as this example is concerned."""
            state: dict[bytes, Any] = {}
            # user keys hold the name's key (look-alikes folded), room keys the tag as is
            tags = {self.tag, name_key(self.tag)}
            found = {k for t in tags for k in r.scan_iter(match=f"*{t}*", count=1000)}
            for key in sorted(found):
                kind = r.type(key)
                if kind == b"string":
                    state[key] = r.get(key)
                elif kind == b"list":
                    state[key] = r.lrange(key, 0, -1)
                elif kind == b"hash":
                    state[key] = r.hgetall(key)
            members = r.hgetall(keys.gateway_members(gw.config.gateway_id))
            state[b"gw-members"] = {k for k in members if any(t.encode() in k for t in tags)}
            names = r.smembers(keys.gateway_names(gw.config.gateway_id))
            state[b"gw-names"] = {n for n in names if any(t.encode() in n for t in tags)}
            return state

        def observe(self, s: Session, frame: Frame) -> None:
            """Check one frame against the model, in arrival order, and update the model."""
            kind = frame["type"]
            if kind == "welcome":  # logged in from here on: its histories follow
                s.name, s.token = frame["name"], frame["token"]
            if kind not in ASYNC_TYPES:
                s.answers.append(frame)
                return
            assert s.name is not None, f"{kind} before login: {frame}"
            if kind == "history":
                ids = [m["id"] for m in frame["messages"]]
                assert ids == sorted(set(ids)), ids
                assert all(m["room"] == frame["room"] for m in frame["messages"])
                if frame["room"] in s.joining:
                    s.joining.discard(frame["room"])
                    s.rooms.add(frame["room"])
                    s.last_id[frame["room"]] = ids[-1] if ids else 0
                    assert not ids or ids == list(range(ids[0], ids[-1] + 1)), ids
                else:
                    s.queried.append(frame)
                return
            if kind == "dm":
                assert s.key in (name_key(frame["from"]), name_key(frame["to"])), frame
                return
            room = frame["room"]
            if kind == "left" and name_key(frame["name"]) == s.key and room in s.leaving:
                s.leaving.discard(room)
                s.rooms.discard(room)
                return
            assert room in s.rooms, f"{kind} for {room}, not one of {s.name}'s rooms: {frame}"
            if kind == "message":
                assert frame["id"] == s.last_id[room] + 1, (s.name, s.last_id[room], frame)
                s.last_id[room] = frame["id"]
            elif kind == "typing":
                assert name_key(frame["name"]) != s.key, "own typing echoed"

        def poll_others(self, acting: Session | None) -> None:
            """Check what the other sessions received meanwhile; none may have closed."""
            for s in self.sessions:
                if s is acting or s.client.closed or s.replaced:
                    continue
                for frame in s.client.poll():
                    self.observe(s, frame)
                assert not s.client.closed, f"{s.name}'s connection closed unasked"
                assert not s.answers, f"{s.name} got unasked {s.answers}"

        def exchange(self, s: Session, payload: bytes) -> list[Frame]:
            """Send ``payload`` and a ``ping``; the direct answers before its ``pong``."""
            ref = f"sync{next(self.syncs)}"
            s.answers.clear()
            s.client.send_bytes(payload + json.dumps({"type": "ping", "ref": ref}).encode()
                                + b"\n")
            frames, sync = s.client.until(ref)
            assert sync is not None, f"connection closed unasked after {payload[:80]!r}"
            assert sync["type"] == "pong" or sync.get("code") == "not_logged_in", sync
            for frame in frames:
                self.observe(s, frame)
            self.poll_others(s)
            answers, s.answers = s.answers, []
            return answers

        def request(self, s: Session, frame: dict[str, Any]) -> list[Frame]:
            return self.exchange(s, json.dumps(frame).encode() + b"\n")

        def refused(self, s: Session, payload: bytes, code: str, ref: str | None = None) -> None:
            """``payload`` gets exactly one ``error`` with ``code`` and changes nothing."""
            before = self.snapshot()
            answers = self.exchange(s, payload)
            assert len(answers) == 1 and answers[0]["type"] == "error", answers
            error = answers[0]
            assert error["code"] == code, (payload[:100], error)
            assert isinstance(error["message"], str) and error["message"], error
            assert error.get("ref") == ref, (ref, error)
            assert self.snapshot() == before, f"refused {payload[:80]!r} changed Redis"

        def refuse(self, s: Session, frame: dict[str, Any], code: str,
                   ref: str | None = None) -> None:
            self.refused(s, json.dumps(frame).encode() + b"\n", code, ref)

        def logged_out_code(self, s: Session) -> str | None:
            return "not_logged_in" if s.name is None else None

        # --------------------------------------------------------------- rules

        @initialize(rooms=st.lists(st.lists(st.integers(0, 2), max_size=3, unique=True),
                                   min_size=2, max_size=2))
        def log_in_two(self, rooms: list[list[int]]) -> None:
            """Most steps are worth more with sessions logged in: two start so."""
            for i in (0, 1):
                self.hello(i, i, False, rooms[i], False, "none")

        @rule(i=SESSION, name=NAME, upper=st.booleans(),
              rooms=st.lists(st.integers(0, 2), max_size=3, unique=True),
              bad_room=st.sampled_from([False] * 5 + [True]),
              token=st.sampled_from(["none", "right", "wrong"]))
        def hello(self, i: int, name: int | str, upper: bool, rooms: list[int], bad_room: bool,
                  token: str) -> None:
            s = self.session(i)
            wanted = "bad name!" if name == "bad" else self.names[int(name)]
            wanted = wanted.upper() if upper else wanted
            room_names = [self.room_names[k] for k in rooms] + (["Lobby"] if bad_room else [])
            frame: dict[str, Any] = {"type": "hello", "name": wanted, "rooms": room_names}
            holder = self.holder(name_key(wanted))
            if token == "right" and holder is not None:
                frame["token"] = holder.token
            elif token == "wrong":
                frame["token"] = "A" * 22
            if name == "bad":
                return self.refuse(s, frame, "bad_name")
            if bad_room:
                return self.refuse(s, frame, "bad_room")
            if s.name is not None:
                return self.refuse(s, frame, "already_logged_in")
            if holder is not None and token != "right":
                return self.refuse(s, frame, "name_taken")
            s.joining = set(room_names)
            if holder is not None:
                holder.replaced = True
            answers = self.request(s, frame)
            assert [a["type"] for a in answers] == ["welcome"], answers
            welcome = answers[0]
            assert (welcome["name"], welcome["rooms"]) == (wanted, room_names)
            assert welcome["gateway"] == gw.config.gateway_id
            assert isinstance(welcome["token"], str) and len(welcome["token"]) >= 22
            if holder is not None:  # taken over with the token: the old session ends
                frames = holder.client.until_closed()
                for f in frames[:-1]:
                    self.observe(holder, f)
                assert frames and frames[-1] == {"type": "bye", "reason": "replaced"}, frames
                holder.name = None
            assert not s.joining, f"no history after the welcome for {s.joining}"
            return None

        @rule(i=SESSION, name=st.integers(0, 2),
              rooms=st.lists(st.integers(0, 2), max_size=3, unique=True))
        def log_in(self, i: int, name: int, rooms: list[int]) -> None:
            """A well-formed ``hello`` (still refused if logged in or the name is held)."""
            self.hello(i, name, False, rooms, False, "right")

        @rule(i=SESSION, pick=st.integers(0, 2), ref=st.booleans())
        def chat(self, i: int, pick: int, ref: bool) -> None:
            """A valid ``send`` to one of the session's rooms: traffic for the others."""
            rooms = sorted(self.sessions[i].rooms)
            if rooms and not self.sessions[i].client.closed:
                room = self.room_names.index(rooms[pick % len(rooms)])
                self.send(i, room, "ok", "new" if ref else "none")

        def ref_value(self, ref: str) -> str | None:
            """The ``ref`` a frame carries for a drawn kind: none, too long, or fresh."""
            return {"none": None, "bad": "r" * 200, "new": f"n{next(self.syncs)}"}.get(ref, ref)

        @rule(i=SESSION, room=ROOM, text=TEXT, ref=REF)
        def send(self, i: int, room: int | str, text: str, ref: str) -> None:
            s = self.session(i)
            room_name = self.room(room)
            ref_value = self.ref_value(ref)
            frame: dict[str, Any] = {"type": "send", "room": room_name,
                                     "text": "hi" if text == "ok" else BAD_TEXTS[text]}
            if ref_value is not None:
                frame["ref"] = ref_value
            echo = ref_value if ref != "bad" else None
            if s.name is None:
                return self.refuse(s, frame, "not_logged_in", echo)
            if text != "ok":
                return self.refuse(s, frame, "bad_text", echo)
            if room == "bad":
                return self.refuse(s, frame, "bad_room", echo)
            if ref == "bad":
                return self.refuse(s, frame, "bad_frame")
            if room_name not in s.rooms:
                return self.refuse(s, frame, "not_in_room", echo)
            answers = self.request(s, frame)
            if ref_value is None:
                assert answers == [], answers
                self.room_last[room_name] = self.room_last.get(room_name, 0) + 1
                return None
            assert [a["type"] for a in answers] == ["ack"], answers
            assert s.key is not None
            first = self.send_refs.get((room_name, s.key, ref_value))
            if first is not None:  # a repeated ref: the first one's ack, nothing published
                assert answers[0]["id"] == first, (first, answers)
            else:
                self.room_last[room_name] = self.room_last.get(room_name, 0) + 1
                assert answers[0]["id"] == self.room_last[room_name], answers
                self.send_refs[(room_name, s.key, ref_value)] = answers[0]["id"]
            return None

        @rule(i=SESSION, to=NAME, text=TEXT, ref=REF)
        def dm(self, i: int, to: int | str, text: str, ref: str) -> None:
            s = self.session(i)
            target = "bad name!" if to == "bad" else self.names[int(to)]
            ref_value = self.ref_value(ref)
            frame: dict[str, Any] = {"type": "dm", "to": target,
                                     "text": "psst" if text == "ok" else BAD_TEXTS[text]}
            if ref_value is not None:
                frame["ref"] = ref_value
            echo = ref_value if ref != "bad" else None
            if s.name is None:
                return self.refuse(s, frame, "not_logged_in", echo)
            if text != "ok":
                return self.refuse(s, frame, "bad_text", echo)
            if to == "bad":
                return self.refuse(s, frame, "bad_name", echo)
            if ref == "bad":
                return self.refuse(s, frame, "bad_frame")
            assert s.key is not None
            duplicate = ref_value is not None and (s.key, ref_value) in self.dm_refs
            if self.holder(name_key(target)) is None and not duplicate:
                return self.refuse(s, frame, "no_such_user", echo)
            answers = self.request(s, frame)
            assert [a["type"] for a in answers] == (["ack"] if ref_value else []), answers
            if ref_value is not None:
                self.dm_refs.add((s.key, ref_value))
            return None

        @rule(i=SESSION, room=ROOM)
        def join(self, i: int, room: int | str) -> None:
            s = self.session(i)
            room_name = self.room(room)
            frame = {"type": "join", "room": room_name}
            if s.name is None:
                return self.refuse(s, frame, "not_logged_in")
            if room == "bad":
                return self.refuse(s, frame, "bad_room")
            if room_name in s.rooms:  # already in: the newest history again, no change
                s.queried.clear()
                assert self.request(s, frame) == []
                assert [f["room"] for f in s.queried] == [room_name]
                return None
            s.joining.add(room_name)
            assert self.request(s, frame) == []
            assert room_name in s.rooms, "no history after join"
            return None

        @rule(i=SESSION, room=ROOM)
        def leave(self, i: int, room: int | str) -> None:
            s = self.session(i)
            room_name = self.room(room)
            frame = {"type": "leave", "room": room_name}
            if s.name is None:
                return self.refuse(s, frame, "not_logged_in")
            if room == "bad":
                return self.refuse(s, frame, "bad_room")
            if room_name not in s.rooms:
                return self.refuse(s, frame, "not_in_room")
            s.leaving.add(room_name)
            assert self.request(s, frame) == []
            assert room_name not in s.rooms, "no left after leave"
            return None

        @rule(i=SESSION, room=ROOM, limit=st.sampled_from([None, 1, 3, 200, 0, 201, "x"]),
              before=st.sampled_from([None, 2, 5, 0]))
        def history(self, i: int, room: int | str, limit: int | str | None,
                    before: int | None) -> None:
            s = self.session(i)
            room_name = self.room(room)
            frame: dict[str, Any] = {"type": "history", "room": room_name}
            if limit is not None:
                frame["limit"] = limit
            if before is not None:
                frame["before"] = before
            if s.name is None:
                return self.refuse(s, frame, "not_logged_in")
            if limit == "x":
                return self.refuse(s, frame, "bad_frame")
            if room == "bad":
                return self.refuse(s, frame, "bad_room")
            if limit in (0, 201) or before == 0:
                return self.refuse(s, frame, "bad_frame")
            if room_name not in s.rooms:
                return self.refuse(s, frame, "not_in_room")
            s.queried.clear()
            assert self.request(s, frame) == []
            assert [f["room"] for f in s.queried] == [room_name], s.queried
            ids = [m["id"] for m in s.queried[0]["messages"]]
            newest = self.room_last.get(room_name, 0)
            top = newest if before is None else min(newest, before - 1)
            count = min(top, 50 if limit is None else int(limit))
            assert ids == list(range(top - count + 1, top + 1)), (frame, ids, newest)
            return None

        @rule(i=SESSION, room=ROOM)
        def who(self, i: int, room: int | str) -> None:
            s = self.session(i)
            room_name = self.room(room)
            frame = {"type": "who", "room": room_name}
            if s.name is None:
                return self.refuse(s, frame, "not_logged_in")
            if room == "bad":
                return self.refuse(s, frame, "bad_room")
            answers = self.request(s, frame)
            assert [a["type"] for a in answers] == ["who"], answers
            present = [x.name for x in self.sessions
                       if x.name is not None and not x.client.closed and room_name in x.rooms]
            # sorted as names compare: case-insensitively
            members = sorted(present, key=lambda n: (n.lower(), n))
            assert answers[0] == {"type": "who", "room": room_name, "names": members}
            return None

        @rule(i=SESSION, room=ROOM)
        def typing(self, i: int, room: int | str) -> None:
            s = self.session(i)
            room_name = self.room(room)
            frame = {"type": "typing", "room": room_name}
            if s.name is None:
                return self.refuse(s, frame, "not_logged_in")
            if room == "bad":
                return self.refuse(s, frame, "bad_room")
            if room_name not in s.rooms:
                return self.refuse(s, frame, "not_in_room")
            assert self.request(s, frame) == []
            return None

        @rule(i=SESSION, ref=st.sampled_from([None, "p", "q" * 128]))
        def ping(self, i: int, ref: str | None) -> None:
            s = self.session(i)
            frame = {"type": "ping"} if ref is None else {"type": "ping", "ref": ref}
            if s.name is None:
                return self.refuse(s, frame, "not_logged_in", ref)
            answers = self.request(s, frame)
            assert answers == [frame | {"type": "pong"}], answers
            return None

        @rule(i=SESSION, garbage=st.sampled_from(GARBAGE))
        def garbage(self, i: int, garbage: bytes) -> None:
            self.refused(self.session(i), garbage + b"\n", "bad_frame")

        @rule(i=SESSION, frame=st.sampled_from(UNKNOWN))
        def unknown_type(self, i: int, frame: bytes) -> None:
            s = self.session(i)
            self.refused(s, frame + b"\n", self.logged_out_code(s) or "unknown_type")

        @rule(i=SESSION, newline=st.booleans())
        def oversized(self, i: int, newline: bool) -> None:
            s = self.session(i)
            before = self.snapshot() if s.name is None else None
            s.client.send_bytes(b'{"type":"ping","ref":"' + b"x" * FUZZ_LIMITS.max_frame
                                + (b'"}\n' if newline else b""))
            frames = s.client.until_closed()
            assert [f.get("code") for f in frames if f["type"] == "error"] == [
                "frame_too_large"], frames
            assert frames[-1]["type"] == "error", frames
            for frame in frames[:-1]:
                self.observe(s, frame)
            s.name = None
            if before is not None:
                assert self.snapshot() == before
            self.poll_others(s)

        @rule(i=SESSION)
        def bye(self, i: int) -> None:
            s = self.session(i)
            if s.name is None:  # before login a bye is refused like any other frame
                return self.refuse(s, {"type": "bye"}, "not_logged_in")
            s.client.send_bytes(b'{"type":"bye"}\n')
            frames = s.client.until_closed()
            assert frames[-1] == {"type": "bye", "reason": "client"}, frames
            for frame in frames[:-1]:
                self.observe(s, frame)
            s.name = None
            self.poll_others(s)
            return None

        # ------------------------------------------------------------ teardown

        def teardown(self) -> None:
            try:
                self.check_delivery()
            finally:
                for s in self.sessions:
                    s.client.close()
                wait_for(lambda: len(gw.registry) == 0, timeout=10,
                         what="the example's sessions to leave the registry")

        def check_delivery(self) -> None:
            """Every member ends up with every message of its rooms (none lost)."""
            def caught_up() -> bool:
                self.poll_others(acting=None)
                return all(s.last_id[room] >= self.room_last.get(room, 0)
                           for s in self.sessions if not s.client.closed for room in s.rooms)
            wait_for(caught_up, timeout=5, what="every message at every member")

    return ProtocolMachine


@pytest.mark.slow
def test_protocol_state_machine_keeps_the_protocol_invariants(no_leaks: Live) -> None:
    machine = machine_for(no_leaks, itertools.count())
    run_state_machine_as_test(machine, settings=settings(
        max_examples=30, stateful_step_count=25, deadline=None, database=None,
        suppress_health_check=[HealthCheck.too_slow]))
