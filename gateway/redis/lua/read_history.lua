-- Retained messages of a room, creating its epoch if the room is new.
-- includes: room_lifetime
local seq_key, epoch_key, log_key, members_key = key(), key(), key(), key()
local epoch_candidate, mode, id, limit = arg(), arg(), arg(), tonumber(arg())
-- room ttl 0: never expires (a conversation: no members to outlive)
local room_ttl_ms = arg()
-- mode 'a': every message after id; 'b': the newest limit before id ('' = none).
-- -> {epoch, last id, complete 0/1, first id, {lines}} (the last two only when lines exist)
-- The log holds ids last-len+1 .. last, so list indexes follow from ids.
local epoch = redis.call('GET', epoch_key)
if not epoch then
  epoch = epoch_candidate
  redis.call('SET', epoch_key, epoch)
  settle_room(seq_key, epoch_key, log_key, members_key, room_ttl_ms)
end
local last = tonumber(redis.call('GET', seq_key) or '0')
local oldest = last - redis.call('LLEN', log_key) + 1
local lo, hi
if mode == 'a' then
  lo = tonumber(id) + 1
  hi = last
else
  hi = last
  if id ~= '' then
    hi = math.min(hi, tonumber(id) - 1)
  end
  lo = math.max(1, hi - limit + 1)
end
if lo > hi then
  return {epoch, last, 1}
end
local complete = 0
if lo >= oldest then complete = 1 end
local first = math.max(lo, oldest)
if first > hi then
  return {epoch, last, complete}
end
return {epoch, last, complete, first, redis.call('LRANGE', log_key, first - oldest, hi - oldest)}
