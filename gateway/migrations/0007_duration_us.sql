-- Durations with microsecond resolution: most forwarded calls on a fast
-- upstream take well under a millisecond of the gateway's time, which
-- `duration_ms` records as 0. Rows written before this column existed
-- carry their millisecond figure (× 1000).
ALTER TABLE ledger_events ADD COLUMN duration_us INTEGER;
UPDATE ledger_events SET duration_us = duration_ms * 1000;
