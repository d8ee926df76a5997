-- Liveness verdicts, for scripts in other slots that cannot read a heartbeat: whether each
-- gateway is alive now (lua/liveness.lua's rule), optionally after a beat of our own.
-- includes: liveness
local gateways_key, grace_key, pulse_key = key(), key(), key()
local now_ms, lease_ms, me = tonumber(arg()), tonumber(arg()), arg()
local count = tonumber(arg())
-- me '': no beat. Then count gateway ids. -> {1 or 0 per id, in order}
local open = grace_open(gateways_key, grace_key, pulse_key, lease_ms)
if me ~= '' then
  beat(gateways_key, pulse_key, me, now_ms, lease_ms)
end
local out = {}
for i = 1, count do
  if alive(gateways_key, open, arg(), now_ms, lease_ms) then out[i] = 1 else out[i] = 0 end
end
return out
