-- Graceful shutdown: the instance key says stopped for a lease, so a restart under the same id
-- may start at once; the caller then beats once more (lua/beat.lua), so the gateway stays
-- alive for one more lease (its names and memberships reserved for their token holders,
-- taken over quietly).
local instance_key = key()
local nonce, lease_ms, stopped = arg(), arg(), arg()
-- -> 1 done, 0 another process holds the id (nothing done)
local holder = redis.call('GET', instance_key)
if holder and holder ~= nonce and holder ~= stopped then return 0 end
redis.call('SET', instance_key, stopped, 'PX', lease_ms)
return 1
