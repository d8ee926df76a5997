-- Publish a dm to the gateway holding the recipient (or find it is a repeat).
-- includes: liveness, deadline
local user_key, gateways_key, ref_key, grace_key, pulse_key = key(), key(), key(), key(), key()
local now_ms, lease_ms, line_prefix, line_suffix = tonumber(arg()), tonumber(arg()), arg(), arg()
local lower_to, ref_ttl_ms, gateway_prefix, to_as_given = arg(), arg(), arg(), arg()
local dm_tag, deadline_ms = arg(), arg()
-- -> {'sent', line}, {'repeat', line}, {'no_such_user'}, or {'too_late'}: past the deadline
-- (the dedup key is read first, as in publish_message.lua)
local record = redis.call('HMGET', user_key, 'name', 'gw')
local line = line_prefix .. (record[1] or to_as_given) .. line_suffix
if redis.call('EXISTS', ref_key) == 1 then
  return {'repeat', line}
end
if too_late(deadline_ms) then
  return {'too_late'}
end
if not record[2] then return {'no_such_user'} end
local open = grace_open(gateways_key, grace_key, pulse_key, lease_ms)
if not alive(gateways_key, open, record[2], now_ms, lease_ms) then
  return {'no_such_user'}
end
redis.call('PUBLISH', gateway_prefix .. record[2], dm_tag .. lower_to .. '|' .. line)
redis.call('SET', ref_key, '1', 'PX', ref_ttl_ms)
return {'sent', line}
