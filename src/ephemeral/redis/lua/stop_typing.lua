-- Ends a typing state. Returns 1 when there was one (so exactly one caller
-- announces the stop), else 0.
-- KEYS: as start_typing.lua
-- ARGV[1] userId, ARGV[2] "{conversationId}|{userId}", ARGV[3] conversationId
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[2])
redis.call('SREM', KEYS[5], ARGV[3])
return removed
