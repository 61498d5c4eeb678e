-- Removes up to ARGV[2] typing states expired at ARGV[1] (expiry <= now) from
-- every structure and returns them, so concurrent sweepers on different
-- nodes get disjoint sets.
-- KEYS[1] typing:expiries  zset "{conversationId}|{userId}" -> expiry ms
-- ARGV[1] now, ARGV[2] batch size, ARGV[3] key prefix
-- Returns a flat list: conversationId, userId, name, ...
local p = ARGV[3]
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, member in ipairs(members) do
  redis.call('ZREM', KEYS[1], member)
  -- conversation ids are UUIDs, so the first '|' ends them
  local sep = string.find(member, '|', 1, true)
  if sep then
    local c = string.sub(member, 1, sep - 1)
    local u = string.sub(member, sep + 1)
    local names = p .. 'typing:names:' .. c
    local name = redis.call('HGET', names, u) or ''
    redis.call('ZREM', p .. 'typing:' .. c, u)
    redis.call('HDEL', names, u)
    redis.call('HDEL', p .. 'typing:relayed:' .. c, u)
    redis.call('SREM', p .. 'typing:user:' .. u, c)
    out[#out + 1] = c
    out[#out + 1] = u
    out[#out + 1] = name
  end
end
return out
