-- Deadline: past a request's deadline (ms since the epoch, from the gateway), judged by
-- Redis's clock at the moment the script runs, a script writes nothing and answers
-- 'too_late' (why: docs/architecture.md, "Deadlines"). TIME before writes is fine under
-- effects replication (Redis >= 5 default).
local function too_late(deadline)
  local now = redis.call('TIME')
  return tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) > tonumber(deadline)
end
