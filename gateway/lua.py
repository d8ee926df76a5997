"""The broker's Lua scripts, one per request that writes.

Each script does a whole request in one round trip and atomically, so a
request Redis refuses is never half done, and a reply lost on the way back
cannot leave a partial state behind. Scripts are idempotent where redis-py's
Retry may send them twice (the broker gives every publication a dedup key).

Conventions: times are ms since the epoch from the gateway's clock (passed in,
never Redis ``TIME``, so tests can move the clock); a gateway is alive while
``now - heartbeat < lease``; membership values are ``<gateway id>|<Name>`` and
names hold no ``|``, so the gateway id is everything before the last ``|``.
Lines of JSON are built by the broker with ``protocol.codec`` and cut around
the one value only Redis knows (an id, a display name): Lua only concatenates.
Only Lua 5.1 as Redis embeds it (no cjson), so the scripts also run on fakeredis.
"""

from __future__ import annotations

PUBLISH_MESSAGE = """
-- KEYS: seq, epoch, log, ref
-- ARGV: epoch candidate, line prefix, line suffix, history, channel, ref ttl ms
-- -> {duplicate 0/1, id, epoch}
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[2], epoch)
end
local seen = redis.call('GET', KEYS[4])
if seen then
  return {1, tonumber(seen), epoch}
end
local id = redis.call('INCR', KEYS[1])
local sid = string.format('%d', id)
local line = ARGV[2] .. sid .. ARGV[3]
redis.call('RPUSH', KEYS[3], line)
redis.call('LTRIM', KEYS[3], -tonumber(ARGV[4]), -1)
redis.call('PUBLISH', ARGV[5], 'M' .. epoch .. '|' .. sid .. '|' .. line)
redis.call('SET', KEYS[4], sid, 'PX', ARGV[6])
return {0, id, epoch}
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

CLAIM_NAME = """
-- KEYS: user record, gateways zset, my names set
-- ARGV: display name, session id, new token hash, presented token hash or '', me,
--       now ms, lease ms, lower name, gateway prefix
-- -> {0} taken, or {1, replaced gateway or '', replaced session or ''}
local now = tonumber(ARGV[6])
redis.call('ZADD', KEYS[2], now, ARGV[5])
local rec = redis.call('HMGET', KEYS[1], 'gw', 'sid', 'token')
local gw, sid, hash = rec[1], rec[2], rec[3]
local old_gw, old_sid = '', ''
if gw and not (gw == ARGV[5] and sid == ARGV[2]) then
  local beat = redis.call('ZSCORE', KEYS[2], gw)
  if beat and now - tonumber(beat) < tonumber(ARGV[7]) then
    if ARGV[4] == '' or hash ~= ARGV[4] then
      return {0}
    end
    old_gw, old_sid = gw, sid
  end
  -- tell the holder, live or presumed dead (it may only be paused), that its session lost the name
  redis.call('PUBLISH', ARGV[9] .. gw, 'K' .. ARGV[8] .. '|' .. (sid or ''))
end
redis.call('HSET', KEYS[1], 'name', ARGV[1], 'gw', ARGV[5], 'sid', ARGV[2], 'token', ARGV[3])
redis.call('SADD', KEYS[3], ARGV[8])
return {1, old_gw, old_sid}
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

JOIN = """
-- KEYS: room members, gateways zset, my members hash
-- ARGV: lower name, '<me>|<Name>', me, now ms, lease ms, room channel, 'E' .. joined line,
--       membership field
-- -> 1 when the name was not present before (absent, or held by a dead gateway)
local newly = 1
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local gw = string.match(cur, '^(.*)|')
  if gw == ARGV[3] then
    newly = 0
  else
    local beat = redis.call('ZSCORE', KEYS[2], gw)
    if beat and tonumber(ARGV[4]) - tonumber(beat) < tonumber(ARGV[5]) then
      newly = 0
    end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[8], '1')
if newly == 1 then
  redis.call('PUBLISH', ARGV[6], ARGV[7])
end
return newly
"""

LEAVE = """
-- KEYS: room members, my members hash
-- ARGV: lower name, me, room channel, left line prefix, left line suffix, membership field
-- -> 1 when this gateway's membership was removed
redis.call('HDEL', KEYS[2], ARGV[6])
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then return 0 end
local gw, name = string.match(cur, '^(.*)|(.*)$')
if gw ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[3], 'E' .. ARGV[4] .. name .. ARGV[5])
return 1
"""

SEND_DM = """
-- KEYS: recipient's user record, gateways zset, dedup key
-- ARGV: now ms, lease ms, line prefix, line suffix, lower recipient, ref ttl ms,
--       gateway prefix, recipient name as given
-- -> {0, line} sent, {1, line} duplicate, {2} no such user
local rec = redis.call('HMGET', KEYS[1], 'name', 'gw')
local line = ARGV[3] .. (rec[1] or ARGV[8]) .. ARGV[4]
if redis.call('EXISTS', KEYS[3]) == 1 then
  return {1, line}
end
if not rec[2] then return {2} end
local beat = redis.call('ZSCORE', KEYS[2], rec[2])
if not beat or tonumber(ARGV[1]) - tonumber(beat) >= tonumber(ARGV[2]) then
  return {2}
end
redis.call('PUBLISH', ARGV[7] .. rec[2], 'D' .. ARGV[5] .. '|' .. line)
redis.call('SET', KEYS[3], '1', 'PX', ARGV[6])
return {0, line}
"""

REAP = """
-- Drop a gateway's memberships and names (a dead one's, or our own at shutdown).
-- KEYS: gateways zset, its members hash, its names set,
--       then one room members hash per membership, then one user record per name
-- ARGV: gateway id, now ms, lease ms, force ('1': skip the liveness check),
--       number of memberships, number of names, final ('1': forget the gateway),
--       then per membership: lower name, membership field, room channel,
--                            left line prefix, left line suffix
--       then per name: lower name
-- -> -1 when the gateway is alive again (nothing done), else the number of lefts published
local gw = ARGV[1]
if ARGV[4] ~= '1' then
  local beat = redis.call('ZSCORE', KEYS[1], gw)
  if beat and tonumber(ARGV[2]) - tonumber(beat) < tonumber(ARGV[3]) then
    return -1
  end
end
local nm, nn = tonumber(ARGV[5]), tonumber(ARGV[6])
local lefts = 0
for i = 1, nm do
  local key, a = KEYS[3 + i], 7 + (i - 1) * 5
  local cur = redis.call('HGET', key, ARGV[a + 1])
  if cur then
    local owner, name = string.match(cur, '^(.*)|(.*)$')
    if owner == gw then
      redis.call('HDEL', key, ARGV[a + 1])
      redis.call('PUBLISH', ARGV[a + 3], 'E' .. ARGV[a + 4] .. name .. ARGV[a + 5])
      lefts = lefts + 1
    end
  end
  redis.call('HDEL', KEYS[2], ARGV[a + 2])
end
for j = 1, nn do
  local key, lower = KEYS[3 + nm + j], ARGV[7 + nm * 5 + j]
  if redis.call('HGET', key, 'gw') == gw then
    redis.call('DEL', key)
  end
  redis.call('SREM', KEYS[3], lower)
end
if ARGV[7] == '1' then
  redis.call('ZREM', KEYS[1], gw)
  redis.call('DEL', KEYS[2], KEYS[3])
end
return lefts
"""

__all__ = [
    "CLAIM_NAME",
    "JOIN",
    "LEAVE",
    "PUBLISH_MESSAGE",
    "READ_HISTORY",
    "REAP",
    "RELEASE_NAME",
    "SEND_DM",
]
