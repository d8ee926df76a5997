"""What a session asks about accounts: the password in ``hello``,
``register``, ``passwd``, ``read``; answers or ``ProtocolError`` refusals.

One ``AccountGate`` per gateway, shared by its sessions (no mutable state).
Password checks run on the asking session's own thread: argon2 releases the
GIL, so other sessions' fan-out goes on meanwhile.

Choices where the contract is silent **(ours)**, also in docs/protocol.md:

- ``hello`` with a password: a wrong password, or a name that has no
  account, is ``auth_failed`` "wrong name or password" (the same words, the
  same argon2 work and the same counting, so the answer never tells whether
  the name exists); over the limit it is ``rate_limited``. A right password
  takes the name from any live session, as a token does (``bye``/``replaced``
  for the old one, a guest's included).
- ``hello`` without a password on a name with an account: ``name_taken``,
  exactly what a guest gets for a name someone is using.
- ``--guests deny``: every ``hello`` needs a password (a token alone is not
  enough) and ``register`` is refused: ``auth_failed``.
- ``register`` on a name that has an account already: ``name_taken``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.accounts.auth import Authenticator, AuthOutcome, AuthResult
from gateway.accounts.login_limit import LoginLimiter
from gateway.accounts.passwords import PasswordHasher
from gateway.accounts.store import AccountExists, AccountStore
from gateway.config import GatewayConfig
from gateway.conversations import Conversations
from gateway.redis.broker import Broker
from protocol import codec
from protocol.errors import ErrorCode, ProtocolError
from protocol.frames import DmHistoryQuery, Hello, Passwd, Read, Register, Registered
from protocol.names import name_key

if TYPE_CHECKING:
    from gateway.front.session import Session

WRONG_PASSWORD = "wrong name or password"
TOO_MANY = "too many failed logins for this name or address; try again later"
GUESTS_DENIED = ("this server admits accounts only: log in with your name and password "
                 "(accounts are created by the operator)")


@dataclass(frozen=True, slots=True)
class AccountGate:
    """The gateway's account policy and the stores behind it."""

    auth: Authenticator
    conversations: Conversations
    guests_allowed: bool = True

    def check_hello(self, frame: Hello, address: str) -> bool:
        """True when ``frame`` logs in to its name's account (the password is right);
        False for a guest's hello; or the refusal."""
        if frame.password is None:
            if not self.guests_allowed:
                raise ProtocolError(ErrorCode.AUTH_FAILED, GUESTS_DENIED)
            return False
        _refuse(self.auth.login(frame.name, frame.password, address))
        return True

    def register(self, name: str, session_id: str, password: str) -> Registered:
        """``register``: make the logged-in guest's name an account."""
        if not self.guests_allowed:
            raise ProtocolError(ErrorCode.AUTH_FAILED,
                                "accounts are created by the operator on this server")
        try:
            self.auth.store.create(name, password)
        except AccountExists:
            raise ProtocolError(ErrorCode.NAME_TAKEN,
                                f"the name {name!r} has an account already") from None
        self.conversations.mark_owner(name, session_id)
        return Registered(name)

    def passwd(self, name: str, old: str, new: str, address: str) -> Registered:
        """``passwd``: change the account's password, the old one checked under the limit."""
        _refuse(self.auth.change_password(name, old, new, address))
        return Registered(name)


def account_gate(broker: Broker, config: GatewayConfig) -> AccountGate:
    """The gateway's gate on its broker's Redis, with the configured hashing cost."""
    store = AccountStore(broker.redis, PasswordHasher(config.password_hash))
    store.hasher.warm_up()
    return AccountGate(Authenticator(store, LoginLimiter(broker.redis)),
                       Conversations(broker, config.history),
                       guests_allowed=config.guests == "allow")


def _refuse(result: AuthResult) -> None:
    if result.outcome is AuthOutcome.LIMITED:
        raise ProtocolError(ErrorCode.RATE_LIMITED, TOO_MANY)
    if result.outcome is AuthOutcome.WRONG:
        raise ProtocolError(ErrorCode.AUTH_FAILED, WRONG_PASSWORD)


def answer(s: Session, frame: Register | Passwd | Read | DmHistoryQuery) -> None:
    """Protocol v1.1 requests: accounts (``gateway.front.account_requests``) and stored
    conversations (``gateway.conversations``).

    Without accounts (``Services.accounts`` None) ``register``/``passwd`` and a
    conversation's ``history`` are refused as unavailable and ``read`` is
    forgotten. A guest's ``read`` is accepted and forgotten; a guest may not read a
    stored conversation (a guest name passes from person to person): ``auth_failed``.
    """
    gate = s._svc.accounts
    assert s.name is not None
    if isinstance(frame, Read):
        if gate is not None and s._account:
            gate.conversations.set_read(s.name, frame.room, frame.peer, frame.id)
        return
    if gate is None:
        if isinstance(frame, DmHistoryQuery):
            raise ProtocolError(
                ErrorCode.UNAVAILABLE, "stored conversations are not enabled on this gateway")
        raise ProtocolError(ErrorCode.UNAVAILABLE, "accounts are not enabled on this gateway")
    if isinstance(frame, DmHistoryQuery):
        if not s._account:
            raise ProtocolError(ErrorCode.AUTH_FAILED,
                                "stored conversations are for accounts: register or log in")
        s._may_answer()
        batch = gate.conversations.read_history(
            s.name, frame.peer, before=frame.before, limit=frame.limit)
        with s._lock:
            shown = s._dms.display(name_key(frame.peer), frame.peer)
        s._send_history(
            codec.dm_history_lines(shown, batch.epoch, batch.messages, batch.complete))
        return
    if isinstance(frame, Register):
        answer = gate.register(s.name, s.sid, frame.password)
        s._account = True
        s.log.info("event=registered")
    else:
        answer = gate.passwd(s.name, frame.old, frame.new, s.peer_host)
        s.log.info("event=password_changed")
    s._send(codec.encode(answer), "registered")


__all__ = ["AccountGate", "account_gate", "answer", "GUESTS_DENIED", "TOO_MANY", "WRONG_PASSWORD"]
