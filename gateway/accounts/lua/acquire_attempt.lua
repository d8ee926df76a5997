-- Count one password check against a failure counter (of a name or of an address).
-- The window starts at the first counted check and ends with the counter's expiry
-- (Redis's clock, which every gateway shares).
local counter_key = key()
local limit, window_ms = tonumber(arg()), arg()
-- -> {'allowed', count now}: counted until released;
--    {'refused', ms until the window passes}: nothing counted
local n = tonumber(redis.call('GET', counter_key) or '0')
if n >= limit then
  local ttl = redis.call('PTTL', counter_key)
  if ttl < 0 then
    redis.call('PEXPIRE', counter_key, window_ms)
    ttl = tonumber(window_ms)
  end
  return {'refused', ttl}
end
n = redis.call('INCR', counter_key)
if n == 1 or redis.call('PTTL', counter_key) < 0 then
  redis.call('PEXPIRE', counter_key, window_ms)
end
return {'allowed', n}
