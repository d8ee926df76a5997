-- After an account is registered: the name's record says its claim is the owner's.
local user_key = key()
local session = arg()
-- -> 1 when the record is this session's and now says so, else 0
if redis.call('HGET', user_key, 'sid') ~= session then
  return 0
end
redis.call('HSET', user_key, 'acct', '1')
return 1
