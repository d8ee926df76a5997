-- Start a new epoch for a room whose ids went backwards, once across gateways.
-- includes: room_lifetime
local epoch_key, seq_key, log_key, members_key = key(), key(), key(), key()
local rolled_back, fresh, room_ttl_ms = arg(), arg(), arg()
-- -> the room's epoch now (the fresh one, or one another gateway already set)
local current = redis.call('GET', epoch_key)
if current == rolled_back then
  redis.call('SET', epoch_key, fresh)
  settle_room(seq_key, epoch_key, log_key, members_key, room_ttl_ms)
  return fresh
end
return current
