-- Make a name this session's, cluster-wide; a live holder gives it up only to its token.
-- includes: liveness
-- With the right token from another gateway the claim takes the memberships too, so a
-- takeover shows no left/joined in the rooms the new session also joins.
-- Accounts (issue 12): a name with an account goes only to its owner (presented '*': the
-- caller checked the password; it takes the name from any live session, like a token) or
-- to a token of a claim that was the owner's (the record's 'acct'); '+' is the owner's
-- session putting back its record (never taken from a live holder); a guest never gets
-- such a name, whether someone holds it or not.
local user_key, gateways_key, my_names_key, grace_key, pulse_key = key(), key(), key(), key(), key()
local my_members_key, name_rooms_key, holder_members_key = key(), key(), key()
local display, session, new_hash, presented_hash = arg(), arg(), arg(), arg()
local me, now_ms, lease_ms, lower = arg(), tonumber(arg()), tonumber(arg()), arg()
local gateway_prefix, holder_seen, kick_tag = arg(), arg(), arg()
local room_count = tonumber(arg())
-- then per room of the name seen before (read with the holder): its members hash, its name;
-- then (key) the name's account, in the user record's slot
-- -> {'taken'}, or {'claimed', replaced gateway or '', replaced session or '', {rooms},
--    account 0/1}: the rooms of the name whose membership is now this gateway's
local open = grace_open(gateways_key, grace_key, pulse_key, lease_ms)
beat(gateways_key, pulse_key, me, now_ms, lease_ms)
local room_keys, rooms = {}, {}
for i = 1, room_count do
  room_keys[i], rooms[i] = key(), arg()
end
local account_key = key()
local record = redis.call('HMGET', user_key, 'gw', 'sid', 'token', 'acct')
local gw, sid, hash = record[1], record[2], record[3]
local owner = presented_hash == '*' or presented_hash == '+'
local acct = 0
if redis.call('EXISTS', account_key) == 1 then
  local owner_token = gw and presented_hash ~= '' and hash == presented_hash and record[4] == '1'
  if not (owner or owner_token) then
    return {'taken'}
  end
  acct = 1
end
local old_gw, old_sid = '', ''
local heir = false
if gw and not (gw == me and sid == session) then
  local token_ok = presented_hash == '*' or (presented_hash ~= '' and hash == presented_hash)
  if alive(gateways_key, open, gw, now_ms, lease_ms) then
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
if acct == 1 then
  redis.call('HSET', user_key, 'acct', '1')
else
  redis.call('HDEL', user_key, 'acct')
end
redis.call('SADD', my_names_key, lower)
local here = {}
for i = 1, room_count do
  local members_key, room = room_keys[i], rooms[i]
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
return {'claimed', old_gw, old_sid, here, acct}
