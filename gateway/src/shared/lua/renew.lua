-- Moves the expiry of holds still held (never of one finished meanwhile).
-- KEYS: holds, expiry. ARGV: new expiry (ms), then reservation ids.
-- Returns how many were renewed.
local renewed = 0
for i = 2, #ARGV do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then
    redis.call('ZADD', KEYS[2], 'XX', ARGV[1], ARGV[i])
    renewed = renewed + 1
  end
end
return renewed
