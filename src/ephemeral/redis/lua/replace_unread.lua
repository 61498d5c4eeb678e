-- Replaces a user's counters. The sentinel field '_' = 0 keeps the key
-- existing when every count is zero, so "present but zero" differs from
-- "missing". The key lives ARGV[1] ms after its last rebuild (message
-- counts do not extend it): a missing key is rebuilt from the store, so
-- counters of users who stopped coming do not stay in Redis forever.
-- KEYS[1] unread:{userId}
-- ARGV[1] lifetime ms; then conversationId, count, conversationId, count, ... (non-zero counts)
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], '_', 0)
for i = 2, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
