-- After a message is committed, in one round trip: ends the sender's typing
-- state in the conversation (as stop_typing.lua) and adds one unread for each
-- recipient whose counters exist (a missing key is
-- never created: it means "rebuild from the store").
-- KEYS[1..5]: the sender's typing keys (see stop_typing.lua); KEYS[6..]: unread:{recipient}
-- ARGV[1] senderId, ARGV[2] "{conversationId}|{senderId}", ARGV[3] conversationId
-- Returns: was_typing (1/0), then per recipient count, total (or -1, -1 when missing).
local was_typing = redis.call('ZREM', KEYS[1], ARGV[1])
if was_typing == 1 then
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('ZREM', KEYS[4], ARGV[2])
  redis.call('SREM', KEYS[5], ARGV[3])
end
local out = { was_typing }
for i = 6, #KEYS do
  local key = KEYS[i]
  if redis.call('EXISTS', key) == 1 then
    local count = redis.call('HINCRBY', key, ARGV[3], 1)
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
