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
from gateway.redis.scripts.core import text_of
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

        The script (the dedup key in the sender's slot, through the publisher) marks the
        key ``pending``; ``result()`` then reads the recipient's holder (its slot), asks
        the liveness slot about that gateway, publishes to its channel (its own slot) and
        marks the key ``sent``, or drops it when nobody live holds the name
        (``no_such_user``: nothing done). A retry that finds ``pending`` delivers again
        (docs/architecture.md, "Dms across slots")."""
        prefix, suffix = cut(line(DirectMessage(sender, "~", text, ts)), b"to")
        internal = ref is None
        ref_key = keys.dm_ref(sender, f"~{self._fresh()}" if internal else str(ref))
        call = scripts.SendDm(
            ref_key, ref_ttl_ms=INTERNAL_REF_TTL_MS if internal else self._ref_ttl_ms,
            deadline_ms=self.deadline_ms()).call()

        def sent(raw: Any) -> DmSent:
            outcome = text_of(raw)
            if outcome == "too_late":
                raise self.too_late("dm")
            with self.guard("dm"):
                display, gateway = self._holder(to)
                dm_line = prefix + (display or to).encode() + suffix
                if outcome == "repeat":
                    return DmSent(dm_line, not internal)
                if self._deliver_dm(ref_key, gateway, name_key(to), dm_line):
                    return DmSent(dm_line, False)
            raise ProtocolError(ErrorCode.NO_SUCH_USER, f"no user {to!r} is connected")

        return self._pending(batch, call, "dm", sent)

    def _holder(self, to: str) -> tuple[str, str]:
        """The recipient's display name and gateway ('' each when nobody holds the name)."""
        display, gateway = self._redis.hmget(keys.user(to), ["name", "gw"])
        return ("" if display is None else text_of(display),
                "" if gateway is None else text_of(gateway))

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
        if not gateway or not self.alive([gateway]).get(gateway, False):
            self._redis.delete(ref_key)
            return False
        pipe = self._redis.pipeline(transaction=False)  # two slots, one round trip per node
        pipe.execute_command(self.publish_command, keys.gateway_channel(gateway),  # type: ignore[no-untyped-call]
                             payloads.dm(lower_to, dm_line))
        pipe.set(ref_key, "sent", xx=True, keepttl=True)
        pipe.execute()
        return True


__all__ = ["DmRequests", "DmSent"]
