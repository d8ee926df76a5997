-- Free a name if this session still holds it (not if it was taken over).
local user_key, my_names_key = key(), key()
-- session '': whichever session of this gateway holds it (an orphan)
local session, me, lower = arg(), arg(), arg()
-- -> 1 when the record was deleted
local record = redis.call('HMGET', user_key, 'gw', 'sid')
if record[1] == me then
  if record[2] ~= session and session ~= '' then
    return 0  -- another session of this gateway took the name over: still ours
  end
  redis.call('DEL', user_key)
end
redis.call('SREM', my_names_key, lower)
if record[1] == me then return 1 end
return 0
