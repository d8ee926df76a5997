-- Replace an account's password hash, as a compare-and-set when the caller read it first.
local account_key, failures_key = key(), key()
local new_hash, expected_hash, clear_failures = arg(), arg(), arg()
-- expected_hash '' accepts any current hash (an operator's reset); clear_failures '1' also
-- forgets the name's failed password checks.
-- -> 'set', 'no_account', or 'changed' (the hash is no longer expected_hash; nothing written)
if redis.call('EXISTS', account_key) == 0 then
  return 'no_account'
end
if expected_hash ~= '' and redis.call('HGET', account_key, 'hash') ~= expected_hash then
  return 'changed'
end
redis.call('HSET', account_key, 'hash', new_hash)
if clear_failures == '1' then
  redis.call('DEL', failures_key)
end
return 'set'
