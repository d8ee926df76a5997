-- Remove a name from a room if this gateway holds it there, publishing 'left'.
local members_key, my_members_key, name_rooms_key = key(), key(), key()
local lower, me, channel, left_prefix, left_suffix = arg(), arg(), arg(), arg(), arg()
local membership, room = arg(), arg()
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
redis.call('PUBLISH', channel, left_prefix .. shown .. left_suffix)
return 1
