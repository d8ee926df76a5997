-- Delete an account and its name's failed password checks: the name is free again.
local account_key, failures_key = key(), key()
-- -> 'deleted', or 'absent' (there was no account; the failures are cleared either way)
local existed = redis.call('EXISTS', account_key)
redis.call('DEL', account_key, failures_key)
if existed == 1 then
  return 'deleted'
end
return 'absent'
