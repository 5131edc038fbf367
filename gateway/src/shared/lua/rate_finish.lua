-- Settles a ticket (replaces its estimate with the actual tokens) or
-- releases it (takes its request and estimate back), in the bucket it was
-- admitted in; a bucket that left the window changes nothing.
-- KEYS: the principal's buckets. ARGV: second, now (unix second),
-- estimate, actual tokens or '' to release.
local second, estimate = ARGV[1], tonumber(ARGV[3])
if tonumber(second) < tonumber(ARGV[2]) - 60 then return 0 end
if redis.call('HEXISTS', KEYS[1], 'q:' .. second) == 0 then return 0 end
local t = 't:' .. second
local tokens = math.max(0, tonumber(redis.call('HGET', KEYS[1], t) or '0') - estimate)
if ARGV[4] == '' then
  local left = redis.call('HINCRBY', KEYS[1], 'q:' .. second, -1)
  if left <= 0 then redis.call('HDEL', KEYS[1], 'q:' .. second) end
else
  tokens = tokens + tonumber(ARGV[4])
end
if tokens > 0 then
  redis.call('HSET', KEYS[1], t, string.format('%d', tokens))
else
  redis.call('HDEL', KEYS[1], t)
end
return 1
