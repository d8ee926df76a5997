"""Password rules (NFKC, 8..1024) and argon2id hashing: round trips, rehash, GIL release."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import argon2
import pytest

from gateway.passwords import (
    FAST_PARAMS,
    MAX_PASSWORD,
    MIN_PASSWORD,
    BadPassword,
    HashParams,
    PasswordHasher,
    normalise_password,
)
from protocol.errors import ChatError

SECRET = "correct horse battery staple"


def fullwidth(ascii_text: str) -> str:
    """The text in full-width forms (U+FF01..U+FF5E), as East Asian keyboards type it."""
    return "".join(chr(ord(c) + 0xFEE0) for c in ascii_text)


def test_normalisation_is_nfkc() -> None:
    """Full-width letters and ligatures are the same password as their plain forms."""
    assert normalise_password(fullwidth("password")) == "password"
    assert normalise_password("\ufb00ooooooo") == "ffooooooo"
    assert normalise_password("cafe\u0301-latte") == "caf\u00e9-latte"


@pytest.mark.parametrize("password", [
    "a" * MIN_PASSWORD,
    "a" * MAX_PASSWORD,
    "pass word with spaces",
    "пароль-пароль",
    "🔑🔑🔑🔑🔑🔑🔑🔑",
    "e\u0301" * MAX_PASSWORD,  # 2048 code points, 1024 once composed
])
def test_passwords_in_the_rules_are_accepted(password: str) -> None:
    assert MIN_PASSWORD <= len(normalise_password(password)) <= MAX_PASSWORD


@pytest.mark.parametrize("password", [
    "",
    "a" * (MIN_PASSWORD - 1),
    "a" * (MAX_PASSWORD + 1),
    "\ufdfa" * 57,  # 57 characters that NFKC expands to 1026
    "abc\ud800defgh",  # a lone surrogate cannot be UTF-8
    None,
    12345678,
    b"bytes-password",
])
def test_passwords_outside_the_rules_are_refused(password: object) -> None:
    with pytest.raises(BadPassword) as info:
        normalise_password(password)
    assert isinstance(info.value, ChatError)
    assert info.value.code == "bad_password"


def test_refusal_message_names_the_rule_not_the_password() -> None:
    with pytest.raises(BadPassword) as info:
        normalise_password("seven77")
    assert "8 to 1024" in str(info.value)
    assert "seven77" not in str(info.value) and "seven77" not in repr(info.value)


def test_default_parameters_are_argon2id_19mib_3_passes() -> None:
    stored = PasswordHasher().hash(SECRET)
    assert stored.startswith("$argon2id$v=19$m=19456,t=3,p=1$")


def test_round_trip_and_wrong_password(fast_hasher: PasswordHasher) -> None:
    stored = fast_hasher.hash(SECRET)
    assert SECRET not in stored
    assert fast_hasher.verify(stored, SECRET)
    assert not fast_hasher.verify(stored, SECRET + "!")
    assert not fast_hasher.verify(stored, "short")
    assert not fast_hasher.verify(stored, None)


def test_verify_normalises_like_hash(fast_hasher: PasswordHasher) -> None:
    """A password typed full-width matches the one stored half-width."""
    stored = fast_hasher.hash("password1")
    assert fast_hasher.verify(stored, fullwidth("password1"))


def test_salted_hashes_differ(fast_hasher: PasswordHasher) -> None:
    assert fast_hasher.hash(SECRET) != fast_hasher.hash(SECRET)


def test_a_garbled_stored_hash_is_a_mismatch(fast_hasher: PasswordHasher) -> None:
    assert not fast_hasher.verify("not-a-hash", SECRET)
    assert not fast_hasher.verify("", SECRET)


def test_needs_rehash_when_parameters_change(fast_hasher: PasswordHasher) -> None:
    stored = fast_hasher.hash(SECRET)
    assert not fast_hasher.needs_rehash(stored)
    stronger = PasswordHasher(HashParams(time_cost=2, memory_kib=128))
    assert stronger.needs_rehash(stored)
    assert stronger.verify(stored, SECRET)  # old hashes still verify
    assert stronger.needs_rehash("garbage")


def test_waste_time_does_a_real_verify(monkeypatch: pytest.MonkeyPatch,
                                       fast_hasher: PasswordHasher) -> None:
    """The unknown-name path runs argon2's verify, as a wrong password does."""
    calls: list[str] = []
    real = argon2.PasswordHasher.verify

    def spy(self: argon2.PasswordHasher, stored: str, password: str) -> bool:
        calls.append(stored)
        return real(self, stored, password)

    monkeypatch.setattr(argon2.PasswordHasher, "verify", spy)
    fast_hasher.waste_time()
    assert len(calls) == 1 and calls[0].startswith("$argon2id$")
    assert not fast_hasher.verify(fast_hasher.hash(SECRET), "x")  # too short: still hashed
    assert len(calls) == 2


