-- Take a dead gateway off the register before its state is dropped (the reaper, holding the
-- gateway's lock): from then on its own heartbeat says it was forgotten, so it puts its
-- sessions back itself once the reaper is done. Or our own crashed self's (force).
-- includes: liveness
local gateways_key, grace_key, pulse_key = key(), key(), key()
local gw, now_ms, lease_ms, force = arg(), tonumber(arg()), tonumber(arg()), arg() == '1'
-- -> 1 forgotten, 0 alive after all (nothing done)
if not force and alive(gateways_key, grace_open(gateways_key, grace_key, pulse_key, lease_ms),
                       gw, now_ms, lease_ms) then
  return 0
end
redis.call('ZREM', gateways_key, gw)
return 1
