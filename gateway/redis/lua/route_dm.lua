-- Where a dm to a name goes: its holder's display name and live gateway, and its account.
-- includes: liveness
local user_key, account_key, gateways_key, grace_key, pulse_key = key(), key(), key(), key(), key()
local now, lease = tonumber(arg()), tonumber(arg())
-- -> {display name or '', live gateway or '', account 0/1, account display name or ''}
local rec = redis.call('HMGET', user_key, 'name', 'gw')
local acct = redis.call('HGET', account_key, 'name')
local gw = ''
if rec[2] then
  if alive(gateways_key, grace_open(gateways_key, grace_key, pulse_key, lease), rec[2], now,
           lease) then
    gw = rec[2]
  end
end
local has = 0
if acct then has = 1 end
return {rec[1] or '', gw, has, acct or ''}
