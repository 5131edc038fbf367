-- Adds the ledger's spend to a counter not in use yet, once.
-- KEYS: counter. ARGV: ttl (ms), then cell, spend pairs.
-- Returns 1 when primed now, 0 when it already was.
if redis.call('HEXISTS', KEYS[1], 'primed') == 1 then return 0 end
for i = 2, #ARGV, 2 do
  if ARGV[i + 1] ~= '0' then redis.call('HINCRBY', KEYS[1], 's:' .. ARGV[i], ARGV[i + 1]) end
end
redis.call('HSET', KEYS[1], 'primed', '1')
keep(KEYS[1], tonumber(ARGV[1]))
return 1
