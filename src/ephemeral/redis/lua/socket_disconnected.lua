-- Forgets a socket. Returns 1 when it was the user's last live socket (the
-- user just went offline; the last-seen time is recorded), else 0. Atomic, so
-- two sockets closing together yield exactly one offline.
-- KEYS[1] presence:user:{userId}    hash socketId -> nodeId
-- KEYS[2] presence:sockets:{nodeId} hash socketId -> userId (this node)
-- KEYS[3] presence:lastseen:{userId}
-- ARGV[1] socketId, ARGV[2] last-seen (Unix ms, optional ".nnnnnn" sub-ms nanos)
local removed = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
if removed == 1 and redis.call('HLEN', KEYS[1]) == 0 then
  redis.call('SET', KEYS[3], ARGV[2], 'EX', 7776000) -- kept 90 days
  return 1
end
return 0
