-- Create an account: its name's hash, unless the name has one.
local account_key = key()
local display, password_hash, created_ms = arg(), arg(), arg()
-- -> 'created', or 'exists' (nothing written)
if redis.call('EXISTS', account_key) == 1 then
  return 'exists'
end
redis.call('HSET', account_key, 'name', display, 'hash', password_hash, 'created', created_ms)
return 'created'
