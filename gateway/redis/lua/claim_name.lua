-- Make a name this session's, cluster-wide; a live holder gives it up only to its token.
-- includes: liveness
-- With the right token from another gateway the claim takes the memberships too, so a
-- takeover shows no left/joined in the rooms the new session also joins.
local user_key, gateways_key, my_names_key, grace_key, pulse_key = key(), key(), key(), key(), key()
local my_members_key, name_rooms_key, holder_members_key = key(), key(), key()
local display, session, new_hash, presented_hash = arg(), arg(), arg(), arg()
local me, now, lease, lower = arg(), tonumber(arg()), tonumber(arg()), arg()
local gateway_prefix, holder_seen, kick_tag = arg(), arg(), arg()
local room_count = tonumber(arg())
-- then per room of the name seen before (read with the holder): its members hash, its name
-- -> {'taken'}, or {'claimed', replaced gateway or '', replaced session or '', {rooms}}:
--    the rooms of the name whose membership is now this gateway's
local open = grace_open(gateways_key, grace_key, pulse_key, lease)
beat(gateways_key, pulse_key, me, now, lease)
local record = redis.call('HMGET', user_key, 'gw', 'sid', 'token')
local gw, sid, hash = record[1], record[2], record[3]
local old_gw, old_sid = '', ''
local heir = false
if gw and not (gw == me and sid == session) then
  local token_ok = presented_hash ~= '' and hash == presented_hash
  if alive(gateways_key, open, gw, now, lease) then
    if not token_ok then
      return {'taken'}
    end
    old_gw, old_sid = gw, sid
  end
  heir = token_ok and gw ~= me and gw == holder_seen
  -- tell the holder, live or presumed dead (it may only be paused), that its session lost it
  redis.call('PUBLISH', gateway_prefix .. gw, kick_tag .. lower .. '|' .. (sid or ''))
end
redis.call('HSET', user_key, 'name', display, 'gw', me, 'sid', session, 'token', new_hash)
redis.call('SADD', my_names_key, lower)
local here = {}
for _ = 1, room_count do
  local members_key, room = key(), arg()
  local current = redis.call('HGET', members_key, lower)
  if current then
    local owner, shown = string.match(current, '^(.*)|(.*)$')
    if heir and owner == gw then
      local field = room .. '|' .. lower
      redis.call('HSET', members_key, lower, me .. '|' .. shown)
      redis.call('HDEL', holder_members_key, field)
      redis.call('HSET', my_members_key, field, '1')
      owner = me
    end
    if owner == me then
      here[#here + 1] = room
    end
  end
end
return {'claimed', old_gw, old_sid, here}
