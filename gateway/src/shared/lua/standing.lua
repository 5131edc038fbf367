-- Spent and reserved in the counted cells of one counter.
-- KEYS: holds, expiry, counter. ARGV: now (ms), first cell, last cell.
reap(KEYS[1], KEYS[2], ARGV[1])
local s, r = sums(KEYS[3], tonumber(ARGV[2]), tonumber(ARGV[3]), false)
return {string.format('%d', s), string.format('%d', r)}
