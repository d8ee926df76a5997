-- Record a name as present in a room through this gateway; publish 'joined' if it is new.
-- includes: room_lifetime
-- In the room's slot only. The caller wrote the gateway's and the name's indexes first
-- (docs/architecture.md, "Keys per slot"). Whether the gateway of a present member is alive
-- is a verdict the caller read (lua/verdict.lua): the script uses it only while the member
-- still names that gateway, else asks for one about the gateway it found.
local members_key, seq_key, epoch_key, log_key, channel_key = key(), key(), key(), key(), key()
local lower, member_value, me, publish, joined_payload = arg(), arg(), arg(), arg(), arg()
local room_ttl_ms, may_create, verdict_gw, verdict_alive = arg(), arg(), arg(), arg()
-- -> {'joined'} when the name was not present before (absent, or held by a dead gateway),
--    {'present'} when it was; {'new_room'} when the room is new (no epoch, no member: never
--    used, or expired) and may_create is not '1': nothing written (the caller takes a token
--    of the name's bucket, lua/take_room_token.lua, and asks again); {'verdict', gateway}:
--    nothing written, a verdict about that gateway is wanted
if may_create ~= '1' and redis.call('EXISTS', epoch_key) == 0
    and redis.call('EXISTS', members_key) == 0 then
  return {'new_room'}
end
local newly = 1
local current = redis.call('HGET', members_key, lower)
if current then
  local gw = string.match(current, '^(.*)|')
  if gw == me then
    newly = 0
  elseif gw ~= verdict_gw then
    return {'verdict', gw}
  elseif verdict_alive == '1' then
    newly = 0
  end
end
redis.call('HSET', members_key, lower, member_value)
settle_room(seq_key, epoch_key, log_key, members_key, room_ttl_ms)
if newly == 1 then
  redis.call(publish, channel_key, joined_payload)
  return {'joined'}
end
return {'present'}