def test_warm_up_makes_the_dummy_hash_once(monkeypatch: pytest.MonkeyPatch,
                                           fast_hasher: PasswordHasher) -> None:
    """After warm_up, the unknown-name path verifies only: it costs what a wrong
    password costs from the first time on."""
    made: list[str] = []
    real = argon2.PasswordHasher.hash

    def spy(self: argon2.PasswordHasher, password: str, *, salt: bytes | None = None) -> str:
        made.append(password)
        return real(self, password, salt=salt)

    monkeypatch.setattr(argon2.PasswordHasher, "hash", spy)
    fast_hasher.warm_up()
    assert len(made) == 1
    fast_hasher.waste_time()
    fast_hasher.waste_time()
    assert len(made) == 1


def test_repr_and_logs_hold_no_secret(fast_hasher: PasswordHasher,
                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    stored = fast_hasher.hash(SECRET)
    fast_hasher.verify(stored, SECRET)
    fast_hasher.verify(stored, "wrong password")
    text = repr(fast_hasher) + caplog.text
    assert SECRET not in text and stored not in text
    assert "argon2id" in repr(fast_hasher)


@contextmanager
def counting_thread() -> Iterator[Callable[[], int]]:
    """A thread that counts, giving the GIL away at every step, under a switch interval
    so long that no thread is ever forced to give the GIL up: while another thread
    holds the GIL, the count cannot move. Yields a function reading the count."""
    counter = 0
    stop = threading.Event()

    def count() -> None:
        nonlocal counter
        while not stop.is_set():
            counter += 1
            time.sleep(0)

    worker = threading.Thread(target=count)
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)
    worker.start()
    try:
        # Let the worker run under the new interval, so that no wait for the GIL
        # begun under the old one can still force a switch.
        start = counter
        while counter < start + 3:
            time.sleep(0.001)
        yield lambda: counter
    finally:
        sys.setswitchinterval(old_interval)
        stop.set()
        worker.join()


def test_verify_lets_other_threads_run() -> None:
    """While one thread verifies (default cost), another keeps making progress:
    argon2 releases the GIL. Several tries, as the OS may not schedule the
    counting thread during one verify on a loaded machine."""
    hasher = PasswordHasher()
    stored = hasher.hash(SECRET)
    progress: list[int] = []
    with counting_thread() as count:
        for _ in range(10):
            before = count()
            assert hasher.verify(stored, SECRET)
            progress.append(count() - before)
            if progress[-1] > 0:
                break
    assert max(progress) > 0, f"no progress during any of {len(progress)} verifies"


def test_control_a_gil_holding_call_shows_no_progress() -> None:
    """The method above can fail: during a call that keeps the GIL (a pure-Python
    loop as long as a verify) the counting thread makes no progress."""
    with counting_thread() as count:
        before = count()
        total = 0
        for i in range(500_000):
            total += i
        after = count()
    assert total > 0
    assert after == before


def test_fast_params_are_only_for_tests() -> None:
    assert FAST_PARAMS.memory_kib < HashParams().memory_kib
