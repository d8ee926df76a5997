-- The end of a reap: a gateway's indexes go, and the reaper's lock with them (if still ours).
local members_key, names_key, reaper_key = key(), key(), key()
local me = arg()
-- -> 1
redis.call('DEL', members_key, names_key)
if redis.call('GET', reaper_key) == me then
  redis.call('DEL', reaper_key)
end
return 1
