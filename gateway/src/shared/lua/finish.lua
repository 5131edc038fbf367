-- Settles (with an actual spend) or releases (with '') a reservation,
-- once: a finished id is remembered for a while and changes nothing again.
-- KEYS: holds, expiry, finished, then the counters of the caller's hold.
-- ARGV: now (ms), id, actual spend or '', memory (ms), most ids
--       remembered, ttl of the counters (ms), then the caller's cells.
-- Returns 1 when this call finished the reservation, 0 when it was already.
-- The principal's other expired holds are not reaped here: reserve and
-- standing, which count them, reap first; this hold, expired or not, is
-- taken back below either way.
local now, id, actual = ARGV[1], ARGV[2], ARGV[3]
if redis.call('ZADD', KEYS[3], 'NX', now, id) == 0 then return 0 end
local memory = tonumber(ARGV[4])
-- Forgetting is trimmed on about one finish in 16 (the id's last character
-- is random): the set may briefly hold a few ids more, or older, than its
-- bounds, which only remembers more.
if string.byte(id, -1) % 16 == 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. string.format('%d', tonumber(now) - memory))
  redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -(tonumber(ARGV[5]) + 1))
end
keep(KEYS[3], memory * 2)
-- The hold recorded under this id wins over the caller's copy; a hold
-- that expired is charged in the caller's cells.
local keys, cells = {}, {}
local rec = redis.call('HGET', KEYS[1], id)
if rec then
  local h = cjson.decode(rec)
  for i, k in ipairs(h.k) do take(k, 'r:' .. h.c[i], h.a) end
  redis.call('HDEL', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
  keys, cells = h.k, h.c
else
  for i = 4, #KEYS do
    keys[i - 3], cells[i - 3] = KEYS[i], ARGV[6 + i - 3]
  end
end
if actual ~= '' and actual ~= '0' then
  for i, k in ipairs(keys) do
    redis.call('HINCRBY', k, 's:' .. cells[i], actual)
    keep(k, tonumber(ARGV[6]))
  end
end
return 1
