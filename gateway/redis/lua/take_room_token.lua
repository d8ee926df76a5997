-- Take a token of a name's bucket of new rooms (before a join creates a room).
-- includes: new_rooms
local bucket_key = key()
local per_min, burst = tonumber(arg()), tonumber(arg())
-- -> 1 taken, 0 the bucket is empty (nothing written)
if take_room_token(bucket_key, per_min, burst) then return 1 end
return 0
