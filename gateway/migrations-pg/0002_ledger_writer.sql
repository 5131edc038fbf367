-- The distributed ledger writers' tables: per-minute spend aggregates and
-- the dead-letter queue.

-- What a principal's calls cost, per UTC minute (`minute_ms`, the unix
-- millisecond the minute starts) and currency: the sum of the `cost` of
-- the ledger's `call` events that have a principal and a cost, with the
-- currency '' where an event has none (as `spend_since` reads it).
-- Maintained by the statement that inserts ledger rows, from the rows it
-- inserted (never from a redelivered event whose id was already claimed),
-- so it always equals the sum over `ledger_events`. Budget windows and
-- rolling buckets start on whole minutes, so a counter primed from these
-- rows is primed exactly, from one row per minute instead of one per call.
-- Keyed principal first, then minute: reading one principal's minutes
-- since a time is one index range, whatever its currencies.
CREATE TABLE spend_minutes (
    principal_id TEXT COLLATE "C" NOT NULL,
    minute_ms BIGINT NOT NULL,
    currency TEXT COLLATE "C" NOT NULL,
    amount NUMERIC NOT NULL,
    calls BIGINT NOT NULL,
    PRIMARY KEY (principal_id, minute_ms, currency)
);

INSERT INTO spend_minutes (principal_id, minute_ms, currency, amount, calls)
SELECT principal_id, ts_ms - (((ts_ms % 60000) + 60000) % 60000), COALESCE(currency, ''),
       SUM(cost::numeric), COUNT(*)
FROM ledger_events
WHERE kind = 'call' AND cost IS NOT NULL AND principal_id IS NOT NULL
GROUP BY 1, 2, 3;

-- Messages the ledger writers could not store: undecodable, or refused by
-- the database even alone. One row per message (its topic, partition and
-- offset), so a redelivered message is recorded once. `event_id` is the
-- event's id when the message carries one that could be read. `reason` is
-- a stable code (`malformed`, `unknown_schema_version`, …, `rejected`),
-- `error` the full message of the last failure. Times are RFC 3339.
CREATE TABLE dead_letters (
    topic TEXT COLLATE "C" NOT NULL,
    kafka_partition INTEGER NOT NULL,
    kafka_offset BIGINT NOT NULL,
    event_id TEXT COLLATE "C",
    key BYTEA,
    payload BYTEA,
    reason TEXT NOT NULL,
    error TEXT NOT NULL,
    first_seen TEXT COLLATE "C" NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 1,
    retried_at TEXT,
    PRIMARY KEY (topic, kafka_partition, kafka_offset)
);
CREATE INDEX dead_letters_event ON dead_letters (event_id) WHERE event_id IS NOT NULL;
CREATE INDEX dead_letters_first_seen ON dead_letters (first_seen);
