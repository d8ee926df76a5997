-- Room lifetime: while a room has members (its members hash exists) its seq, epoch and log
-- never expire; once it has none they expire together (one PEXPIREAT, Redis's clock), room
-- ttl ms after the last change (a message, the last member gone). A room that expired comes
-- back with a new epoch and ids from 1. A ttl of 0 (or less) keeps every room forever.
local function settle_room(seq, epoch, log, members, ttl)
  ttl = tonumber(ttl)
  if ttl <= 0 then return end
  if redis.call('EXISTS', members) == 1 then
    -- the three get and lose their expiry together, and the epoch exists whenever the others
    -- do: one look at it spares three PERSISTs on every message of a room with members
    if redis.call('PTTL', epoch) >= 0 then
      redis.call('PERSIST', seq)
      redis.call('PERSIST', epoch)
      redis.call('PERSIST', log)
    end
  else
    local t = redis.call('TIME')
    local at = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + ttl
    redis.call('PEXPIREAT', seq, at)
    redis.call('PEXPIREAT', epoch, at)
    redis.call('PEXPIREAT', log, at)
  end
end
