-- The start of a numbered write (a room message, a stored dm): the epoch, created if
-- missing, and the id an earlier run with the same ref was given (nil if none); nil for
-- the epoch when the write is past its deadline and was never run (nothing written).
-- The ref is read before the deadline: a run whose reply was lost stays a repeat when the
-- retry arrives late, never an 'unavailable' for a write that was carried out.
local function begin_numbered(epoch_key, ref_key, epoch_candidate, deadline_ms)
  local epoch = redis.call('GET', epoch_key)
  local seen = redis.call('GET', ref_key)
  if not seen and too_late(deadline_ms) then
    return nil, nil
  end
  if not epoch then
    epoch = epoch_candidate
    redis.call('SET', epoch_key, epoch)
  end
  return epoch, seen
end
