-- Marks a node alive for ttl milliseconds (by the Redis clock). Returns 1
-- when the node was not in presence:nodes (its first heartbeat, or it was
-- swept, or Redis lost its state): its sockets must be recorded again.
-- KEYS[1] presence:nodes (set of node ids), KEYS[2] presence:node:{nodeId}
-- ARGV[1] nodeId, ARGV[2] ttl ms (>= 1), ARGV[3] caller's clock (ms, informative)
local added = redis.call('SADD', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[2])
return added
