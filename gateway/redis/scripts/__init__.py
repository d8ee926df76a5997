"""The Redis layer's Lua scripts: one ``.lua`` file each, one typed builder each.

The builders live by job (``rooms``, ``dms``, ``names``, ``gateways``,
``conversations``) over ``core``
(loading, ``Script``, ``ScriptCall``, ``Builder``); this package re-exports them all.

Each script touches the keys of one hash slot only (one room, one name, one
conversation, one gateway, or the liveness state), so every script runs on Redis
Cluster; a request spanning slots is a sequence of scripts ordered so that a
failure between two leaves only what reconciliation and reaping clean up
(docs/architecture.md, "Keys per slot"). Within its slot a script is atomic, so
a reply lost on the way back cannot leave a partial state behind. Scripts are
idempotent where a retry may send them twice (every publication carries a dedup
key). The scripts whose
refusal a client sees (a message, a dm) carry a deadline and write nothing
when Redis runs them after it (``lua/deadline.lua``).

The files live in ``gateway/redis/lua/`` (package data). A script reads its
keys and arguments in order through two cursors (``lua/args.lua``:
``local room_key = key()``) and names each one; its builder here is a frozen
dataclass whose fields are those names, in the same order, and whose
``call()`` makes the ``ScriptCall``. Replies come back as named types: a
status word (``sent``, ``repeat``, ``too_late`` ...), never a magic number.
A line ``-- includes: liveness, deadline`` at the top of a file prepends
those shared snippets (after ``args.lua``) when it is loaded.

Conventions: times are ms since the epoch from the gateway's clock (passed in,
never Redis ``TIME``, so tests can move the clock), except that a deadline is
compared with Redis ``TIME``, the clock of the moment a script runs; whether a
gateway is alive is decided by ``lua/liveness.lua``, the one rule, run in the
liveness slot only (``Verdict``, ``DeadGateways``; Python never judges a heartbeat
itself): a script in another slot gets the verdict as an argument, with the
gateway it is about, and asks for a fresh one when its record names another;
scripts that publish get the command (``PUBLISH``, or ``SPUBLISH`` on Redis
Cluster) as an argument and their channel among their keys; membership values
are ``<gateway id>|<Name>`` and names hold no
``|``, so the gateway id is everything before the last ``|``. A "lower name"
is ``protocol.names.name_key`` of the name (case and look-alikes folded),
computed in Python and passed in. Lines of JSON are built with
``protocol.codec`` and cut around the one value only Redis knows (an id, a
display name): Lua only concatenates. Only Lua 5.1 as Redis embeds it (no
cjson), so the scripts also run on fakeredis.
"""

from __future__ import annotations

from gateway.redis.scripts.conversations import (
    MarkOwner,
    RouteDm,
    RouteReply,
    StoreDm,
    StoreDmReply,
)
from gateway.redis.scripts.core import (
    STOPPED,
    Script,
    ScriptCall,
    load,
)
from gateway.redis.scripts.dms import SendDm
from gateway.redis.scripts.gateways import (
    Beat,
    ClaimInstance,
    ClaimInstanceReply,
    DeadGateways,
    DropGateway,
    ForgetGateway,
    Heartbeat,
    HeartbeatReply,
    ReleaseReaper,
    Retire,
    UnregisterGateway,
    Verdict,
)
from gateway.redis.scripts.names import (
    ClaimName,
    ClaimReply,
    MoveMember,
    ReleaseName,
)
from gateway.redis.scripts.rooms import (
    HistoryReply,
    Join,
    JoinReply,
    Leave,
    PublishMessage,
    PublishReply,
    ReadHistory,
    RenewEpoch,
    TakeRoomToken,
)

__all__ = [
    "STOPPED",
    "Beat",
    "ClaimInstance",
    "ClaimInstanceReply",
    "ClaimName",
    "ClaimReply",
    "DeadGateways",
    "DropGateway",
    "ForgetGateway",
    "Heartbeat",
    "HeartbeatReply",
    "HistoryReply",
    "Join",
    "JoinReply",
    "Leave",
    "MarkOwner",
    "MoveMember",
    "PublishMessage",
    "PublishReply",
    "ReadHistory",
    "ReleaseName",
    "ReleaseReaper",
    "RenewEpoch",
    "Retire",
    "RouteDm",
    "RouteReply",
    "Script",
    "ScriptCall",
    "SendDm",
    "StoreDm",
    "StoreDmReply",
    "TakeRoomToken",
    "UnregisterGateway",
    "Verdict",
    "load",
]
