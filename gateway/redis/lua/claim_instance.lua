-- A starting gateway takes its id, unless another process runs it.
local instance_key = key()
local nonce, lease_ms, force, stopped = arg(), arg(), arg() == '1', arg()
-- -> {'ours', ms left of the reservation a graceful predecessor left (0: none)}, or
--    {'held', the holder's nonce}: another process runs the id (its last beat: lua/beat.lua's
--    register, read by the caller)
local current = redis.call('GET', instance_key)
local reserved = 0
if current == stopped then
  reserved = math.max(0, redis.call('PTTL', instance_key))
elseif current and current ~= nonce and not force then
  return {'held', current}
end
redis.call('SET', instance_key, nonce, 'PX', lease_ms)
return {'ours', reserved}
