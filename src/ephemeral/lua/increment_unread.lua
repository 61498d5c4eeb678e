-- Adds one unread message in conversation ARGV[1] for each recipient whose
-- counters exist. A missing key is never created: it means "rebuild from the
-- store".
-- KEYS: unread:{userId} per recipient (hash conversationId -> count, plus the
-- sentinel field '_' = 0 that marks "present")
-- Returns per recipient: count, total; or -1, -1 when the counters are missing.
local out = {}
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    local count = redis.call('HINCRBY', key, ARGV[1], 1)
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
