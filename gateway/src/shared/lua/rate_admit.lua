-- Admits a request if every limit holds over the sliding minute, recording
-- it in the bucket of its second; a refusal records nothing.
-- KEYS: the principal's buckets (hash: `q:<second>` requests,
--       `t:<second>` tokens).
-- ARGV: now (unix second), estimated tokens, requests per minute or '',
--       tokens per minute or '', ttl of the key (ms).
-- Returns {'ok', second} or {'refused', field, value, ...} (the buckets
-- in the window, for the caller to say how long to wait).
local now, estimate = tonumber(ARGV[1]), tonumber(ARGV[2])
local oldest = now - 60
local all = redis.call('HGETALL', KEYS[1])
local live, requests, tokens, newest = {}, 0, 0, nil
for i = 1, #all, 2 do
  local f, v = all[i], tonumber(all[i + 1])
  local second = tonumber(string.sub(f, 3))
  if second < oldest then
    redis.call('HDEL', KEYS[1], f)
  else
    if string.sub(f, 1, 2) == 'q:' then requests = requests + v else tokens = tokens + v end
    if newest == nil or second > newest then newest = second end
    live[#live + 1] = f
    live[#live + 1] = all[i + 1]
  end
end
if (ARGV[3] ~= '' and requests + 1 > tonumber(ARGV[3]))
    or (ARGV[4] ~= '' and tokens + estimate > tonumber(ARGV[4])) then
  table.insert(live, 1, 'refused')
  return live
end
-- A replica whose clock runs behind joins the newest bucket instead.
local second = now
if newest ~= nil and newest > now then second = newest end
redis.call('HINCRBY', KEYS[1], 'q:' .. second, 1)
if ARGV[2] ~= '0' then redis.call('HINCRBY', KEYS[1], 't:' .. second, ARGV[2]) end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {'ok', second}
