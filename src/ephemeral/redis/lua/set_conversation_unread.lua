-- Sets one conversation's count in several users' counters (after a delete),
-- for the users whose counters exist: a missing key is never created (it
-- means "rebuild from the store"). Does not extend the keys' lifetime.
-- KEYS unread:{userId} per user
-- ARGV[1] conversationId; then the count per user, in KEYS order
-- Returns per user, consecutively: count, total (or -1, -1 when missing).
local conversation = ARGV[1]
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    local count = tonumber(ARGV[i + 1])
    if count > 0 then
      redis.call('HSET', key, conversation, count)
    else
      redis.call('HDEL', key, conversation)
    end
    local total = 0
    for _, v in ipairs(redis.call('HVALS', key)) do
      total = total + (tonumber(v) or 0)
    end
    out[#out + 1] = count
    out[#out + 1] = total
  else
    out[#out + 1] = -1
    out[#out + 1] = -1
  end
end
return out
