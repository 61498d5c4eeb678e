-- Records a live socket. Returns 1 when it is the user's first live socket
-- (the user just came online), else 0.
-- KEYS[1] presence:user:{userId}    hash socketId -> nodeId
-- KEYS[2] presence:sockets:{nodeId} hash socketId -> userId
-- ARGV[1] socketId, ARGV[2] nodeId, ARGV[3] userId
local before = redis.call('HLEN', KEYS[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
if before == 0 then
  return 1
end
return 0
