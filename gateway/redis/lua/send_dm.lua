-- A live dm (no account on either side): find the gateway holding the recipient, or find
-- the dm is a repeat. In the recipient's slot (its record and the dm's dedup key): the
-- holder's channel lives in the holder's slot, so the caller publishes (docs/architecture.md,
-- "Dms across slots"): this script marks the dedup key 'pending', the caller asks whether the
-- holder is alive (lua/verdict.lua), publishes and marks it 'sent' (or drops it: nobody there).
-- A retry that finds 'pending' is told to deliver again.
-- includes: deadline
local user_key, ref_key = key(), key()
local line_prefix, line_suffix, to_as_given = arg(), arg(), arg()
local ref_ttl_ms, deadline_ms = arg(), arg()
-- -> {'deliver', line, gateway}, {'repeat', line}, {'no_such_user'}, or {'too_late'}: past the
-- deadline, nothing written (the dedup key is read first, as in publish_message.lua)
local record = redis.call('HMGET', user_key, 'name', 'gw')
local line = line_prefix .. (record[1] or to_as_given) .. line_suffix
local seen = redis.call('GET', ref_key)
if seen == 'sent' then
  return {'repeat', line}
end
if seen == 'pending' and record[2] then
  return {'deliver', line, record[2]}  -- accepted in time before: its delivery is owed
end
if too_late(deadline_ms) then
  return {'too_late'}
end
if not record[2] then return {'no_such_user'} end
redis.call('SET', ref_key, 'pending', 'PX', ref_ttl_ms)
return {'deliver', line, record[2]}
