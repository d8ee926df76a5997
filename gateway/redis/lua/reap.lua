-- Drop a gateway's memberships and names (a dead one's, or our own at shutdown).
-- includes: liveness, room_lifetime
local gateways_key, grace_key, pulse_key = key(), key(), key()
local its_members_key, its_names_key, reaper_key = key(), key(), key()
local gw, now_ms, lease_ms, force = arg(), tonumber(arg()), tonumber(arg()), arg() == '1'
local membership_count, name_count = tonumber(arg()), tonumber(arg())
local final, me, room_ttl_ms = arg() == '1', arg(), arg()
-- then per membership: keys (room members hash, the name's rooms set, the room's seq,
--   epoch and log),
--   args (lower name, membership field, room channel, left prefix, left suffix, room);
-- then per name: key (user record), arg (lower name).
-- -> {'alive'} when the gateway is alive (nothing done, our lock given back), else
--    {'reaped', number of lefts published}
if not force then
  if alive(gateways_key, grace_open(gateways_key, grace_key, pulse_key, lease_ms), gw, now_ms, lease_ms) then
    if redis.call('GET', reaper_key) == me then
      redis.call('DEL', reaper_key)
    end
    return {'alive'}
  end
end
local lefts = 0
for _ = 1, membership_count do
  local members_key, name_rooms_key = key(), key()
  local seq_key, epoch_key, log_key = key(), key(), key()
  local lower, membership, channel, left_prefix, left_suffix, room =
    arg(), arg(), arg(), arg(), arg(), arg()
  local current = redis.call('HGET', members_key, lower)
  if current then
    local owner, shown = string.match(current, '^(.*)|(.*)$')
    if owner == gw then
      redis.call('HDEL', members_key, lower)
      redis.call('SREM', name_rooms_key, room)
      settle_room(seq_key, epoch_key, log_key, members_key, room_ttl_ms)
      redis.call('PUBLISH', channel, left_prefix .. shown .. left_suffix)
      lefts = lefts + 1
    end
  end
  redis.call('HDEL', its_members_key, membership)
end
for _ = 1, name_count do
  local user_key, lower = key(), arg()
  if redis.call('HGET', user_key, 'gw') == gw then
    redis.call('DEL', user_key)
  end
  redis.call('SREM', its_names_key, lower)
end
if final then
  redis.call('ZREM', gateways_key, gw)
  redis.call('DEL', its_members_key, its_names_key)
end
return {'reaped', lefts}
