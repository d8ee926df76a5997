-- Mark a gateway alive for another lease.
-- includes: liveness
-- Renews this process's instance key (its nonce, PX lease), unless another process holds
-- it: a second gateway with this id, started while this one was paused for a lease.
local gateways_key, grace_key, pulse_key, instance_key = key(), key(), key(), key()
local me, now_ms, lease_ms, nonce, stopped = arg(), tonumber(arg()), tonumber(arg()), arg(), arg()
-- -> {1 when the gateway was not registered (its first beat, or it was reaped meanwhile),
--     the nonce of another process that holds this id now, or ''}
grace_open(gateways_key, grace_key, pulse_key, lease_ms)
local added = beat(gateways_key, pulse_key, me, now_ms, lease_ms)
local holder = redis.call('GET', instance_key)
if holder and holder ~= nonce and holder ~= stopped then
  return {added, holder}
end
redis.call('SET', instance_key, nonce, 'PX', lease_ms)
return {added, ''}
