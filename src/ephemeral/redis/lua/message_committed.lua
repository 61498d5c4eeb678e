-- After messages are committed, in one round trip for all of them: for each,
-- ends the sender's typing state in the conversation (as stop_typing.lua)
-- and adds one unread for each recipient whose counters exist (a missing key
-- is never created: it means "rebuild from the store").
-- ARGV[1] the number of messages; then per message four values: senderId,
--   "{conversationId}|{senderId}", conversationId, the number of recipients
-- KEYS per message, consecutively: the sender's five typing keys (see
--   stop_typing.lua), then unread:{recipient} per recipient
-- Returns per message, consecutively: was_typing (1/0), then per recipient
--   count, total (or -1, -1 when missing).
local out = {}
local k = 1
local a = 2
for _ = 1, tonumber(ARGV[1]) do
  local sender, member, conversation = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  local recipients = tonumber(ARGV[a + 3])
  a = a + 4
  local was_typing = redis.call('ZREM', KEYS[k], sender)
  if was_typing == 1 then
    redis.call('HDEL', KEYS[k + 1], sender)
    redis.call('HDEL', KEYS[k + 2], sender)
    redis.call('ZREM', KEYS[k + 3], member)
    redis.call('SREM', KEYS[k + 4], conversation)
  end
  k = k + 5
  out[#out + 1] = was_typing
  for _ = 1, recipients do
    local key = KEYS[k]
    k = k + 1
    if redis.call('EXISTS', key) == 1 then
      local count = redis.call('HINCRBY', key, conversation, 1)
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
end
return out
