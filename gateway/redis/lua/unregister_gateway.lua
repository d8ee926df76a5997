-- The end of a reaper's walk: a forgotten gateway (a beat of 0) leaves the register.
local gateways_key = key()
local gw = arg()
-- -> 1 removed, 0 it beat again meanwhile (kept)
local current = redis.call('ZSCORE', gateways_key, gw)
if current and tonumber(current) == 0 then
  return redis.call('ZREM', gateways_key, gw)
end
return 0
