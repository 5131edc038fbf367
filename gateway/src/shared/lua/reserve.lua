-- Reserves an amount in every counter, or in none.
-- KEYS: holds, expiry, finished, then one counter per budget line.
-- ARGV: now (ms), id, amount, expires (ms), ttl of the hold keys (ms),
--       the caller's record of the hold, then per counter:
--       limit, cell, first counted cell, last counted cell, ttl (ms).
-- Returns {'ok'}, {'held', record}, {'finished'}, {'unprimed', i} or
-- {'exceeded', i, spent, reserved}.
local now, id, amount = ARGV[1], ARGV[2], ARGV[3]
reap(KEYS[1], KEYS[2], now)
local held = redis.call('HGET', KEYS[1], id)
if held then return {'held', cjson.decode(held).h} end
if redis.call('ZSCORE', KEYS[3], id) then return {'finished'} end
local n = #KEYS - 3
for i = 1, n do
  local k, a = KEYS[3 + i], 6 + (i - 1) * 5
  -- Cells before the first counted one can no longer count: pruned in the
  -- same pass, whether or not the amount fits or the counter is primed.
  local s, r, primed = sums(k, tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4]), true)
  if not primed then return {'unprimed', i} end
  if s + r + tonumber(amount) > tonumber(ARGV[a + 1]) then
    return {'exceeded', i, string.format('%d', s), string.format('%d', r)}
  end
end
local keys, cells = {}, {}
for i = 1, n do
  local k, a = KEYS[3 + i], 6 + (i - 1) * 5
  if amount ~= '0' then redis.call('HINCRBY', k, 'r:' .. ARGV[a + 2], amount) end
  keep(k, tonumber(ARGV[a + 5]))
  keys[i], cells[i] = k, ARGV[a + 2]
end
redis.call('HSET', KEYS[1], id, cjson.encode({a = amount, k = keys, c = cells, h = ARGV[6]}))
redis.call('ZADD', KEYS[2], ARGV[4], id)
keep(KEYS[1], tonumber(ARGV[5]))
keep(KEYS[2], tonumber(ARGV[5]))
return {'ok'}
