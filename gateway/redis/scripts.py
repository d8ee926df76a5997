"""The broker's Lua scripts: one per request that writes or that judges liveness.

Each script does a whole request in one round trip and atomically, so a
request Redis refuses is never half done, and a reply lost on the way back
cannot leave a partial state behind. Scripts are idempotent where redis-py's
Retry may send them twice (the broker gives every publication a dedup key).
The scripts whose refusal a client sees (a message, a dm) carry a deadline
and do nothing when Redis runs them after it (``DEADLINE``).

Conventions: times are ms since the epoch from the gateway's clock (passed in,
never Redis ``TIME``, so tests can move the clock), except that a deadline is
compared with Redis ``TIME``, the clock of the moment a script runs; whether a
gateway is alive is decided by ``LIVENESS``, the one rule every script shares (Python asks
``WHO`` and ``DEAD_GATEWAYS`` rather than judge heartbeats itself); membership
values are ``<gateway id>|<Name>`` and names hold no ``|``, so the gateway id
is everything before the last ``|``. A "lower name" is ``protocol.names.name_key``
of the name (case and look-alikes folded), computed in Python and passed in.
Lines of JSON are built by the broker with ``protocol.codec`` and cut around
the one value only Redis knows (an id, a display name): Lua only concatenates.
Only Lua 5.1 as Redis embeds it (no cjson), so the scripts also run on fakeredis.
"""

from __future__ import annotations

TOO_LATE = -1
"""First element of the reply of a script that Redis ran after its deadline: it wrote nothing."""

DEADLINE = f"""
-- Deadline: once a request's deadline (ms since the epoch, from the gateway) has passed, the
-- gateway may have answered it 'unavailable' (not carried out), so a script that Redis runs
-- later (it waited in the socket buffer of a stalled Redis, or came in a late retry) must
-- write nothing and answer {{TOO_LATE}}. Judged by Redis's clock, the one of the moment the
-- script runs. TIME before writes is fine under effects replication (Redis >= 5 default).
local TOO_LATE = {TOO_LATE}
local function too_late(deadline)
  local now = redis.call('TIME')
  return tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) > tonumber(deadline)
end
"""
"""Prepended to every script whose refusal the client sees; checked before any write."""

PUBLISH_MESSAGE = DEADLINE + """
-- KEYS: seq, epoch, log, ref
-- ARGV: epoch candidate, line prefix, line suffix, history, channel, ref ttl ms, deadline ms
-- -> {duplicate 0/1, id, epoch}, or {TOO_LATE}: past the deadline, nothing written
-- The ref is read before the deadline: a run whose reply was lost stays a duplicate when
-- redis-py's retry arrives late, never an 'unavailable' for a message that was published.
local epoch = redis.call('GET', KEYS[2])
local seen = redis.call('GET', KEYS[4])
if not seen and too_late(ARGV[7]) then
  return {TOO_LATE}
end
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[2], epoch)
end
if seen then
  return {1, tonumber(seen), epoch}
end
local id = redis.call('INCR', KEYS[1])
local sid = string.format('%d', id)
local line = ARGV[2] .. sid .. ARGV[3]
if redis.call('RPUSH', KEYS[3], line) > tonumber(ARGV[4]) then
  redis.call('LTRIM', KEYS[3], -tonumber(ARGV[4]), -1)
end
redis.call('PUBLISH', ARGV[5], 'M' .. epoch .. '|' .. sid .. '|' .. line)
redis.call('SET', KEYS[4], sid, 'PX', ARGV[6])
return {0, id, epoch}
"""

RENEW_EPOCH = """
-- KEYS: epoch
-- ARGV: the epoch that was seen rolled back, a fresh epoch
-- -> the room's epoch now (the fresh one, or one another gateway already set)
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return ARGV[2]
end
return cur
"""

