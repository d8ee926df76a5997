-- Store a dm of a conversation (give it the conversation's next id), or find it is a repeat.
-- In the conversation's slot; the caller publishes the stored line to the recipient's
-- gateway (its channel is in that gateway's slot), and the receiving session drops a repeat
-- by its id.
-- includes: deadline, numbering
local seq_key, epoch_key, log_key, ref_key = key(), key(), key(), key()
local epoch_candidate, line_prefix, history = arg(), arg(), tonumber(arg())
local ref_ttl_ms, deadline_ms = arg(), arg()
-- -> {'too_late'}: past the deadline, nothing written; else {'sent' or 'repeat', id, epoch,
-- line ('' for a repeat)}.
local epoch, seen = begin_numbered(epoch_key, ref_key, epoch_candidate, deadline_ms)
if not epoch then
  return {'too_late'}
end
if seen then
  return {'repeat', tonumber(seen), epoch, ''}
end
local id = redis.call('INCR', seq_key)
local sid = string.format('%d', id)
local line = line_prefix .. sid .. ',"epoch":"' .. epoch .. '"}'
redis.call('RPUSH', log_key, line)
redis.call('LTRIM', log_key, -history, -1)
redis.call('SET', ref_key, sid, 'PX', ref_ttl_ms)
return {'sent', id, epoch, line}
