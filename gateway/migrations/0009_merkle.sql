-- The ledger's Merkle log (see gateway/src/store/merkle.rs and
-- docs/ledger-integrity.md).

-- Events not sealed yet: every inserted ledger row, queued by the trigger
-- below in the transaction that inserts it (an insert that conflicts
-- inserts nothing and queues nothing). Sealing takes them oldest first.
-- One B-tree, in sealing order: it is written once per ledger row.
CREATE TABLE ledger_pending (
    ts_ms INTEGER NOT NULL,
    id TEXT NOT NULL,
    PRIMARY KEY (ts_ms, id)
) WITHOUT ROWID;

CREATE TRIGGER ledger_events_pending AFTER INSERT ON ledger_events
BEGIN
    INSERT INTO ledger_pending (id, ts_ms) VALUES (NEW.id, NEW.ts_ms);
END;

-- The events already in the ledger wait for the first seal.
INSERT INTO ledger_pending (id, ts_ms) SELECT id, ts_ms FROM ledger_events;

-- The ledger order: leaf `idx` of the tree is event `event_id`.
CREATE TABLE merkle_leaves (
    idx INTEGER PRIMARY KEY NOT NULL,
    event_id TEXT NOT NULL UNIQUE,
    ts_ms INTEGER NOT NULL
);

-- The tree's stored hashes (every complete subtree, at the dense index of
-- Crosby and Wallach, as Go's sumdb/tlog numbers them).
CREATE TABLE merkle_hashes (
    idx INTEGER PRIMARY KEY NOT NULL,
    hash BLOB NOT NULL
);

-- Sealed batches: leaves start_index..end_index, and the signed checkpoint
-- (C2SP tlog-checkpoint note) of the tree of end_index leaves.
CREATE TABLE merkle_batches (
    number INTEGER PRIMARY KEY NOT NULL,
    id TEXT NOT NULL UNIQUE,
    start_index INTEGER NOT NULL,
    end_index INTEGER NOT NULL UNIQUE,
    root BLOB NOT NULL,
    checkpoint TEXT NOT NULL,
    first_ts_ms INTEGER NOT NULL,
    last_ts_ms INTEGER NOT NULL,
    sealed_at TEXT NOT NULL
);
CREATE INDEX merkle_batches_time ON merkle_batches (first_ts_ms, last_ts_ms);
