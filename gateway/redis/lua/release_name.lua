-- Free a name if this session still holds it (not if it was taken over): a session's
-- release, reconciliation (session ''), or reaping a dead gateway (me: that gateway).
-- In the name's slot only; the caller drops the gateway's index entry after, unless 'kept'.
local user_key = key()
-- session '': whichever session of this gateway holds it (an orphan)
local session, me = arg(), arg()
-- -> 'released' (the record was deleted), 'kept' (another session of this gateway holds it:
--    still ours), or 'other' (someone else's, or nobody's)
local record = redis.call('HMGET', user_key, 'gw', 'sid')
if record[1] ~= me then return 'other' end
if record[2] ~= session and session ~= '' then
  return 'kept'
end
redis.call('DEL', user_key)
return 'released'
