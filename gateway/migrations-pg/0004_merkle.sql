-- The ledger's Merkle log (see gateway/src/store/merkle.rs and
-- docs/ledger-integrity.md).

-- Events not sealed yet: every ledger row the insert statement wrote,
-- queued by that statement (never a redelivered event whose id was
-- already claimed). Sealing takes them oldest first.
-- One B-tree, in sealing order: it is written once per ledger row, on the
-- ledger writers' hot path.
CREATE TABLE ledger_pending (
    ts_ms BIGINT NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (ts_ms, id)
);

-- The events already in the ledger wait for the first seal.
INSERT INTO ledger_pending (id, ts_ms) SELECT id, ts_ms FROM ledger_events;

-- The ledger order: leaf `idx` of the tree is event `event_id` (whose row
-- is in the partition of `ts_ms`).
CREATE TABLE merkle_leaves (
    idx BIGINT PRIMARY KEY,
    event_id TEXT COLLATE "C" NOT NULL UNIQUE,
    ts_ms BIGINT NOT NULL
);

-- The tree's stored hashes (every complete subtree, at the dense index of
-- Crosby and Wallach, as Go's sumdb/tlog numbers them).
CREATE TABLE merkle_hashes (
    idx BIGINT PRIMARY KEY,
    hash BYTEA NOT NULL
);

-- Sealed batches: leaves start_index..end_index, and the signed checkpoint
-- (C2SP tlog-checkpoint note) of the tree of end_index leaves.
CREATE TABLE merkle_batches (
    number BIGINT PRIMARY KEY,
    id TEXT COLLATE "C" NOT NULL UNIQUE,
    start_index BIGINT NOT NULL,
    end_index BIGINT NOT NULL UNIQUE,
    root BYTEA NOT NULL,
    checkpoint TEXT NOT NULL,
    first_ts_ms BIGINT NOT NULL,
    last_ts_ms BIGINT NOT NULL,
    sealed_at TEXT COLLATE "C" NOT NULL
);
CREATE INDEX merkle_batches_time ON merkle_batches (first_ts_ms, last_ts_ms);
