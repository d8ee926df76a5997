"""protocol.names: the validators behind bad_name, bad_room, bad_text and a bad ref."""

from __future__ import annotations

import unicodedata

import pytest

from protocol import names as names_module
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


@pytest.mark.parametrize(
    "name", ["a", "a" * 32, NAME_CHARS[:32], "9" + NAME_CHARS[-31:], "a...", "0-_-", "Z."]
)
def test_check_name_returns_a_valid_name_unchanged(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["...", "-", "_", "_x", ".alice", "-bob", "_" * 32], ids=repr)
def test_check_name_refuses_a_name_that_does_not_start_with_a_letter_or_digit(
    name: str,
) -> None:
    with pytest.raises(ProtocolError) as info:
        check_name(name)
    assert info.value.code is ErrorCode.BAD_NAME
    assert info.value.message == (
        "name must be 1 to 32 characters from A-Z a-z 0-9 _ - . "
        "starting with a letter or digit"
    )


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
    assert sorted(accepted(check_name, ASCII)) == sorted(NAME_CHARS.strip("_-."))
    assert sorted(ch for ch in ASCII if accepted(check_name, [f"a{ch}"])) == sorted(NAME_CHARS)


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
    assert name_key("Bob") == name_key("BOB") == name_key("bob") == "bob"
    assert name_key("a.B-c_9") == "a.b-c_9"


@pytest.mark.parametrize("name", ["aIice", "a1ice", "ALICE", "AL1CE", "al1ce", "aiice", "Alice"])
def test_name_key_folds_look_alikes_of_alice_onto_one_key(name: str) -> None:
    assert name_key(name) == name_key("alice")


@pytest.mark.parametrize(
    ("name", "twin"),
    [("b0b", "bob"), ("B0B", "bob"), ("modern", "modem"), ("RN", "m"), ("vvendy", "wendy"),
     ("VV", "w"), ("1", "l"), ("0", "O"), ("L", "I")],
)
def test_name_key_folds_each_look_alike_class_of_the_table(name: str, twin: str) -> None:
    assert name_key(name) == name_key(twin)


@pytest.mark.parametrize(
    ("name", "other"),
    [("bob5", "bobs"), ("b8", "bb"), ("clown", "down"), ("a_b", "a-b"), ("a.b", "a-b"),
     ("bob2", "bobz"), ("rnb", "mmb"), ("v", "w")],
)
def test_name_key_keeps_names_outside_the_table_apart(name: str, other: str) -> None:
    assert name_key(name) != name_key(other)


def test_name_key_of_a_valid_name_is_a_valid_name_with_no_separator_of_ours() -> None:
    """Keys go into Redis keys and ``|``-separated fields: they stay in the name alphabet."""
    for name in ["alice", "Il1i0O", "rnvv", "z" * 32, "A.b-C_d", "9rn"]:
        key = name_key(name)
        assert set(key) <= set(NAME_CHARS) and 1 <= len(key) <= len(name)
        assert name_key(key) == key  # a key is its own key


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
    "text",
    ["\u2028", "\u200b", "\u200d", "\u200e", "\u200f", "\u061c", "\ufeff", "\u00a0",
     "\u00ad", "\ue000", "\u2800", "\ufe0f"],
    ids=repr,
)
def test_check_text_keeps_other_unicode_inside_text(text: str) -> None:
    assert check_text(f"a{text}b", 10) == f"a{text}b"


def test_check_text_keeps_emoji_joined_by_zero_width_joiners() -> None:
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    assert check_text(family, 10) == family


INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u180e",
             "\U000e0041", "\u3164", "\u115f", "\ufe0f", "\u034f", "\u2800"]


@pytest.mark.parametrize("ch", INVISIBLE, ids=lambda c: f"U+{ord(c):04X}")
def test_check_text_refuses_text_of_invisible_characters_only_as_empty(ch: str) -> None:
    for text in [ch, ch * 40, f" {ch}\n{ch}\t", f"{ch}\u00a0{ch}"]:
        with pytest.raises(ProtocolError) as info:
            check_text(text, 4000)
        assert (info.value.code, info.value.message) == (ErrorCode.BAD_TEXT, "text is empty")
    assert check_text(f"{ch}x{ch}", 10) == f"{ch}x{ch}"


def test_every_format_character_counts_as_invisible() -> None:
    """The table covers Unicode category Cf as this Python knows it, and nothing visible."""
    every_cf = [chr(cp) for cp in range(0x110000) if unicodedata.category(chr(cp)) == "Cf"]
    refused = []
    for ch in every_cf:
        with pytest.raises(ProtocolError) as info:
            check_text(ch, 10)
        refused.append(info.value.code)
    assert set(refused) == {ErrorCode.BAD_TEXT}
    table = names_module.FORMAT_CHARACTERS
    assert {unicodedata.category(ch) for ch in table} <= {"Cf", "Cn"}  # Cn: newer Unicode
    assert set(every_cf) <= set(table)


BIDI = [chr(cp) for cp in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]]


@pytest.mark.parametrize("ch", BIDI, ids=lambda c: f"U+{ord(c):04X}")
def test_check_text_refuses_bidi_embeddings_overrides_and_isolates_naming_them(ch: str) -> None:
    with pytest.raises(ProtocolError) as info:
        check_text(f"invoice{ch}fdp.exe", 100)
    assert info.value.code is ErrorCode.BAD_TEXT
    assert info.value.message == (
        f"text contains bidirectional formatting character U+{ord(ch):04X}"
        f" ({unicodedata.name(ch)})"
    )


def test_check_text_names_the_first_unsafe_character() -> None:
    with pytest.raises(ProtocolError) as info:
        check_text("a\u202eb\x07c", 100)
    assert "U+202E (RIGHT-TO-LEFT OVERRIDE)" in info.value.message
    with pytest.raises(ProtocolError) as info:
        check_text("a\x07b\u202ec", 100)
    assert info.value.message == "text contains control character U+0007"


# --- refs


@pytest.mark.parametrize("ref", ["r", "r" * 128, "é 漢 😀", " "], ids=repr)
def test_check_ref_accepts_strings_of_1_to_128_characters(ref: str) -> None:
    assert check_ref(ref) == ref


def test_check_ref_treats_none_as_no_ref() -> None:
    assert check_ref(None) is None


@pytest.mark.parametrize("ref", ["", "r" * 129, 1, 1.5, True, ["r"], {"r": 1}], ids=repr)
def test_check_ref_refuses_with_bad_frame(ref: object) -> None:
    assert code_of(check_ref, ref) is ErrorCode.BAD_FRAME
