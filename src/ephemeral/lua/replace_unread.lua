-- Replaces a user's counters. The sentinel field '_' = 0 keeps the key
-- existing when every count is zero, so "present but zero" differs from
-- "missing".
-- KEYS[1] unread:{userId}
-- ARGV: conversationId, count, conversationId, count, ... (non-zero counts)
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], '_', 0)
for i = 1, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
return 1
