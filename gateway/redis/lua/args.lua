-- Shared by every script: KEYS and ARGV are read in order through two cursors, so each
-- script names what it reads (local x = key()) instead of counting positions.
-- Each script's Python builder (gateway/redis/scripts/) writes them in the same order.
local function cursor(list)
  local i = 0
  return function()
    i = i + 1
    return list[i]
  end
end
local key, arg = cursor(KEYS), cursor(ARGV)
