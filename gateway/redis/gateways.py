"""Gateway liveness: heartbeat, this process's instance, retiring, holdings, reaping the dead."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import redis

from gateway.redis import keys, scripts
from gateway.redis.base import BrokerBase, left_parts, text
from gateway.redis.errors import BrokerUnavailable

logger = logging.getLogger(__name__)

REAP_CHUNK = 200
"""Memberships or names dropped per script call, so no single script runs long."""


@dataclass(frozen=True, slots=True)
class InstanceClaim:
    """What a starting gateway found under its id (``Broker.claim_instance``)."""

    ours: bool
    """The id is ours now; False: another process runs it (``holder``, ``last_beat_ms``)."""
    reserved_ms: int = 0
    """Ms left of the reservation a gracefully stopped predecessor left for its users."""
    holder: str = ""
    last_beat_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Holdings:
    """What Redis says a gateway holds: its memberships and its names."""

    memberships: tuple[tuple[str, str], ...]
    """(room, lower name) pairs."""
    names: tuple[str, ...]
    """Lower names."""


class GatewayRequests(BrokerBase):
    """The liveness half of ``Broker``."""

    def heartbeat(self) -> bool:
        """Mark this gateway alive for another lease.

        Returns True when the gateway was not registered: its first beat, or
        (later) a sign that a peer reaped it as dead meanwhile, so its names and
        memberships in Redis are gone. Callers that only beat may ignore it.
        The first beat after an outage opens the grace (``lua/liveness.lua``). Renews this
        process's instance key; logs an error when another process holds it (a second
        gateway with our id, started while we were paused for more than a lease).
        """
        with self.guard("heartbeat"):
            reply = scripts.HeartbeatReply.read(self._run(scripts.Heartbeat(
                keys.GATEWAYS, keys.GRACE, keys.PULSE, keys.gateway_instance(self._gateway_id),
                me=self._gateway_id, now_ms=self.now_ms(), lease_ms=self.lease_ms,
                nonce=self._instance).call()))
        added = reply.added
        if reply.other_instance:
            logger.error("event=gateway_id_taken gateway=%s other_instance=%s hint='another "
                         "process runs with this --id (started while this one was paused for "
                         "more than a lease): stop one of them'", self._gateway_id,
                         reply.other_instance)
        return bool(added)

    def claim_instance(self, *, force: bool = False) -> InstanceClaim:
        """Take this gateway's id for this process, unless another process holds it (its
        instance key is younger than a lease); ``force`` takes it anyway (the holder was
        found dead). Reports the reservation a gracefully stopped predecessor left."""
        with self.guard("claim instance"):
            reply = scripts.ClaimInstanceReply.read(self._run(scripts.ClaimInstance(
                keys.gateway_instance(self._gateway_id), keys.GATEWAYS, me=self._gateway_id,
                nonce=self._instance, lease_ms=self.lease_ms, force=int(force)).call()))
        return InstanceClaim(reply.ours, reply.reserved_ms, reply.holder, reply.last_beat_ms)

    def last_heartbeat_ms(self) -> int | None:
        """This id's last heartbeat in ``chat:gateways`` (whichever process wrote it)."""
        with self.guard("read heartbeat"):
            score = self._redis.zscore(keys.GATEWAYS, self._gateway_id)
        return None if score is None else int(score)

    def retire(self) -> None:
        """Graceful shutdown: beat once more and mark the id stopped, leaving every name and
        membership in place: reserved for its token holder for one lease, then reaped by a
        peer like a dead gateway's. Best effort: logs, never raises."""
        try:
            with self.guard("retire"):
                done = self._run(scripts.Retire(
                    keys.GATEWAYS, keys.GRACE, keys.PULSE,
                    keys.gateway_instance(self._gateway_id), me=self._gateway_id,
                    now_ms=self.now_ms(), lease_ms=self.lease_ms,
                    nonce=self._instance).call())
            if not done:
                logger.error("event=retire_skipped gateway=%s reason='another process holds "
                             "this id'", self._gateway_id)
        except BrokerUnavailable as exc:
            logger.warning("could not retire this gateway: %s", exc)
        except redis.RedisError:
            logger.exception("could not retire this gateway")

    def reap_dead(self) -> list[str]:
        """Clean up after every gateway that is not alive; returns the ids reaped.

        Alive is ``lua/liveness.lua``'s rule, so nobody is reaped during a grace.
        A lock per dead gateway makes one live gateway do it; its rooms see
        ``left`` for each membership it held, and its names become free records.
        A gateway that heartbeats again meanwhile is left alone.
        """
        with self.guard("reap"):
            expired = cast(list[bytes], self._run(scripts.DeadGateways(
                keys.GATEWAYS, keys.GRACE, keys.PULSE, self.now_ms(), self.lease_ms).call()))
            dead = [text(gw) for gw in expired]
            reaped = []
            for gw in dead:
                if gw == self._gateway_id:
                    continue
                if not self._redis.set(keys.gateway_reaper(gw), self._gateway_id, nx=True,
                                       px=self.lease_ms):
                    continue
                if self._drop_gateway(gw, force=False):
                    logger.info("reaped dead gateway %s", gw)
                    reaped.append(gw)
        return reaped

    def holdings(self) -> Holdings:
        """What Redis says this gateway holds (``chat:gw:<id>:members`` and ``:names``)."""
        with self.guard("holdings"):
            pipe = self._redis.pipeline(transaction=False)
            pipe.hkeys(keys.gateway_members(self._gateway_id))
            pipe.smembers(keys.gateway_names(self._gateway_id))
            fields, names = pipe.execute()
        memberships = []
        for raw in fields:
            try:
                memberships.append(keys.parse_membership(text(raw)))
            except ValueError:
                logger.warning("ignoring malformed membership %r", raw)
        return Holdings(tuple(sorted(memberships)), tuple(sorted(text(n) for n in names)))

    def release_gateway(self) -> None:
        """Graceful shutdown: leave every room (publishing ``left``), free every name,
        and stop counting as a gateway. Best effort: logs, never raises."""
        try:
            with self.guard("release gateway"):
                self._drop_gateway(self._gateway_id, force=True)
        except BrokerUnavailable as exc:
            logger.warning("could not release this gateway's state: %s", exc)
        except redis.RedisError:
            logger.exception("could not release this gateway's state")

    def _drop_gateway(self, gw: str, *, force: bool) -> bool:
        """Drop a gateway's memberships and names in chunks; False if it came back to life."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.hkeys(keys.gateway_members(gw))
        pipe.smembers(keys.gateway_names(gw))
        fields, names = pipe.execute()
        memberships = []
        for raw in fields:
            try:
                memberships.append(keys.parse_membership(text(raw)))
            except ValueError:
                logger.warning("ignoring malformed membership %r of gateway %s", raw, gw)
        lowers = sorted(text(n) for n in names)
        chunks = max(1, -(-len(memberships) // REAP_CHUNK), -(-len(lowers) // REAP_CHUNK))
        for i in range(chunks):
            part_m = memberships[i * REAP_CHUNK:(i + 1) * REAP_CHUNK]
            part_n = lowers[i * REAP_CHUNK:(i + 1) * REAP_CHUNK]
            if not self._reap_chunk(gw, part_m, part_n, force=force, final=i == chunks - 1):
                return False
        return True

    def _reap_chunk(self, gw: str, memberships: Sequence[tuple[str, str]],
                    lowers: Sequence[str], *, force: bool, final: bool) -> bool:
        """One chunk of a gateway's state dropped; False when the gateway was alive after all."""
        reply = scripts.ReapReply.read(self._run(scripts.Reap(
            keys.GATEWAYS, keys.GRACE, keys.PULSE, keys.gateway_members(gw),
            keys.gateway_names(gw), keys.gateway_reaper(gw),
            gw=gw, now_ms=self.now_ms(), lease_ms=self.lease_ms, force=force, final=final,
            me=self._gateway_id, room_ttl_ms=self._room_ttl_ms,
            memberships=tuple(scripts.ReapMembership(
                keys.room_members(room), keys.user_rooms(lower), keys.room_seq(room),
                keys.room_epoch(room), keys.room_log(room), lower,
                keys.membership(room, lower), keys.room_channel(room), *left_parts(room), room)
                for room, lower in memberships),
            names=tuple(scripts.ReapName(keys.user(lower), lower) for lower in lowers)).call()))
        return not reply.alive


__all__ = ["GatewayRequests", "Holdings", "InstanceClaim", "REAP_CHUNK"]
