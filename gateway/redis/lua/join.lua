-- Record a name as present in a room through this gateway; publish 'joined' if it is new.
-- includes: liveness, room_lifetime, new_rooms
local members_key, gateways_key, my_members_key = key(), key(), key()
local grace_key, pulse_key, name_rooms_key = key(), key(), key()
local seq_key, epoch_key, log_key, new_rooms_key = key(), key(), key(), key()
local lower, member_value, me, now_ms, lease_ms = arg(), arg(), arg(), tonumber(arg()), tonumber(arg())
local channel, joined_payload, membership, room = arg(), arg(), arg(), arg()
local room_ttl_ms, new_rooms_per_min, new_rooms_burst = arg(), tonumber(arg()), tonumber(arg())
-- -> 'joined' when the name was not present before (absent, or held by a dead gateway),
--    'present' when it was; 'too_many_rooms' when the room is new (no epoch, no member:
--    never used, or expired) and the name's bucket of new rooms is empty: nothing written
if new_rooms_per_min > 0 and redis.call('EXISTS', epoch_key) == 0
    and redis.call('EXISTS', members_key) == 0
    and not take_room_token(new_rooms_key, new_rooms_per_min, new_rooms_burst) then
  return 'too_many_rooms'
end
local newly = 1
local current = redis.call('HGET', members_key, lower)
if current then
  local gw = string.match(current, '^(.*)|')
  if gw == me then
    newly = 0
  else
    local open = grace_open(gateways_key, grace_key, pulse_key, lease_ms)
    if alive(gateways_key, open, gw, now_ms, lease_ms) then
      newly = 0
    end
  end
end
redis.call('HSET', members_key, lower, member_value)
redis.call('HSET', my_members_key, membership, '1')
redis.call('SADD', name_rooms_key, room)
settle_room(seq_key, epoch_key, log_key, members_key, room_ttl_ms)
if newly == 1 then
  redis.call('PUBLISH', channel, joined_payload)
  return 'joined'
end
return 'present'
