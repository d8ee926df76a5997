"""What a session asks about accounts (issue 12): the password in ``hello``,
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

from gateway.accounts import AccountExists, AccountStore
from gateway.auth import Authenticator, AuthOutcome, AuthResult
from gateway.config import GatewayConfig
from gateway.conversations import Conversations
from gateway.login_limit import LoginLimiter
from gateway.passwords import PasswordHasher
from gateway.redis.broker import Broker
from protocol.errors import ErrorCode, ProtocolError
from protocol.frames import Hello, Registered

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
    """The gateway's gate on its broker's Redis, with the default hashing cost and limits."""
    store = AccountStore(broker.redis, PasswordHasher())
    store.hasher.warm_up()
    return AccountGate(Authenticator(store, LoginLimiter(broker.redis)),
                       Conversations(broker, config.history),
                       guests_allowed=config.guests == "allow")


def _refuse(result: AuthResult) -> None:
    if result.outcome is AuthOutcome.LIMITED:
        raise ProtocolError(ErrorCode.RATE_LIMITED, TOO_MANY)
    if result.outcome is AuthOutcome.WRONG:
        raise ProtocolError(ErrorCode.AUTH_FAILED, WRONG_PASSWORD)


__all__ = ["AccountGate", "account_gate", "GUESTS_DENIED", "TOO_MANY", "WRONG_PASSWORD"]
