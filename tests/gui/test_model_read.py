"""Read state of an account's conversations, without Tk: counts from the server's marks,
messages that arrive after them, and when a read mark is sent."""

from __future__ import annotations

from client.gui import wording
from client.gui.model import Conversation, ConvKey, ReadSync
from protocol.errors import ErrorCode, ProtocolError

BOB = ConvKey.direct("bob")
LOBBY = ConvKey.room("lobby")


def thread() -> Conversation:
    return Conversation(BOB, "bob")


def test_a_stored_conversation_counts_what_the_server_has_past_the_read_mark() -> None:
    conv = thread()
    conv.server_marks(read=12, last_id=14)
    assert (conv.unread, conv.read_mark) == (2, 12)
    # the two dms then arrive (the login's catch-up): already counted, not twice
    assert not conv.arrived(13, own=False, mention=False, unseen=True)
    assert not conv.arrived(14, own=False, mention=True, unseen=True)
    assert (conv.unread, conv.mentions) == (2, 1)
    # a later one is new
    assert conv.arrived(15, own=False, mention=False, unseen=True)
    assert conv.unread == 3


def test_own_messages_among_the_announced_ones_come_off_the_count() -> None:
    conv = thread()
    conv.server_marks(read=0, last_id=3)
    conv.arrived(1, own=False, mention=False, unseen=True)
    conv.arrived(2, own=True, mention=False, unseen=True)  # sent from another device
    conv.arrived(3, own=False, mention=False, unseen=True)
    assert conv.unread == 2


def test_read_elsewhere_clears_the_count_and_is_not_counted_again() -> None:
    conv = thread()
    for message_id in (1, 2, 3):
        conv.accept(message_id)
        conv.arrived(message_id, own=False, mention=False, unseen=True)
    assert conv.unread == 3
    conv.server_marks(read=3, last_id=3)  # a second device read them all
    assert conv.unread == 0
    assert not conv.arrived(3, own=False, mention=False, unseen=True)
    assert not conv.is_unread(2, own=False) and conv.is_unread(4, own=False)


def test_a_partly_read_thread_keeps_what_is_shown_and_adds_what_is_coming() -> None:
    conv = thread()
    for message_id in (1, 2):
        conv.accept(message_id)
        conv.arrived(message_id, own=False, mention=False, unseen=True)
    conv.server_marks(read=1, last_id=4)  # 3 and 4 come with the resume
    assert conv.unread == 4
    conv.read()
    assert (conv.unread, conv.mentions, conv.counted_to) == (0, 0, 0)


def test_the_conversation_being_read_counts_nothing() -> None:
    conv = thread()
    conv.server_marks(read=0, last_id=5, reading=True)
    assert conv.unread == 0
    assert not conv.arrived(6, own=False, mention=False, unseen=False)
    assert conv.unread == 0


def test_without_a_mark_every_unseen_message_of_someone_else_counts() -> None:
    conv = Conversation(LOBBY, "#lobby")
    assert conv.is_unread(None, own=False) and not conv.is_unread(5, own=True)
    assert conv.arrived(5, own=False, mention=False, unseen=True)
    assert not conv.arrived(6, own=True, mention=False, unseen=True)
    assert conv.unread == 1


def test_read_sync_sends_one_mark_per_burst_after_the_delay() -> None:
    sync = ReadSync(delay=1.0)
    sync.reading(LOBBY, 5, now=10.0)
    sync.reading(LOBBY, 6, now=10.5)
    assert sync.due(10.9) == []
    assert sync.due(11.0) == [(LOBBY, 6)]
    assert sync.due(20.0) == []  # sent once
    sync.reading(LOBBY, 6, now=21.0)  # nothing new read
    assert sync.due(30.0) == []
    assert sync.sent(LOBBY) == 6


def test_read_sync_never_sends_what_the_server_already_has() -> None:
    sync = ReadSync(delay=1.0)
    sync.known(BOB, 9)
    sync.reading(BOB, 9, now=0.0)
    sync.reading(LOBBY, 3, now=0.0)
    sync.known(LOBBY, 4)  # another device got further meanwhile
    assert sync.due(5.0) == []
    sync.reading(BOB, 10, now=5.0)
    sync.forget(BOB)
    assert sync.due(10.0) == [] and sync.sent(BOB) is None


def test_account_refusals_in_plain_words() -> None:
    def error(code: ErrorCode) -> ProtocolError:
        return ProtocolError(code, "x")

    wrong = wording.login_refusal(error(ErrorCode.AUTH_FAILED), "alice", password=True)
    assert wrong.startswith("Wrong password for “alice”")
    assert "accounts only" in wording.login_refusal(error(ErrorCode.AUTH_FAILED), "alice")
    taken = wording.login_refusal(error(ErrorCode.NAME_TAKEN), "alice")
    assert "If that name belongs to your account, enter its password." in taken
    assert "Pick another name" in wording.login_refusal(error(ErrorCode.NAME_TAKEN), "alice",
                                                        create=True)
    limited = wording.login_refusal(error(ErrorCode.RATE_LIMITED), "alice", password=True)
    assert limited == wording.TOO_MANY_ATTEMPTS and "Wait a few minutes" in limited
    assert "8 to 1024 characters" in wording.WEAK_PASSWORD
    assert "already belongs to an account" in wording.register_refusal(
        error(ErrorCode.NAME_TAKEN), "alice")
    assert wording.passwd_refusal(error(ErrorCode.AUTH_FAILED)).startswith(
        "The current password is wrong")
