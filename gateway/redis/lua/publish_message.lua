-- Give a room message the room's next id, store it, publish it (or find it is a repeat).
-- includes: deadline, numbering, room_lifetime
local seq_key, epoch_key, log_key, ref_key, members_key = key(), key(), key(), key(), key()
local channel_key = key()
local epoch_candidate, line_prefix, line_suffix = arg(), arg(), arg()
local history, publish, ref_ttl_ms, room_ttl_ms = tonumber(arg()), arg(), arg(), arg()
local message_tag, deadline_ms = arg(), arg()
-- publish: 'PUBLISH', or 'SPUBLISH' on Redis Cluster (the channel shares the room's slot)
-- -> {'too_late'}: past the deadline, nothing written; else {'sent' or 'repeat', id, epoch}
local epoch, seen = begin_numbered(epoch_key, ref_key, epoch_candidate, deadline_ms)
if not epoch then
  return {'too_late'}
end
if seen then
  return {'repeat', tonumber(seen), epoch}
end
local id = redis.call('INCR', seq_key)
local sid = string.format('%d', id)
local line = line_prefix .. sid .. line_suffix
if redis.call('RPUSH', log_key, line) > history then
  redis.call('LTRIM', log_key, -history, -1)
end
redis.call(publish, channel_key, message_tag .. epoch .. '|' .. sid .. '|' .. line)
redis.call('SET', ref_key, sid, 'PX', ref_ttl_ms)
settle_room(seq_key, epoch_key, log_key, members_key, room_ttl_ms)
return {'sent', id, epoch}