READ_HISTORY = """
-- KEYS: seq, epoch, log
-- ARGV: epoch candidate, mode ('a' after, 'b' before, 'p' position only), id ('' = none), limit
-- -> {epoch, last id, complete 0/1, first id, {lines}} (the last two only when lines exist)
-- The log holds ids last-len+1 .. last, so list indexes follow from ids.
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[2], epoch)
end
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
if ARGV[2] == 'p' then
  return {epoch, last}
end
local oldest = last - redis.call('LLEN', KEYS[3]) + 1
local lo, hi
if ARGV[2] == 'a' then
  lo = tonumber(ARGV[3]) + 1
  hi = last
else
  hi = last
  if ARGV[3] ~= '' then
    hi = math.min(hi, tonumber(ARGV[3]) - 1)
  end
  lo = math.max(1, hi - tonumber(ARGV[4]) + 1)
end
if lo > hi then
  return {epoch, last, 1}
end
local complete = 0
if lo >= oldest then complete = 1 end
local first = math.max(lo, oldest)
if first > hi then
  return {epoch, last, complete}
end
return {epoch, last, complete, first,
        redis.call('LRANGE', KEYS[3], first - oldest, hi - oldest)}
"""

LIVENESS = """
-- Liveness: the one rule of every script (docs/architecture.md, "Liveness").
-- A registered gateway (one in the gateways zset) is alive while its heartbeat is younger
-- than the lease, or while the grace runs. Every beat renews the pulse (PX lease, Redis's
-- own clock); a script that finds no pulse while gateways are registered opens the grace
-- (PX lease): nobody reached Redis for a lease, so Redis was out of reach or stalled, and
-- the gateways are not all dead. Redis's clock, not the gateways': a beat that redis-py
-- re-sent across the outage carries a time from before Redis came back.
local function grace_open(gateways, grace, pulse, lease)
  if redis.call('EXISTS', grace) == 1 then
    return true
  end
  if redis.call('EXISTS', pulse) == 0 and redis.call('ZCARD', gateways) > 0 then
    redis.call('SET', grace, '1', 'PX', lease)
    return true
  end
  return false
end

local function alive(gateways, open, gw, now, lease)
  local beat = redis.call('ZSCORE', gateways, gw)
  if not beat then return false end
  return open or now - tonumber(beat) < lease
end

-- A heartbeat (after grace_open, whose evidence it erases); 1 when gw was not registered.
local function beat(gateways, pulse, gw, now, lease)
  redis.call('SET', pulse, '1', 'PX', lease)
  return redis.call('ZADD', gateways, now, gw)
end
"""
"""Prepended to every script that asks whether a gateway is alive, or that heartbeats."""

HEARTBEAT = LIVENESS + """
-- KEYS: gateways zset, grace, pulse
-- ARGV: me, now ms, lease ms
-- -> 1 when the gateway was not registered (its first beat, or it was reaped meanwhile)
local lease = tonumber(ARGV[3])
grace_open(KEYS[1], KEYS[2], KEYS[3], lease)
return beat(KEYS[1], KEYS[3], ARGV[1], tonumber(ARGV[2]), lease)
"""

DEAD_GATEWAYS = LIVENESS + """
-- KEYS: gateways zset, grace, pulse
-- ARGV: now ms, lease ms
-- -> the registered gateways that are not alive
local now, lease = tonumber(ARGV[1]), tonumber(ARGV[2])
if grace_open(KEYS[1], KEYS[2], KEYS[3], lease) then
  return {}
end
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now - lease))
"""

WHO = LIVENESS + """
-- KEYS: room members, gateways zset, grace, pulse
-- ARGV: now ms, lease ms
-- -> the member values ('<gateway id>|<Name>') held through live gateways
local now, lease = tonumber(ARGV[1]), tonumber(ARGV[2])
local open = grace_open(KEYS[2], KEYS[3], KEYS[4], lease)
local verdict, out = {}, {}
for _, value in ipairs(redis.call('HVALS', KEYS[1])) do
  local gw = string.match(value, '^(.*)|')
  if gw then
    if verdict[gw] == nil then
      verdict[gw] = alive(KEYS[2], open, gw, now, lease)
    end
    if verdict[gw] then
      out[#out + 1] = value
    end
  end
end
return out
"""

