-- Graceful shutdown: one last beat, so the gateway stays alive for one more lease (its names
-- and memberships reserved for their token holders, taken over quietly), and the instance
-- key says stopped for that lease, so a restart under the same id may start at once.
-- includes: liveness
local gateways_key, grace_key, pulse_key, instance_key = key(), key(), key(), key()
local me, now_ms, lease_ms, nonce, stopped = arg(), tonumber(arg()), tonumber(arg()), arg(), arg()
-- -> 1 done, 0 another process holds the id (nothing done)
local holder = redis.call('GET', instance_key)
if holder and holder ~= nonce and holder ~= stopped then return 0 end
grace_open(gateways_key, grace_key, pulse_key, lease_ms)
beat(gateways_key, pulse_key, me, now_ms, lease_ms)
redis.call('SET', instance_key, stopped, 'PX', lease_ms)
return 1
