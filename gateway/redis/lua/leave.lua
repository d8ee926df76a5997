-- Remove a name from a room if the given gateway holds it there, publishing 'left': a
-- session's leave (owner: this gateway), reconciliation, or reaping a dead gateway.
-- includes: room_lifetime
-- In the room's slot only; the caller drops the gateway's and the name's index entries after.
local members_key, seq_key, epoch_key, log_key, channel_key = key(), key(), key(), key(), key()
local lower, owner, publish = arg(), arg(), arg()
local left_prefix, left_suffix, room_ttl_ms = arg(), arg(), arg()
-- -> 'left' when the owner's membership was removed (and 'left' published), 'absent' when the
--    name is not in the room, 'other' when another gateway holds it (taken over): its now
local current = redis.call('HGET', members_key, lower)
if not current then return 'absent' end
local gw, shown = string.match(current, '^(.*)|(.*)$')
if gw ~= owner then return 'other' end
redis.call('HDEL', members_key, lower)
settle_room(seq_key, epoch_key, log_key, members_key, room_ttl_ms)
redis.call(publish, channel_key, left_prefix .. shown .. left_suffix)
return 'left'
