"""protocol.frames: frozen, slotted frames that cannot exist invalid."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import pytest

from protocol.errors import ErrorCode, ProtocolError
from protocol.frames import (
    CLIENT_TYPES,
    SERVER_TYPES,
    Ack,
    Bye,
    ByeReason,
    ClientFrame,
    DirectMessage,
    Dm,
    DmHistory,
    DmHistoryQuery,
    DmSummary,
    Error,
    Goodbye,
    Hello,
    History,
    HistoryQuery,
    Join,
    Joined,
    Leave,
    Left,
    Message,
    Passwd,
    Ping,
    Pong,
    Position,
    Read,
    Register,
    Registered,
    Send,
    ServerFrame,
    Typing,
    TypingNotice,
    Welcome,
    Who,
    WhoList,
)


def code_of(cls: type[Any], *args: Any, **kwargs: Any) -> ErrorCode:
    with pytest.raises(ProtocolError) as info:
        cls(*args, **kwargs)
    return info.value.code


# --- the type tables


def test_every_client_frame_class_has_a_wire_type() -> None:
    assert set(typing.get_args(ClientFrame)) == set(CLIENT_TYPES)
    assert sorted(CLIENT_TYPES.values()) == sorted(
        ["hello", "send", "dm", "join", "leave", "history", "history", "who", "typing", "ping",
         "bye", "register", "passwd", "read"]
    )


def test_every_server_frame_class_has_a_wire_type() -> None:
    assert set(typing.get_args(ServerFrame)) == set(SERVER_TYPES)
    assert sorted(SERVER_TYPES.values()) == sorted(
        [
            "welcome",
            "history",
            "history",
            "message",
            "dm",
            "ack",
            "joined",
            "left",
            "typing",
            "who",
            "pong",
            "error",
            "bye",
            "registered",
        ]
    )


def test_bye_reasons_are_those_of_protocol_md() -> None:
    assert [r.value for r in ByeReason] == [
        "shutdown",
        "idle",
        "slow_consumer",
        "replaced",
        "client",
        "abuse",
    ]


SAMPLES: list[Any] = [
    Position("e", 0),
    Hello("a"),
    Send("r", "t"),
    Dm("b", "t"),
    Join("r"),
    Leave("r"),
    HistoryQuery("r"),
    Who("r"),
    Typing("r"),
    Ping(),
    Bye(),
    Welcome("a", "gw", ("lobby",), "t", {}),
    Message("r", 1, "a", "t", 1.0),
    History("r", "e", (), True),
    DirectMessage("a", "b", "t", 1.0),
    Ack("r"),
    Joined("r", "a"),
    Left("r", "a"),
    TypingNotice("r", "a"),
    WhoList("r", ()),
    Pong(),
    Error(ErrorCode.INTERNAL, "m"),
    Goodbye(ByeReason.IDLE),
    # v1.1
    Register("password"),
    Passwd("old", "password"),
    Read(room="r", id=1),
    DmHistoryQuery("b"),
    DmSummary("b", "e", 1, 0),
    DmHistory("b", "e", (), True),
    Registered("a"),
]


@pytest.mark.parametrize("frame", SAMPLES, ids=lambda f: type(f).__name__)
def test_frames_are_frozen_and_slotted(frame: Any) -> None:
    assert not hasattr(frame, "__dict__")
    fields = dataclasses.fields(frame)
    if fields:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(frame, fields[0].name, None)
    with pytest.raises((AttributeError, TypeError)):
        frame.extra = 1


# --- Position


def test_position_accepts_id_zero_and_a_64_character_epoch() -> None:
    assert Position("e" * 64, 0) == Position("e" * 64, 0)


@pytest.mark.parametrize(
    ("epoch", "msg_id"),
    [("", 1), ("e" * 65, 1), (None, 1), (5, 1), ("e", -1), ("e", True), ("e", 1.0), ("e", "1")],
    ids=repr,
)
def test_bad_positions_are_bad_frame(epoch: Any, msg_id: Any) -> None:
    assert code_of(Position, epoch, msg_id) is ErrorCode.BAD_FRAME


# --- Hello


def test_hello_defaults_to_the_lobby_without_since_or_token() -> None:
    hello = Hello("alice")
    assert (hello.rooms, hello.since, hello.token) == (("lobby",), {}, None)


def test_hello_checks_its_name() -> None:
    assert code_of(Hello, "a b") is ErrorCode.BAD_NAME


def test_hello_refuses_repeated_rooms() -> None:
    """The codec collapses repeats; a frame built in code must not carry them."""
    assert code_of(Hello, "a", ("dev", "dev")) is ErrorCode.BAD_ROOM


def test_hello_takes_at_most_fifty_rooms() -> None:
    rooms = tuple(f"r{i}" for i in range(51))
    assert code_of(Hello, "a", rooms) is ErrorCode.BAD_ROOM
    assert Hello("a", rooms[:50]).rooms == rooms[:50]


def test_hello_checks_rooms_and_since_rooms() -> None:
    assert code_of(Hello, "a", ("Dev",)) is ErrorCode.BAD_ROOM
    assert code_of(Hello, "a", ("dev",), {"Dev": Position("e", 1)}) is ErrorCode.BAD_ROOM


@pytest.mark.parametrize("token", [5, b"t", "t" * 129], ids=repr)
def test_hello_refuses_a_bad_token(token: Any) -> None:
    assert code_of(Hello, "a", token=token) is ErrorCode.BAD_FRAME


def test_hello_accepts_a_128_character_token() -> None:
    assert Hello("a", token="t" * 128).token == "t" * 128


# --- the other client frames


def test_send_checks_room_and_ref_but_leaves_text_to_the_codec() -> None:
    assert code_of(Send, "Dev", "t") is ErrorCode.BAD_ROOM
    assert code_of(Send, "dev", "t", "") is ErrorCode.BAD_FRAME
    assert Send("dev", "", None).text == ""  # max_text is configurable: the codec checks it


def test_dm_checks_to_and_ref() -> None:
    with pytest.raises(ProtocolError) as info:
        Dm("a b", "t")
    assert info.value.code is ErrorCode.BAD_NAME
    assert info.value.message.startswith("to ")
    assert code_of(Dm, "bob", "t", "r" * 129) is ErrorCode.BAD_FRAME


@pytest.mark.parametrize("cls", [Join, Leave, Who, Typing])
def test_room_frames_check_their_room(cls: type[Any]) -> None:
    assert code_of(cls, "Dev") is ErrorCode.BAD_ROOM
    assert cls("dev").room == "dev"


def test_history_query_defaults() -> None:
    assert HistoryQuery("dev") == HistoryQuery("dev", None, 50)


@pytest.mark.parametrize("before", [0, -1, True, 1.0, "1"], ids=repr)
def test_history_query_before_must_be_a_positive_integer(before: Any) -> None:
    assert code_of(HistoryQuery, "dev", before) is ErrorCode.BAD_FRAME


@pytest.mark.parametrize("limit", [0, 201, -1, True, 50.0, None], ids=repr)
def test_history_query_limit_must_be_1_to_200(limit: Any) -> None:
    assert code_of(HistoryQuery, "dev", None, limit) is ErrorCode.BAD_FRAME


def test_history_query_bounds_are_inclusive() -> None:
    assert HistoryQuery("dev", 1, 1).limit == 1
    assert HistoryQuery("dev", 1, 200).limit == 200
    assert code_of(HistoryQuery, "DEV") is ErrorCode.BAD_ROOM


def test_ping_checks_its_ref() -> None:
    assert Ping("p").ref == "p"
    assert code_of(Ping, "") is ErrorCode.BAD_FRAME


# --- server frames


def test_error_frame_converts_from_and_to_an_exception() -> None:
    exc = ProtocolError(ErrorCode.NOT_IN_ROOM, "join first", "r")
    frame = Error.of(exc)
    assert frame == Error(ErrorCode.NOT_IN_ROOM, "join first", "r")
    back = frame.to_exception()
    assert type(back) is ProtocolError
    assert (back.code, back.message, back.ref) == (exc.code, exc.message, exc.ref)


def test_frames_compare_by_value() -> None:
    assert Message("r", 1, "a", "t", 1.0) == Message("r", 1, "a", "t", 1.0)
    assert Message("r", 1, "a", "t", 1.0) != Message("r", 2, "a", "t", 1.0)
    assert hash(Joined("r", "a")) == hash(Joined("r", "a"))


# --- v1.1: accounts, conversations, read state


def test_hello_carries_an_optional_password() -> None:
    assert Hello("alice").password is None
    assert Hello("alice", password="hunter2!").password == "hunter2!"
    assert code_of(Hello, "alice", password=5) is ErrorCode.BAD_FRAME


@pytest.mark.parametrize(
    "frame",
    [
        Hello("alice", password="s3cret-pass"),
        Register("s3cret-pass"),
        Passwd("s3cret-pass", "s3cret-pass"),
    ],
    ids=lambda f: type(f).__name__,
)
def test_no_password_ever_appears_in_a_repr(frame: Any) -> None:
    assert "s3cret" not in repr(frame)
    assert "s3cret" not in str(frame)


def test_hello_since_holds_rooms_and_at_names() -> None:
    since = {"dev": Position("e", 1), "@Bob": Position("f", 2)}
    assert Hello("alice", since=since).since == since


@pytest.mark.parametrize(
    ("key", "code"),
    [("@", ErrorCode.BAD_NAME), ("@a b", ErrorCode.BAD_NAME), ("@_x", ErrorCode.BAD_NAME),
     ("@@bob", ErrorCode.BAD_NAME), ("bob@", ErrorCode.BAD_ROOM), (5, ErrorCode.BAD_ROOM)],
    ids=repr,
)
def test_hello_checks_the_name_of_a_since_conversation(key: Any, code: ErrorCode) -> None:
    assert code_of(Hello, "a", since={key: Position("e", 1)}) is code


def test_hello_since_names_a_conversation_once_up_to_look_alikes() -> None:
    twice = {"@alice": Position("e", 1), "@a1ice": Position("e", 2)}
    assert code_of(Hello, "bob", since=twice) is ErrorCode.BAD_FRAME


def test_register_checks_the_password_rule() -> None:
    assert Register("x" * 8).password == "x" * 8
    assert Register("x" * 1024).password == "x" * 1024
    for bad in ["x" * 7, "x" * 1025, "", None, 8]:
        assert code_of(Register, bad) is ErrorCode.BAD_PASSWORD


def test_passwd_checks_new_and_takes_any_string_as_old() -> None:
    assert Passwd("short", "long enough").old == "short"
    assert code_of(Passwd, 5, "long enough") is ErrorCode.BAD_FRAME
    with pytest.raises(ProtocolError) as info:
        Passwd("whatever", "short")
    assert info.value.code is ErrorCode.BAD_PASSWORD
    assert info.value.message == "new must be 8 to 1024 characters"


def test_read_takes_exactly_one_of_room_and_with() -> None:
    assert Read(room="dev", id=0).room == "dev"
    assert Read(peer="Bob", id=3).peer == "Bob"
    assert code_of(Read, id=1) is ErrorCode.BAD_FRAME
    assert code_of(Read, room="dev", peer="bob", id=1) is ErrorCode.BAD_FRAME
    assert code_of(Read, room="Dev", id=1) is ErrorCode.BAD_ROOM
    assert code_of(Read, peer="a b", id=1) is ErrorCode.BAD_NAME


@pytest.mark.parametrize("msg_id", [-1, True, 1.0, "1", None], ids=repr)
def test_read_id_must_be_a_non_negative_integer(msg_id: Any) -> None:
    assert code_of(Read, room="dev", id=msg_id) is ErrorCode.BAD_FRAME


def test_dm_history_query_checks_with_before_and_limit() -> None:
    assert DmHistoryQuery("bob") == DmHistoryQuery("bob", None, 50)
    with pytest.raises(ProtocolError) as info:
        DmHistoryQuery("a b")
    assert (info.value.code, info.value.message.split()[0]) == (ErrorCode.BAD_NAME, "with")
    assert code_of(DmHistoryQuery, "bob", 0) is ErrorCode.BAD_FRAME
    assert code_of(DmHistoryQuery, "bob", None, 201) is ErrorCode.BAD_FRAME


def test_v1_1_server_frames_default_to_what_a_v1_gateway_sends() -> None:
    welcome = Welcome("a", "gw", (), "t", {})
    assert (welcome.account, welcome.dms, welcome.read) == (False, (), {})
    dm = DirectMessage("a", "b", "t", 1.0)
    assert (dm.id, dm.epoch) == (None, None)
