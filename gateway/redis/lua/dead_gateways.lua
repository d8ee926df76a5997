-- The registered gateways that are not alive (none during a grace).
-- includes: liveness
local gateways_key, grace_key, pulse_key = key(), key(), key()
local now_ms, lease_ms = tonumber(arg()), tonumber(arg())
if grace_open(gateways_key, grace_key, pulse_key, lease_ms) then
  return {}
end
return redis.call('ZRANGEBYSCORE', gateways_key, '-inf', string.format('%d', now_ms - lease_ms))
