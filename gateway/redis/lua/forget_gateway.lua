-- The reaper (holding the gateway's lock), before it drops a dead gateway's state: marks it
-- forgotten (a beat of 0: dead, grace or not) if it is still dead. It stays registered, so
-- if this reaper dies mid-walk the next one finds it dead and walks again; its own heartbeat
-- waits while the lock is held and then reports it was forgotten (lua/liveness.lua's beat).
-- force: our own crashed self's state, at start.
-- includes: liveness
local gateways_key, grace_key, pulse_key = key(), key(), key()
local gw, now_ms, lease_ms, force = arg(), tonumber(arg()), tonumber(arg()), arg() == '1'
-- -> 1 marked, 0 alive after all (nothing done)
if not force and alive(gateways_key, grace_open(gateways_key, grace_key, pulse_key, lease_ms),
                       gw, now_ms, lease_ms) then
  return 0
end
redis.call('ZADD', gateways_key, 0, gw)
return 1
