-- Who is typing in a conversation: entries whose expiry is after ARGV[1].
-- KEYS[1] typing:{conversationId}, KEYS[2] typing:names:{conversationId}
-- Returns a flat list: userId, name, userId, name, ...
local users = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf')
local out = {}
for _, user in ipairs(users) do
  out[#out + 1] = user
  out[#out + 1] = redis.call('HGET', KEYS[2], user) or ''
end
return out
