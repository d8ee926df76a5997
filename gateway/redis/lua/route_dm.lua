-- Where a dm to a name goes: its holder's display name and gateway, and its account.
-- In the name's slot; whether the gateway is alive the caller asks lua/verdict.lua.
local user_key, account_key = key(), key()
-- -> {display name or '', gateway or '', account 0/1, account display name or ''}
local rec = redis.call('HMGET', user_key, 'name', 'gw')
local acct = redis.call('HGET', account_key, 'name')
local has = 0
if acct then has = 1 end
return {rec[1] or '', rec[2] or '', has, acct or ''}
