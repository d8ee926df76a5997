-- Liveness: the one rule of every script (docs/architecture.md, "Liveness").
-- A registered gateway (one in the gateways zset) is alive while its heartbeat is younger
-- than the lease, or while the grace runs. Every beat renews the pulse (PX lease, Redis's
-- own clock); a script that finds no pulse while gateways are registered opens the grace
-- (PX lease): nobody reached Redis for a lease, so Redis was out of reach or stalled, and
-- the gateways are not all dead. Redis's clock, not the gateways': a beat re-sent across
-- the outage carries a time from before Redis came back.
local function grace_open(gateways, grace, pulse, lease)
  if redis.call('EXISTS', grace) == 1 then
    return true
  end
  if redis.call('EXISTS', pulse) == 0 and redis.call('ZCARD', gateways) > 0 then
    redis.call('SET', grace, '1', 'PX', lease)
    return true
  end
  return false
end

-- A beat of 0 marks a gateway a reaper is forgetting (lua/forget_gateway.lua): dead, grace
-- or not, until the reaper's walk ends and takes it off the register.
local function alive(gateways, open, gw, now, lease)
  local beat = redis.call('ZSCORE', gateways, gw)
  if not beat or tonumber(beat) == 0 then return false end
  return open or now - tonumber(beat) < lease
end

-- A heartbeat (after grace_open, whose evidence it erases); 1 when gw was not registered, or
-- was being forgotten: either way its state in Redis is (being) dropped.
local function beat(gateways, pulse, gw, now, lease)
  redis.call('SET', pulse, '1', 'PX', lease)
  local before = redis.call('ZSCORE', gateways, gw)
  redis.call('ZADD', gateways, now, gw)
  if not before or tonumber(before) == 0 then return 1 end
  return 0
end
