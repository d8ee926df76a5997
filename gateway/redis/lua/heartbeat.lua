-- A heartbeat's half in the gateway's own slot: renews this process's instance key (its
-- nonce, PX lease), unless another process holds it (a second gateway with this id, started
-- while this one was paused for a lease); and says whether a peer is reaping this gateway
-- (then the caller does not beat: lua/beat.lua would register it again under the reaper).
local instance_key, reaper_key = key(), key()
local nonce, lease_ms, stopped = arg(), arg(), arg()
-- -> {the nonce of another process that holds this id now, or '', 1 while a reaper works}
local reaping = redis.call('EXISTS', reaper_key)
local holder = redis.call('GET', instance_key)
if holder and holder ~= nonce and holder ~= stopped then
  return {holder, reaping}
end
redis.call('SET', instance_key, nonce, 'PX', lease_ms)
return {'', reaping}
