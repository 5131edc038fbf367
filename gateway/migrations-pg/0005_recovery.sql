-- Ledger snapshots and the state of a replay (see
-- gateway/src/store/recovery.rs and docs/ledger-integrity.md). The derived
-- state itself is `spend_minutes` (0002).

-- A snapshot: the spend aggregates as they are at a checkpoint of the
-- Merkle log (the tree of `tree_size` leaves, signed in `checkpoint`),
-- computed from the sealed events that verified. `status` is `building`
-- until every row is in, then `complete`; `digest` is the SHA-256 of the
-- rows' canonical form (see recovery.rs), and `signature` a note signed
-- with the ledger key over the id, tree size and digest.
CREATE TABLE ledger_snapshots (
    id TEXT COLLATE "C" PRIMARY KEY,
    created_at TEXT COLLATE "C" NOT NULL,
    status TEXT NOT NULL,
    tree_size BIGINT NOT NULL,
    batch_id TEXT,
    checkpoint TEXT,
    digest TEXT,
    signature TEXT,
    calls BIGINT NOT NULL DEFAULT 0,
    principals BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE snapshot_spend (
    snapshot_id TEXT COLLATE "C" NOT NULL REFERENCES ledger_snapshots (id) ON DELETE CASCADE,
    principal_id TEXT COLLATE "C" NOT NULL,
    minute_ms BIGINT NOT NULL,
    currency TEXT COLLATE "C" NOT NULL,
    amount NUMERIC NOT NULL,
    calls BIGINT NOT NULL,
    PRIMARY KEY (snapshot_id, principal_id, minute_ms, currency)
);

-- The one replay (or restore) of the derived state: which snapshot, who
-- runs it, how far it got. `complete` is false while `spend_minutes`
-- holds a restored snapshot without the events after it: counters are
-- then primed from the ledger's rows instead.
CREATE TABLE replay_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    snapshot_id TEXT,
    owner TEXT NOT NULL,
    status TEXT NOT NULL,
    complete BOOLEAN NOT NULL,
    position BIGINT NOT NULL,
    target BIGINT NOT NULL,
    events BIGINT NOT NULL,
    calls BIGINT NOT NULL,
    unverified BIGINT NOT NULL,
    started_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    finished_at TEXT,
    error TEXT
);

-- Where a replay builds the aggregates before they replace spend_minutes.
CREATE TABLE replay_spend (
    principal_id TEXT COLLATE "C" NOT NULL,
    minute_ms BIGINT NOT NULL,
    currency TEXT COLLATE "C" NOT NULL,
    amount NUMERIC NOT NULL,
    calls BIGINT NOT NULL,
    PRIMARY KEY (principal_id, minute_ms, currency)
);
