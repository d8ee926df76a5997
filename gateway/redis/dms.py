"""Direct messages between names (through the publisher)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from gateway.redis import keys, payloads, scripts
from gateway.redis.base import BrokerBase, cut, line
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
        """``send_dm`` without waiting, as ``submit_message``."""
        prefix, suffix = cut(line(DirectMessage(sender, "~", text, ts)), b"to")
        internal = ref is None
        ref_key = keys.user_ref(sender, f"~{self._fresh()}" if internal else str(ref))
        call = scripts.SendDm(
            keys.user(to), keys.GATEWAYS, ref_key, keys.GRACE, keys.PULSE,
            now_ms=self.now_ms(), lease_ms=self.lease_ms, line_prefix=prefix,
            line_suffix=suffix, lower_to=name_key(to),
            ref_ttl_ms=INTERNAL_REF_TTL_MS if internal else self._ref_ttl_ms,
            gateway_prefix=keys.GATEWAY_PREFIX, to_as_given=to, dm_tag=payloads.DM,
            deadline_ms=self.deadline_ms()).call()

        def sent(raw: Any) -> DmSent:
            reply = scripts.DmReply.read(raw)
            if reply.outcome == "too_late":
                raise self.too_late("dm")
            if reply.outcome == "no_such_user":
                raise ProtocolError(ErrorCode.NO_SUCH_USER, f"no user {to!r} is connected")
            return DmSent(reply.line, reply.outcome == "repeat" and not internal)

        return self._pending(batch, call, "dm", sent)


__all__ = ["DmRequests", "DmSent"]
