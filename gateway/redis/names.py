"""Name requests: claim (with takeover and accounts), restore, release."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from gateway import account_keys
from gateway.redis import keys, payloads, scripts
from gateway.redis.base import BrokerBase, text, token_hash
from protocol.errors import ErrorCode, ProtocolError
from protocol.names import name_key

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class NameClaim:
    name: str
    token: str
    """The fresh secret for the client's ``welcome``; Redis keeps only its sha256."""
    replaced_session: str | None
    """The live session this claim took the name from, if any."""
    rooms: tuple[str, ...] = ()
    """Rooms where the name's membership is now this gateway's: taken over with the name
    (token takeover), so the rooms see no left/joined. The new session leaves those its
    ``hello`` does not list."""
    account: bool = False
    """The name has an account and this claim is its owner's (password, or a token of an
    owner's claim)."""


class NameRequests(BrokerBase):
    """The names half of ``Broker``."""

    def claim_name(self, name: str, session_id: str, token: str | None, *,
                   owner: bool = False) -> NameClaim:
        """Make ``name`` this session's, cluster-wide, or raise ``name_taken``.

        Free when nobody holds it or its holder's gateway is dead; held by a live
        gateway, it is taken over only with the token of the last claim (the
        old session is told with ``K`` on its gateway's channel). Every claim
        issues a fresh token. Also heartbeats, so a new gateway counts as alive.

        With the token, the name's room memberships come along (``NameClaim.rooms``):
        the script needs their keys, so the holder and its rooms are read first;
        should they change in between, what changed is left to the old gateway's
        cleanup (``left``, then this session's ``joined``).

        A name with an account (``gateway.account_keys.account``, checked in the same
        script) goes only to its ``owner`` (the caller checked the password: it takes
        the name from any live session, as a token does) or to a token of an owner's
        claim; anyone else gets ``name_taken``, whether the name is held or not.
        """
        fresh = secrets.token_urlsafe(16)
        presented = "*" if owner else ("" if token is None else token_hash(token))
        with self.guard("claim"):
            wants_rooms = owner or token is not None
            holder, rooms = self._holder_and_rooms(name) if wants_rooms else ("", [])
            reply = self._claim(name, session_id, token_hash(fresh), presented, holder, rooms)
        if not reply.claimed:
            raise ProtocolError(ErrorCode.NAME_TAKEN, f"the name {name!r} is in use")
        return NameClaim(name, fresh, reply.replaced_session or None, reply.rooms,
                         reply.account)

    def _holder_and_rooms(self, name: str) -> tuple[str, list[str]]:
        """The gateway holding ``name`` and the rooms of its memberships, as Redis has them now."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.hget(keys.user(name), "gw")
        pipe.smembers(keys.user_rooms(name))
        holder, rooms = pipe.execute()
        return ("" if holder is None else text(holder)), sorted(text(r) for r in rooms)

    def _claim(self, name: str, session_id: str, new_hash: str, presented_hash: str,
               holder: str, rooms: Sequence[str]) -> scripts.ClaimReply:
        return scripts.ClaimReply.read(self._run(scripts.ClaimName(
            keys.user(name), keys.GATEWAYS, keys.gateway_names(self._gateway_id), keys.GRACE,
            keys.PULSE, keys.gateway_members(self._gateway_id), keys.user_rooms(name),
            keys.gateway_members(holder or self._gateway_id),
            display=name, session=session_id, new_hash=new_hash, presented_hash=presented_hash,
            me=self._gateway_id, now_ms=self.now_ms(), lease_ms=self.lease_ms,
            lower=name_key(name), gateway_prefix=keys.GATEWAY_PREFIX, holder_seen=holder,
            kick_tag=payloads.KICK,
            rooms=tuple(scripts.RoomOfName(keys.room_members(r), r) for r in rooms),
            account_key=account_keys.account(name)).call()))

    def restore_name(self, name: str, session_id: str, held_token_hash: str, *,
                     owner: bool = False) -> bool:
        """Put back a live session's name record after Redis lost it (restart, reaping).

        Keeps the token the client already holds; never takes the name from
        another live holder (returns False: the session lost its name). ``owner``:
        the session is logged in to the name's account.
        """
        with self.guard("restore"):
            reply = self._claim(name, session_id, held_token_hash, "+" if owner else "", "",
                                ())
        return reply.claimed

    def release_name(self, name: str, session_id: str) -> bool:
        """Free ``name`` if ``session_id`` still holds it (not if it was taken over); an empty
        ``session_id``: whichever session of this gateway holds it (an orphan). True when
        the record was deleted."""
        with self.guard("release"):
            return bool(self._run(scripts.ReleaseName(
                keys.user(name), keys.gateway_names(self._gateway_id), session_id,
                self._gateway_id, name_key(name)).call()))


__all__ = ["NameClaim", "NameRequests"]