CLAIM_NAME = LIVENESS + """
-- KEYS: user record, gateways zset, my names set, grace, pulse, my members hash, the name's
--       rooms set, the members hash of the holder seen before, then one room members hash
--       per room
-- ARGV: display name, session id, new token hash, presented token hash or '', me,
--       now ms, lease ms, lower name, gateway prefix, holder seen before or '',
--       then the name's rooms seen before (read with the holder, for the keys above)
-- -> {0} taken, or {1, replaced gateway or '', replaced session or '', {rooms}}: the rooms
--    of the name whose membership is now this gateway's
-- With the right token from another gateway the claim takes the memberships too, so a
-- takeover shows no left/joined in the rooms the new session also joins.
local me, lower = ARGV[5], ARGV[8]
local now, lease = tonumber(ARGV[6]), tonumber(ARGV[7])
local open = grace_open(KEYS[2], KEYS[4], KEYS[5], lease)
beat(KEYS[2], KEYS[5], me, now, lease)
local rec = redis.call('HMGET', KEYS[1], 'gw', 'sid', 'token')
local gw, sid, hash = rec[1], rec[2], rec[3]
local old_gw, old_sid = '', ''
local heir = false
if gw and not (gw == me and sid == ARGV[2]) then
  local token_ok = ARGV[4] ~= '' and hash == ARGV[4]
  if alive(KEYS[2], open, gw, now, lease) then
    if not token_ok then
      return {0}
    end
    old_gw, old_sid = gw, sid
  end
  heir = token_ok and gw ~= me and gw == ARGV[10]
  -- tell the holder, live or presumed dead (it may only be paused), that its session lost the name
  redis.call('PUBLISH', ARGV[9] .. gw, 'K' .. lower .. '|' .. (sid or ''))
end
redis.call('HSET', KEYS[1], 'name', ARGV[1], 'gw', me, 'sid', ARGV[2], 'token', ARGV[3])
redis.call('SADD', KEYS[3], lower)
local here = {}
for i = 11, #ARGV do
  local room, members = ARGV[i], KEYS[i - 2]
  local cur = redis.call('HGET', members, lower)
  if cur then
    local owner, display = string.match(cur, '^(.*)|(.*)$')
    if heir and owner == gw then
      local field = room .. '|' .. lower
      redis.call('HSET', members, lower, me .. '|' .. display)
      redis.call('HDEL', KEYS[8], field)
      redis.call('HSET', KEYS[6], field, '1')
      owner = me
    end
    if owner == me then
      here[#here + 1] = room
    end
  end
end
return {1, old_gw, old_sid, here}
"""

RELEASE_NAME = """
-- KEYS: user record, my names set
-- ARGV: session id, me, lower name
-- -> 1 when the record was deleted
local rec = redis.call('HMGET', KEYS[1], 'gw', 'sid')
if rec[1] == ARGV[2] then
  if rec[2] ~= ARGV[1] then
    return 0  -- another session of this gateway took the name over: still ours
  end
  redis.call('DEL', KEYS[1])
end
redis.call('SREM', KEYS[2], ARGV[3])
if rec[1] == ARGV[2] then return 1 end
return 0
"""

JOIN = LIVENESS + """
-- KEYS: room members, gateways zset, my members hash, grace, pulse, the name's rooms set
-- ARGV: lower name, '<me>|<Name>', me, now ms, lease ms, room channel, 'E' .. joined line,
--       membership field, room
-- -> 1 when the name was not present before (absent, or held by a dead gateway)
local newly = 1
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local gw = string.match(cur, '^(.*)|')
  if gw == ARGV[3] then
    newly = 0
  else
    local now, lease = tonumber(ARGV[4]), tonumber(ARGV[5])
    if alive(KEYS[2], grace_open(KEYS[2], KEYS[4], KEYS[5], lease), gw, now, lease) then
      newly = 0
    end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[8], '1')
redis.call('SADD', KEYS[6], ARGV[9])
if newly == 1 then
  redis.call('PUBLISH', ARGV[6], ARGV[7])
end
return newly
"""

LEAVE = """
-- KEYS: room members, my members hash, the name's rooms set
-- ARGV: lower name, me, room channel, left line prefix, left line suffix, membership field,
--       room
-- -> 1 when this gateway's membership was removed
redis.call('HDEL', KEYS[2], ARGV[6])
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then
  redis.call('SREM', KEYS[3], ARGV[7])
  return 0
end
local gw, name = string.match(cur, '^(.*)|(.*)$')
if gw ~= ARGV[2] then return 0 end  -- taken over through another gateway: its membership now
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[7])
redis.call('PUBLISH', ARGV[3], 'E' .. ARGV[4] .. name .. ARGV[5])
return 1
"""

