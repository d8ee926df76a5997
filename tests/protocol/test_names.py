"""protocol.names: the validators behind bad_name, bad_room, bad_text and a bad ref."""

from __future__ import annotations

import unicodedata

import pytest

from protocol.errors import ErrorCode, ProtocolError
from protocol.names import LOBBY, check_name, check_ref, check_room, check_text, name_key

NAME_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-."
ROOM_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_-"


def code_of(call: object, *args: object) -> ErrorCode:
    assert callable(call)
    with pytest.raises(ProtocolError) as info:
        call(*args)
    return info.value.code


# --- user names


@pytest.mark.parametrize("name", ["a", "a" * 32, NAME_CHARS[:32], NAME_CHARS[-32:], "...", "-_-"])
def test_check_name_returns_a_valid_name_unchanged(name: str) -> None:
    assert check_name(name) == name


def accepted(check: object, candidates: str) -> str:
    """The characters among ``candidates`` that ``check`` accepts as a one-character value."""
    assert callable(check)
    ok: list[str] = []
    for ch in candidates:
        try:
            assert check(ch) == ch
        except ProtocolError:
            continue
        ok.append(ch)
    return "".join(ok)


ASCII = "".join(map(chr, range(0x80)))


def test_check_name_accepts_exactly_the_ascii_characters_of_the_protocol() -> None:
    assert sorted(accepted(check_name, ASCII)) == sorted(NAME_CHARS)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "a" * 33,
        "\u0430",  # Cyrillic a
        "\u0391lice",  # Greek Alpha
        "\uff21",  # fullwidth A
        "\u00e9",
        "\u0131",  # dotless i, an upper() away from ASCII I
        "K\u212a",  # Kelvin sign, which lower()s to ASCII k
        "\u0660",  # Arabic-Indic digit zero: \d would match it
        "alice\n",  # `$` would match before this newline
        "a\x00",
    ],
    ids=repr,
)
def test_check_name_refuses_non_ascii_look_alikes_and_bad_lengths(name: str) -> None:
    assert code_of(check_name, name) is ErrorCode.BAD_NAME


def test_check_name_refuses_every_ascii_character_outside_the_set() -> None:
    for ch in sorted(set(ASCII) - set(NAME_CHARS)):
        assert code_of(check_name, f"a{ch}b") is ErrorCode.BAD_NAME, repr(ch)


@pytest.mark.parametrize("value", [None, 1, b"alice", ["alice"]], ids=repr)
def test_check_name_refuses_non_strings(value: object) -> None:
    assert code_of(check_name, value) is ErrorCode.BAD_NAME


def test_check_name_names_the_field_in_its_message() -> None:
    with pytest.raises(ProtocolError) as info:
        check_name("a b", "to")
    assert info.value.message.startswith("to must be")


def test_name_key_compares_case_insensitively() -> None:
    assert name_key("Alice") == name_key("ALICE") == name_key("alice") == "alice"
    assert name_key("a.B-c_9") == "a.b-c_9"


# --- room names


def test_check_room_accepts_exactly_the_ascii_characters_of_the_protocol() -> None:
    assert sorted(accepted(check_room, ASCII)) == sorted(ROOM_CHARS)
    assert code_of(check_room, "A") is ErrorCode.BAD_ROOM


@pytest.mark.parametrize("room", ["", "r" * 33, "Lobby", "lobby\n", "\u043e", "a b", None, 5])
def test_check_room_refuses(room: object) -> None:
    assert code_of(check_room, room) is ErrorCode.BAD_ROOM


def test_check_room_accepts_32_characters_and_the_lobby() -> None:
    assert check_room("r" * 32) == "r" * 32
    assert check_room(LOBBY) == "lobby"


# --- text


def test_check_text_strips_and_returns_the_text() -> None:
    assert check_text("  hello \n", 10) == "hello"


def test_check_text_counts_characters_not_bytes() -> None:
    assert check_text("😀" * 10, 10) == "😀" * 10
    assert code_of(check_text, "😀" * 11, 10) is ErrorCode.BAD_TEXT


def test_check_text_length_is_measured_after_stripping() -> None:
    assert check_text(" " * 50 + "abc" + " " * 50, 3) == "abc"
    assert code_of(check_text, "abcd", 3) is ErrorCode.BAD_TEXT


@pytest.mark.parametrize("value", ["", "   ", "\n\t", None, 3, ["x"]], ids=repr)
def test_check_text_refuses_empty_and_non_strings(value: object) -> None:
    assert code_of(check_text, value, 4000) is ErrorCode.BAD_TEXT


CONTROLS = [chr(cp) for cp in [*range(0x20), *range(0x7F, 0xA0)]]


def test_control_characters_are_exactly_c0_del_and_c1() -> None:
    """The table below is complete: Unicode has no other character of category Cc."""
    every_cc = [chr(cp) for cp in range(0x110000) if unicodedata.category(chr(cp)) == "Cc"]
    assert every_cc == CONTROLS


@pytest.mark.parametrize("ch", CONTROLS, ids=lambda c: f"U+{ord(c):04X}")
def test_check_text_refuses_every_control_character_inside_text_but_newline_and_tab(
    ch: str,
) -> None:
    text = f"a{ch}b"
    if ch in "\n\t":
        assert check_text(text, 10) == text
    else:
        with pytest.raises(ProtocolError) as info:
            check_text(text, 10)
        assert info.value.code is ErrorCode.BAD_TEXT
        assert f"U+{ord(ch):04X}" in info.value.message


@pytest.mark.parametrize(
    "text", ["\u2028", "\u200b", "\u202e", "\ufeff", "\u00a0", "\u00ad", "\ue000"], ids=repr
)
def test_check_text_keeps_other_unicode_inside_text(text: str) -> None:
    assert check_text(f"a{text}b", 10) == f"a{text}b"


# --- refs


@pytest.mark.parametrize("ref", ["r", "r" * 128, "é 漢 😀", " "], ids=repr)
def test_check_ref_accepts_strings_of_1_to_128_characters(ref: str) -> None:
    assert check_ref(ref) == ref


def test_check_ref_treats_none_as_no_ref() -> None:
    assert check_ref(None) is None


@pytest.mark.parametrize("ref", ["", "r" * 129, 1, 1.5, True, ["r"], {"r": 1}], ids=repr)
def test_check_ref_refuses_with_bad_frame(ref: object) -> None:
    assert code_of(check_ref, ref) is ErrorCode.BAD_FRAME
