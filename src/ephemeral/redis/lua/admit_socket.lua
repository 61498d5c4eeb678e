-- Records a live socket unless the user holds the cap already: counting and
-- recording in one step, so concurrent handshakes cannot pass the cap.
-- Returns 1 when it is the user's first live socket (the user just came
-- online), 0 when the user had others, -1 when refused (nothing recorded).
-- A socket already recorded is admitted again.
-- KEYS[1] presence:user:{userId}    hash socketId -> nodeId
-- KEYS[2] presence:sockets:{nodeId} hash socketId -> userId
-- ARGV[1] socketId, ARGV[2] nodeId, ARGV[3] userId, ARGV[4] cap
local before = redis.call('HLEN', KEYS[1])
if before >= tonumber(ARGV[4]) and redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return -1
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
if before == 0 then
  return 1
end
return 0
