-- Lists the registered nodes whose heartbeat key has expired. Read-only; the
-- claim happens in claim_node.lua.
-- KEYS[1] presence:nodes
-- ARGV[1] key prefix (node keys are ARGV[1] .. 'presence:node:' .. id)
local dead = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. 'presence:node:' .. id) == 0 then
    dead[#dead + 1] = id
  end
end
return dead
