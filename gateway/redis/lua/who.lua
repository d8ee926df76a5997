-- The member values ('<gateway id>|<Name>') of a room held through live gateways.
-- includes: liveness
local members_key, gateways_key, grace_key, pulse_key = key(), key(), key(), key()
local now_ms, lease_ms = tonumber(arg()), tonumber(arg())
local open = grace_open(gateways_key, grace_key, pulse_key, lease_ms)
local verdict, out = {}, {}
for _, value in ipairs(redis.call('HVALS', members_key)) do
  local gw = string.match(value, '^(.*)|')
  if gw then
    if verdict[gw] == nil then
      verdict[gw] = alive(gateways_key, open, gw, now_ms, lease_ms)
    end
    if verdict[gw] then
      out[#out + 1] = value
    end
  end
end
return out
