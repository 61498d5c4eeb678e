-- Token buckets shared by every node: takes one token from each bucket
-- KEYS[i], in order (a key may repeat: one send after another), and returns
-- per key 1 if there was a token, else 0. Time comes from the Redis server
-- (TIME), so all nodes share one clock.
-- KEYS[i] ratelimit:send:{userId}  hash {tokens, ts (microseconds)}
-- ARGV[1] refill rate (tokens per second, > 0; may be a fraction), ARGV[2] burst (>= 1)
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
-- a bucket idle long enough to be full again is the same as no bucket
local idle_ms = math.ceil(burst * 1000 / rate) + 1000
local out = {}
for i = 1, #KEYS do
  local key = KEYS[i]
  local state = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens = tonumber(state[1])
  local ts = tonumber(state[2])
  if tokens == nil or ts == nil then
    tokens = burst
    ts = now
  end
  if now > ts then
    tokens = math.min(burst, tokens + (now - ts) * rate / 1000000)
    ts = now
  end
  local allowed = 0
  if tokens >= 1 then
    tokens = tokens - 1
    allowed = 1
  end
  redis.call('HSET', key, 'tokens', string.format('%.6f', tokens), 'ts', string.format('%d', ts))
  redis.call('PEXPIRE', key, idle_ms)
  out[i] = allowed
end
return out
