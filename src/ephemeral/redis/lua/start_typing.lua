-- Starts or refreshes a typing state until ARGV[4]. Returns 1 when it should
-- be relayed (new, or last relayed at least ARGV[5] ms before ARGV[3]; the
-- relay time is then recorded), else 0.
-- KEYS[1] typing:{conversationId}          zset userId -> expiry ms
-- KEYS[2] typing:names:{conversationId}    hash userId -> display name
-- KEYS[3] typing:relayed:{conversationId}  hash userId -> last relay ms
-- KEYS[4] typing:expiries                  zset "{conversationId}|{userId}" -> expiry ms
-- KEYS[5] typing:user:{userId}             set of conversationIds
-- ARGV[1] userId, ARGV[2] name, ARGV[3] now, ARGV[4] expiry, ARGV[5] relay
-- interval ms, ARGV[6] "{conversationId}|{userId}", ARGV[7] conversationId
local relay = 1
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  local last = tonumber(redis.call('HGET', KEYS[3], ARGV[1]))
  if last and tonumber(ARGV[3]) - last < tonumber(ARGV[5]) then
    relay = 0
  end
end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[6])
redis.call('SADD', KEYS[5], ARGV[7])
if relay == 1 then
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
end
return relay
