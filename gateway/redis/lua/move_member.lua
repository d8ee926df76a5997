-- A token takeover's step in one room: the name's membership moves from the gateway that
-- held the name to this one, silently (no left, no joined).
local members_key = key()
local lower, from_gateway, me = arg(), arg(), arg()
-- from_gateway '': move nothing, only say whose it is.
-- -> 'moved' (it was from_gateway's, now ours), 'ours' (it already was), 'other', or 'absent'
local current = redis.call('HGET', members_key, lower)
if not current then return 'absent' end
local owner, shown = string.match(current, '^(.*)|(.*)$')
if owner == me then return 'ours' end
if from_gateway ~= '' and owner == from_gateway then
  redis.call('HSET', members_key, lower, me .. '|' .. shown)
  return 'moved'
end
return 'other'
