-- Remove a name from a room if this gateway holds it there, publishing 'left'.
-- includes: room_lifetime
local members_key, my_members_key, name_rooms_key = key(), key(), key()
local seq_key, epoch_key, log_key = key(), key(), key()
local lower, me, channel, left_prefix, left_suffix = arg(), arg(), arg(), arg(), arg()
local membership, room, room_ttl_ms = arg(), arg(), arg()
-- -> 1 when this gateway's membership was removed
redis.call('HDEL', my_members_key, membership)
local current = redis.call('HGET', members_key, lower)
if not current then
  redis.call('SREM', name_rooms_key, room)
  return 0
end
local gw, shown = string.match(current, '^(.*)|(.*)$')
if gw ~= me then return 0 end  -- taken over through another gateway: its membership now
redis.call('HDEL', members_key, lower)
redis.call('SREM', name_rooms_key, room)
settle_room(seq_key, epoch_key, log_key, members_key, room_ttl_ms)
redis.call('PUBLISH', channel, left_prefix .. shown .. left_suffix)
return 1
