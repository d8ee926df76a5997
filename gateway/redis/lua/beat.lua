-- A heartbeat: mark a gateway alive for another lease (in the liveness slot).
-- includes: liveness
local gateways_key, grace_key, pulse_key = key(), key(), key()
local me, now_ms, lease_ms, registered_only = arg(), tonumber(arg()), tonumber(arg()), arg()
-- registered_only '1' (a reaper holds our lock): beat only if not being forgotten, so a
-- reaper that has not marked us yet finds us alive, and one that has is not undone under its
-- walk (we beat again, and put our sessions back, once it is done).
-- -> 1 when the gateway was not registered (its first beat, or it was reaped meanwhile)
grace_open(gateways_key, grace_key, pulse_key, lease_ms)
if registered_only == '1' then
  local current = redis.call('ZSCORE', gateways_key, me)
  if not current or tonumber(current) == 0 then return 0 end
end
return beat(gateways_key, pulse_key, me, now_ms, lease_ms)
