-- New rooms: a token bucket per name (a hash: tokens, at), burst tokens refilled per_min a
-- minute by Redis's clock; it expires once full again. False (nothing written) when empty.
local function take_room_token(bucket, per_min, burst)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local state = redis.call('HMGET', bucket, 'tokens', 'at')
  local tokens = burst
  if state[1] and state[2] then
    tokens = math.min(burst, tonumber(state[1]) + (now - tonumber(state[2])) * per_min / 60000)
  end
  if tokens < 1 then return false end
  tokens = tokens - 1
  redis.call('HSET', bucket, 'tokens', string.format('%.6f', tokens),
             'at', string.format('%d', now))
  redis.call('PEXPIRE', bucket, math.ceil((burst - tokens) * 60000 / per_min) + 1)
  return true
end
