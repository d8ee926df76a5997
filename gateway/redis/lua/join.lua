-- Record a name as present in a room through this gateway; publish 'joined' if it is new.
-- includes: liveness
local members_key, gateways_key, my_members_key = key(), key(), key()
local grace_key, pulse_key, name_rooms_key = key(), key(), key()
local lower, member_value, me, now_ms, lease_ms = arg(), arg(), arg(), tonumber(arg()), tonumber(arg())
local channel, joined_payload, membership, room = arg(), arg(), arg(), arg()
-- -> 1 when the name was not present before (absent, or held by a dead gateway)
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
if newly == 1 then
  redis.call('PUBLISH', channel, joined_payload)
end
return newly
