-- Claims a dead node and removes its sockets from every user's hash. Only the
-- caller whose SREM removes the node from presence:nodes does the work, so
-- each orphaned user is returned to exactly one caller cluster-wide. Returns
-- the users left with no live socket; their last-seen becomes ARGV[3].
-- With ARGV[4] = 'own', the node itself forgets what an earlier process of
-- the same id left (at start, before it serves): no guards, and its
-- registration is dropped so that its next heartbeat starts afresh.
-- KEYS[1] presence:nodes, KEYS[2] presence:node:{nodeId}, KEYS[3] presence:sockets:{nodeId}
-- ARGV[1] nodeId, ARGV[2] key prefix, ARGV[3] last-seen (Unix ms), ARGV[4] 'own' or absent
if ARGV[4] == 'own' then
  redis.call('SREM', KEYS[1], ARGV[1])
  redis.call('DEL', KEYS[2])
else
  if redis.call('EXISTS', KEYS[2]) == 1 then
    return {} -- it heartbeated again since it was listed as dead
  end
  if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then
    return {} -- another node claimed it first
  end
end
local offline = {}
local sockets = redis.call('HGETALL', KEYS[3])
for i = 1, #sockets, 2 do
  local socket, user = sockets[i], sockets[i + 1]
  local user_key = ARGV[2] .. 'presence:user:' .. user
  if redis.call('HGET', user_key, socket) == ARGV[1] then
    redis.call('HDEL', user_key, socket)
    if redis.call('HLEN', user_key) == 0 then
      redis.call('SET', ARGV[2] .. 'presence:lastseen:' .. user, ARGV[3], 'EX', 7776000) -- 90 days
      offline[#offline + 1] = user
    end
  end
end
redis.call('DEL', KEYS[3])
return offline
