-- A live dm (no account on either side): its dedup key, in the sender's slot (a ref is the
-- sender's, whoever the dm is to). The recipient's record and its gateway's channel live in
-- other slots, so the caller routes and publishes (docs/architecture.md, "Dms across slots"):
-- this script marks the key 'pending'; the caller finds the holder, asks whether its gateway
-- is alive (lua/verdict.lua), publishes and marks the key 'sent', or drops the key (nobody
-- there: nothing was done). A retry that finds 'pending' is told to deliver again.
-- includes: deadline
local ref_key = key()
local ref_ttl_ms, deadline_ms = arg(), arg()
-- -> 'deliver', 'repeat' (the key says sent), or 'too_late': past the deadline, nothing
-- written (the dedup key is read first, as in publish_message.lua)
local seen = redis.call('GET', ref_key)
if seen == 'sent' then
  return 'repeat'
end
if seen == 'pending' then
  return 'deliver'  -- accepted in time before: its delivery is owed
end
if too_late(deadline_ms) then
  return 'too_late'
end
redis.call('SET', ref_key, 'pending', 'PX', ref_ttl_ms)
return 'deliver'
