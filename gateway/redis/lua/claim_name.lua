-- Make a name this session's, cluster-wide; a live holder gives it up only to its token.
-- In the name's slot only (the record and the account). Whether the holder's gateway is
-- alive is a verdict the caller read (lua/verdict.lua) about the holder it saw: used only
-- while the record still names that gateway, else the script asks for a verdict about the
-- one it found. The caller then moves the rooms a token takeover brings (lua/move_member.lua)
-- and tells the holder's gateway its session lost the name (a 'K' payload).
-- Accounts (issue 12): a name with an account goes only to its owner (presented '*': the
-- caller checked the password; it takes the name from any live session, like a token) or
-- to a token of a claim that was the owner's (the record's 'acct'); '+' is the owner's
-- session putting back its record (never taken from a live holder); a guest never gets
-- such a name, whether someone holds it or not.
local user_key, account_key = key(), key()
local display, session, new_hash, presented_hash = arg(), arg(), arg(), arg()
local me, holder_seen, holder_alive = arg(), arg(), arg() == '1'
-- -> {'taken'}; {'verdict', gateway}: nothing written, a verdict about that gateway is wanted;
--    or {'claimed', replaced gateway or '', replaced session or '', account 0/1,
--    gateway to tell or '', its session or '', heir}: heir, the gateway the claim took the
--    name from with its token (its memberships come along), or ''. The record keeps the heir
--    ('from'), so a repeat of the claim (its reply lost) reports the same.
local record = redis.call('HMGET', user_key, 'gw', 'sid', 'token', 'acct', 'from')
local gw, sid, hash = record[1], record[2], record[3]
local owner = presented_hash == '*' or presented_hash == '+'
local acct = 0
if redis.call('EXISTS', account_key) == 1 then
  local owner_token = gw and presented_hash ~= '' and hash == presented_hash and record[4] == '1'
  if not (owner or owner_token) then
    return {'taken'}
  end
  acct = 1
end
local old_gw, old_sid, tell_gw, tell_sid = '', '', '', ''
local heir = ''
if gw == me and sid == session and hash == new_hash then
  heir = record[5] or ''
end
if gw and not (gw == me and sid == session) then
  if gw ~= me and gw ~= holder_seen then
    return {'verdict', gw}
  end
  local token_ok = presented_hash == '*' or (presented_hash ~= '' and hash == presented_hash)
  if gw == me or holder_alive then
    if not token_ok then
      return {'taken'}
    end
    old_gw, old_sid = gw, sid
  end
  if token_ok and gw ~= me then heir = gw end
  -- the holder, live or presumed dead (it may only be paused), hears its session lost it
  tell_gw, tell_sid = gw, sid or ''
end
redis.call('HSET', user_key, 'name', display, 'gw', me, 'sid', session, 'token', new_hash)
if acct == 1 then
  redis.call('HSET', user_key, 'acct', '1')
else
  redis.call('HDEL', user_key, 'acct')
end
if heir ~= '' then
  redis.call('HSET', user_key, 'from', heir)
else
  redis.call('HDEL', user_key, 'from')
end
return {'claimed', old_gw, old_sid, acct, tell_gw, tell_sid, heir}
