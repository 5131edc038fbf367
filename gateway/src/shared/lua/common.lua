-- Shared by the counter scripts. Money is an integer number of
-- micro-units, passed and stored as decimal strings; HINCRBY keeps it
-- exact. A counter is a hash: field `s:<cell>` is spent, `r:<cell>` is
-- reserved, `primed` says it holds the ledger's spend. A principal's holds
-- are a hash (id -> record) and a sorted set (id by expiry, ms).

-- Takes `amount` back from field `f` of counter `k`, never below zero (a
-- field left at zero stays until its cell leaves the window: one command
-- fewer on every call).
local function take(k, f, amount)
  if amount == '0' then return end
  local left = redis.call('HINCRBY', k, f, '-' .. amount)
  if left < 0 then redis.call('HDEL', k, f) end
end

-- Releases every hold of the principal that expired at `now`.
local function reap(holds, expiry, now)
  local due = redis.call('ZRANGEBYSCORE', expiry, '-inf', now)
  for _, id in ipairs(due) do
    local rec = redis.call('HGET', holds, id)
    if rec then
      local h = cjson.decode(rec)
      for i, k in ipairs(h.k) do take(k, 'r:' .. h.c[i], h.a) end
      redis.call('HDEL', holds, id)
    end
    redis.call('ZREM', expiry, id)
  end
end

-- Spent and reserved in the cells lo..hi of counter `k`, and whether it
-- is primed (holds the ledger's spend); with `prune`, the fields of cells
-- before `lo` (which can no longer count) are deleted.
local function sums(k, lo, hi, prune)
  local s, r, primed = 0, 0, false
  local all = redis.call('HGETALL', k)
  for i = 1, #all, 2 do
    local f = all[i]
    local kind = string.sub(f, 1, 2)
    if f == 'primed' then
      primed = true
    elseif kind == 's:' or kind == 'r:' then
      local cell = tonumber(string.sub(f, 3))
      if cell < lo then
        if prune then redis.call('HDEL', k, f) end
      elseif cell <= hi then
        if kind == 's:' then s = s + tonumber(all[i + 1]) else r = r + tonumber(all[i + 1]) end
      end
    end
  end
  return s, r, primed
end

-- Makes key `k` live at least `ttl` more milliseconds, never shortening
-- its life. A key that must be pushed out is pushed a little further (an
-- eighth, at most a minute), so that most calls only read its expiry.
local function keep(k, ttl)
  if redis.call('PTTL', k) < ttl then
    redis.call('PEXPIRE', k, ttl + math.min(math.floor(ttl / 8), 60000))
  end
end

