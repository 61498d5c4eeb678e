-- Reads many users' presence in one round trip.
-- KEYS: pairs (presence:user:{userId}, presence:lastseen:{userId})
-- Returns per pair: online (1/0), then last-seen ('' while online or unknown).
local out = {}
for i = 1, #KEYS, 2 do
  local online = redis.call('EXISTS', KEYS[i])
  out[#out + 1] = online
  if online == 1 then
    out[#out + 1] = ''
  else
    out[#out + 1] = redis.call('GET', KEYS[i + 1]) or ''
  end
end
return out
