"""Lua scripts of accounts and of the login limiter (issue 12).

Each touches keys of one slot only (an account and its name's failure
counter share the tag ``{user:<lower>}``; an address counter is alone), so
all of them run on Redis Cluster. Lua 5.1 as Redis embeds it, so they also
run on fakeredis. Times are the limiter window in ms, measured by Redis's own
expiry, the clock every gateway shares.
"""

from __future__ import annotations

CREATE_ACCOUNT = """
-- KEYS: account
-- ARGV: display name, hash, created ms
-- -> 1 created, 0 the account exists (nothing written)
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'name', ARGV[1], 'hash', ARGV[2], 'created', ARGV[3])
return 1
"""

SET_HASH = """
-- KEYS: account, name failures
-- ARGV: new hash, expected current hash ('' = any), 1 to clear the name's failures
-- -> 1 set, 0 no such account, -1 the hash changed meanwhile (nothing written)
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
if ARGV[2] ~= '' and redis.call('HGET', KEYS[1], 'hash') ~= ARGV[2] then
  return -1
end
redis.call('HSET', KEYS[1], 'hash', ARGV[1])
if ARGV[3] == '1' then
  redis.call('DEL', KEYS[2])
end
return 1
"""

DELETE_ACCOUNT = """
-- KEYS: account, name failures
-- -> 1 deleted, 0 there was no account (the failures are cleared either way)
local existed = redis.call('EXISTS', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2])
return existed
"""

ACQUIRE_ATTEMPT = """
-- KEYS: failure counter (of a name or of an address)
-- ARGV: limit, window ms
-- -> {1, count now}: allowed, the attempt is counted until released;
--    {0, ms until the window passes}: refused, nothing counted
-- The window starts at the first counted attempt and ends with the key's expiry.
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n >= tonumber(ARGV[1]) then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    ttl = tonumber(ARGV[2])
  end
  return {0, ttl}
end
n = redis.call('INCR', KEYS[1])
if n == 1 or redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return {1, n}
"""

RELEASE_ATTEMPT = """
-- KEYS: failure counter
-- -> the count now: one attempt that turned out not to be a failure is taken back
-- (the expiry stays; a counter that already expired stays gone)
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 1 then
  return redis.call('DECR', KEYS[1])
end
if n == 1 then
  redis.call('DEL', KEYS[1])
end
return 0
"""
