-- Deadline: once a request's deadline (ms since the epoch, from the gateway) has passed, the
-- gateway may have answered it 'unavailable' (not carried out), so a script that Redis runs
-- later (it waited in the socket buffer of a stalled Redis, or came in a late retry) must
-- write nothing and answer 'too_late'. Judged by Redis's clock, the one of the moment the
-- script runs. TIME before writes is fine under effects replication (Redis >= 5 default).
local function too_late(deadline)
  local now = redis.call('TIME')
  return tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) > tonumber(deadline)
end
