"""Direct messages between names (through the publisher)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from gateway.redis import keys, payloads, scripts
from gateway.redis.base import BrokerBase, cut, line
from gateway.redis.errors import BrokerUnavailable
from gateway.redis.pending import Pending, PublishBatch
from gateway.redis.rooms import INTERNAL_REF_TTL_MS
from protocol.errors import ErrorCode, ProtocolError
from protocol.frames import DirectMessage
from protocol.names import name_key

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DmSent:
    line: bytes
    """The ``dm`` line (no newline) with the recipient's display name, for the sender's copy."""
    duplicate: bool


class DmRequests(BrokerBase):
    """The dm half of ``Broker``."""

    def send_dm(self, sender: str, to: str, text: str, ts: float, ref: str | None) -> DmSent:
        """Publish a dm to the gateway holding ``to``, or raise ``no_such_user``.

        A ref seen from ``sender`` within ``ref_ttl_ms`` makes it a duplicate:
        nothing is published (even if ``to`` has gone since).
        """
        return self.submit_dm(sender, to, text, ts, ref).result()

    def submit_dm(self, sender: str, to: str, text: str, ts: float, ref: str | None,
                  batch: PublishBatch | None = None) -> Pending[DmSent]:
        """``send_dm`` without waiting, as ``submit_message``.

        The script (in the recipient's slot, through the publisher) finds the holder's
        gateway and marks the dedup key ``pending``; ``result()`` then asks the liveness
        slot about that gateway, publishes to its channel (its own slot) and marks the key
        ``sent``, or drops it when the gateway is dead (``no_such_user``). A retry that
        finds ``pending`` delivers again (docs/architecture.md, "Dms across slots")."""
        prefix, suffix = cut(line(DirectMessage(sender, "~", text, ts)), b"to")
        internal = ref is None
        ref_key = keys.dm_ref(to, sender, f"~{self._fresh()}" if internal else str(ref))
        lower_to = name_key(to)
        call = scripts.SendDm(
            keys.user(to), ref_key, line_prefix=prefix, line_suffix=suffix, to_as_given=to,
            ref_ttl_ms=INTERNAL_REF_TTL_MS if internal else self._ref_ttl_ms,
            deadline_ms=self.deadline_ms()).call()

        def sent(raw: Any) -> DmSent:
            reply = scripts.DmReply.read(raw)
            if reply.outcome == "too_late":
                raise self.too_late("dm")
            if reply.outcome == "deliver":
                with self.guard("dm"):
                    delivered = self._deliver_dm(ref_key, reply.gateway, lower_to, reply.line)
                if delivered:
                    return DmSent(reply.line, False)
            elif reply.outcome == "repeat":
                return DmSent(reply.line, not internal)
            raise ProtocolError(ErrorCode.NO_SUCH_USER, f"no user {to!r} is connected")

        return self._pending(batch, call, "dm", sent)

    def publish_dm(self, gateway: str, to: str, dm_line: bytes) -> None:
        """Publish a stored dm's line to the recipient's gateway (``gateway.conversations``);
        best effort: the conversation's log has it, and a failure is only logged."""
        try:
            with self.guard("dm publish"):
                self._publish(keys.gateway_channel(gateway), payloads.dm(name_key(to), dm_line))
        except BrokerUnavailable as exc:
            logger.warning("event=dm_publish_failed gateway=%s error=%r", gateway, exc)

    def _deliver_dm(self, ref_key: str, gateway: str, lower_to: str, dm_line: bytes) -> bool:
        """The dm's second half: publish it to ``gateway`` if it is alive and mark its dedup
        key ``sent`` (keeping its TTL); else drop the key (nothing was sent). False: dead."""
        if not self.alive([gateway]).get(gateway, False):
            self._redis.delete(ref_key)
            return False
        self._publish(keys.gateway_channel(gateway), payloads.dm(lower_to, dm_line))
        self._redis.set(ref_key, "sent", xx=True, keepttl=True)
        return True


__all__ = ["DmRequests", "DmSent"]
