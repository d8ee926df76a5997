"""Gateway liveness: heartbeat, this process's instance, retiring, holdings, reaping the dead."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import cast

import redis

from gateway.redis import keys, scripts
from gateway.redis.base import text
from gateway.redis.errors import BrokerUnavailable
from gateway.redis.names import NameRequests
from gateway.redis.rooms import RoomRequests

logger = logging.getLogger(__name__)

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


REAP_CHUNK = 200
"""Memberships or names dropped per pipelined round trip of a reap."""


class GatewayRequests(RoomRequests, NameRequests):
    """The liveness half of ``Broker``: reaping is leaving rooms and releasing names for a
    dead gateway, one slot at a time."""

    def heartbeat(self) -> bool:
        """Mark this gateway alive for another lease.

        Returns True when the gateway was not registered: its first beat, or
        (later) a sign that a peer reaped it as dead meanwhile, so its names and
        memberships in Redis are gone. Callers that only beat may ignore it.
        The first beat after an outage opens the grace (``lua/liveness.lua``). Renews this
        process's instance key; logs an error when another process holds it (a second
        gateway with our id, started while we were paused for more than a lease). While a
        peer holds our reaper lock we beat only if not forgotten (``lua/beat.lua``): once the
        reaper has marked us, beating again would put our sessions back under a reaper
        dropping them; the first beat after it is done says we were forgotten.
        """
        with self.guard("heartbeat"):
            reply = scripts.HeartbeatReply.read(self._run(scripts.Heartbeat(
                keys.gateway_instance(self._gateway_id), keys.gateway_reaper(self._gateway_id),
                nonce=self._instance, lease_ms=self.lease_ms).call()))
            added = self._run(scripts.Beat(keys.GATEWAYS, keys.GRACE, keys.PULSE,
                                           me=self._gateway_id, now_ms=self.now_ms(),
                                           lease_ms=self.lease_ms,
                                           registered_only=int(reply.reaping)).call())
            if reply.reaping:
                logger.warning("event=being_reaped gateway=%s", self._gateway_id)
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
                keys.gateway_instance(self._gateway_id), nonce=self._instance,
                lease_ms=self.lease_ms, force=int(force)).call()))
        if reply.ours:
            return InstanceClaim(True, reply.reserved_ms)
        return InstanceClaim(False, holder=reply.holder, last_beat_ms=self.last_heartbeat_ms())

    def listeners(self) -> int:
        """How many connections listen on this gateway's channel (``PUBSUB SHARDNUMSUB`` on the
        channel's node when sharded, else ``PUBSUB NUMSUB``): another live process with our
        id listens there."""
        channel = keys.gateway_channel(self._gateway_id)
        with self.guard("listeners"):
            if not self.sharded:
                counts = self._redis.pubsub_numsub(channel)
            else:
                # the node owning the channel's slot (redis-py's cluster client asks a random
                # one unless told)
                owner = getattr(self._redis, "get_node_from_key", None)
                kw = {} if owner is None else {"target_nodes": owner(channel)}
                counts = self._redis.pubsub_shardnumsub(channel, **kw)
        return sum(int(n) for _, n in counts)

    def last_heartbeat_ms(self) -> int | None:
        """This id's last heartbeat in the liveness register (whichever process wrote it)."""
        with self.guard("read heartbeat"):
            score = self._redis.zscore(keys.GATEWAYS, self._gateway_id)
        return None if not score else int(score)  # 0: being forgotten (reaped)

    def retire(self) -> None:
        """Graceful shutdown: mark the id stopped and beat once more, leaving every name and
        membership in place: reserved for its token holder for one lease, then reaped by a
        peer like a dead gateway's. Best effort: logs, never raises."""
        try:
            with self.guard("retire"):
                done = self._run(scripts.Retire(
                    keys.gateway_instance(self._gateway_id), nonce=self._instance,
                    lease_ms=self.lease_ms).call())
                if done:
                    self._run(scripts.Beat(keys.GATEWAYS, keys.GRACE, keys.PULSE,
                                           me=self._gateway_id, now_ms=self.now_ms(),
                                           lease_ms=self.lease_ms).call())
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
        A lock per dead gateway (in its slot) makes one live gateway do it: it marks the
        gateway forgotten (in the liveness slot, if it is still dead), walks its indexes,
        one leave or release script per room or name (each in its own slot, each acting
        only on what still names the dead gateway), takes it off the register and drops
        the indexes with the lock (docs/architecture.md, "Reaping without cross-slot
        scripts"). Its rooms see ``left`` for each membership it held, and its names
        become free records. A gateway that heartbeats again before it is taken off the
        register is left alone; one that comes back later waits for the walk
        (``heartbeat``) and then puts its sessions back itself.
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
                if not self._forget(gw, force=False):
                    self._run(scripts.ReleaseReaper(keys.gateway_reaper(gw),
                                                    self._gateway_id).call())
                    continue
                self._drop_gateway(gw)
                logger.info("reaped dead gateway %s", gw)
                reaped.append(gw)
        return reaped

    def _forget(self, gw: str, *, force: bool) -> bool:
        return bool(self._run(scripts.ForgetGateway(
            keys.GATEWAYS, keys.GRACE, keys.PULSE, gw=gw, now_ms=self.now_ms(),
            lease_ms=self.lease_ms, force=int(force)).call()))

    def holdings(self) -> Holdings:
        """What Redis says this gateway holds (its ``members`` and ``names`` indexes)."""
        with self.guard("holdings"):
            return self._holdings(self._gateway_id)

    def _holdings(self, gw: str) -> Holdings:
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
        return Holdings(tuple(sorted(memberships)), tuple(sorted(text(n) for n in names)))

    def release_gateway(self) -> None:
        """At start, after a crashed self: leave every room it held (publishing ``left``),
        free every name, and stop counting as a gateway until the next beat. Best effort:
        logs, never raises."""
        try:
            with self.guard("release gateway"):
                self._forget(self._gateway_id, force=True)
                self._drop_gateway(self._gateway_id)
        except BrokerUnavailable as exc:
            logger.warning("could not release this gateway's state: %s", exc)
        except redis.RedisError:
            logger.exception("could not release this gateway's state")

    def _drop_gateway(self, gw: str) -> int:
        """Drop what ``gw``'s indexes name, each room and name in its own slot, then the
        indexes and our reaper lock; returns how many ``left`` were published."""
        held = self._holdings(gw)
        lefts = 0
        for i in range(0, len(held.memberships), REAP_CHUNK):
            outcomes = self._leave_all(held.memberships[i:i + REAP_CHUNK], gw)
            lefts += outcomes.count("left")
        for i in range(0, len(held.names), REAP_CHUNK):
            self._release_all(held.names[i:i + REAP_CHUNK], "", gw)
        self._run(scripts.UnregisterGateway(keys.GATEWAYS, gw).call())
        self._run(scripts.DropGateway(keys.gateway_members(gw), keys.gateway_names(gw),
                                      keys.gateway_reaper(gw), self._gateway_id).call())
        return lefts


__all__ = ["GatewayRequests", "Holdings", "InstanceClaim", "REAP_CHUNK"]
