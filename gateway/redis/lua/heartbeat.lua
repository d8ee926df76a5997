-- Mark a gateway alive for another lease.
-- includes: liveness
local gateways_key, grace_key, pulse_key = key(), key(), key()
local me, now_ms, lease_ms = arg(), tonumber(arg()), tonumber(arg())
-- -> 1 when the gateway was not registered (its first beat, or it was reaped meanwhile)
grace_open(gateways_key, grace_key, pulse_key, lease_ms)
return beat(gateways_key, pulse_key, me, now_ms, lease_ms)
