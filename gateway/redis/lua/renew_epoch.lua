-- Start a new epoch for a room whose ids went backwards, once across gateways.
local epoch_key = key()
local rolled_back, fresh = arg(), arg()
-- -> the room's epoch now (the fresh one, or one another gateway already set)
local current = redis.call('GET', epoch_key)
if current == rolled_back then
  redis.call('SET', epoch_key, fresh)
  return fresh
end
return current
