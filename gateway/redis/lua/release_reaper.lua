-- The reaper gives its lock back (the gateway was alive after all).
local reaper_key = key()
local me = arg()
-- -> 1 when the lock was ours
if redis.call('GET', reaper_key) == me then
  return redis.call('DEL', reaper_key)
end
return 0
