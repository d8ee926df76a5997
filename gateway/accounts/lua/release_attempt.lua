-- Take back one counted password check that turned out not to be a failure.
-- The expiry stays; a counter that already expired stays gone.
local counter_key = key()
-- -> the count now
local n = tonumber(redis.call('GET', counter_key) or '0')
if n > 1 then
  return redis.call('DECR', counter_key)
end
if n == 1 then
  redis.call('DEL', counter_key)
end
return 0