SEND_DM = LIVENESS + DEADLINE + """
-- KEYS: recipient's user record, gateways zset, dedup key, grace, pulse
-- ARGV: now ms, lease ms, line prefix, line suffix, lower recipient, ref ttl ms,
--       gateway prefix, recipient name as given, deadline ms
-- -> {0, line} sent, {1, line} duplicate, {2} no such user, {TOO_LATE} past the deadline
-- (the dedup key is read first, as in PUBLISH_MESSAGE)
local rec = redis.call('HMGET', KEYS[1], 'name', 'gw')
local line = ARGV[3] .. (rec[1] or ARGV[8]) .. ARGV[4]
if redis.call('EXISTS', KEYS[3]) == 1 then
  return {1, line}
end
if too_late(ARGV[9]) then
  return {TOO_LATE}
end
if not rec[2] then return {2} end
local now, lease = tonumber(ARGV[1]), tonumber(ARGV[2])
if not alive(KEYS[2], grace_open(KEYS[2], KEYS[4], KEYS[5], lease), rec[2], now, lease) then
  return {2}
end
redis.call('PUBLISH', ARGV[7] .. rec[2], 'D' .. ARGV[5] .. '|' .. line)
redis.call('SET', KEYS[3], '1', 'PX', ARGV[6])
return {0, line}
"""

REAP = LIVENESS + """
-- Drop a gateway's memberships and names (a dead one's, or our own at shutdown).
-- KEYS: gateways zset, grace, pulse, its members hash, its names set, its reaper lock,
--       then per membership: the room members hash, the name's rooms set;
--       then one user record per name
-- ARGV: gateway id, now ms, lease ms, force ('1': skip the liveness check),
--       number of memberships, number of names, final ('1': forget the gateway), me,
--       then per membership: lower name, membership field, room channel,
--                            left line prefix, left line suffix, room
--       then per name: lower name
-- -> -1 when the gateway is alive (nothing done, our lock given back), else the number of
--    lefts published
local gw = ARGV[1]
if ARGV[4] ~= '1' then
  local now, lease = tonumber(ARGV[2]), tonumber(ARGV[3])
  if alive(KEYS[1], grace_open(KEYS[1], KEYS[2], KEYS[3], lease), gw, now, lease) then
    if redis.call('GET', KEYS[6]) == ARGV[8] then
      redis.call('DEL', KEYS[6])
    end
    return -1
  end
end
local nm, nn = tonumber(ARGV[5]), tonumber(ARGV[6])
local lefts = 0
for i = 1, nm do
  local members, rooms, a = KEYS[5 + 2 * i], KEYS[6 + 2 * i], 8 + (i - 1) * 6
  local cur = redis.call('HGET', members, ARGV[a + 1])
  if cur then
    local owner, name = string.match(cur, '^(.*)|(.*)$')
    if owner == gw then
      redis.call('HDEL', members, ARGV[a + 1])
      redis.call('SREM', rooms, ARGV[a + 6])
      redis.call('PUBLISH', ARGV[a + 3], 'E' .. ARGV[a + 4] .. name .. ARGV[a + 5])
      lefts = lefts + 1
    end
  end
  redis.call('HDEL', KEYS[4], ARGV[a + 2])
end
for j = 1, nn do
  local key, lower = KEYS[6 + 2 * nm + j], ARGV[8 + nm * 6 + j]
  if redis.call('HGET', key, 'gw') == gw then
    redis.call('DEL', key)
  end
  redis.call('SREM', KEYS[5], lower)
end
if ARGV[7] == '1' then
  redis.call('ZREM', KEYS[1], gw)
  redis.call('DEL', KEYS[4], KEYS[5])
end
return lefts
"""

__all__ = [
    "CLAIM_NAME",
    "DEADLINE",
    "DEAD_GATEWAYS",
    "HEARTBEAT",
    "JOIN",
    "LEAVE",
    "LIVENESS",
    "PUBLISH_MESSAGE",
    "READ_HISTORY",
    "REAP",
    "RELEASE_NAME",
    "SEND_DM",
    "TOO_LATE",
    "WHO",
]
