-- Derived state and its recovery: the per-minute spend aggregates budget
-- counters are primed from, ledger snapshots, and the state of a replay
-- (see gateway/src/store/recovery.rs and docs/ledger-integrity.md).

-- What a principal's calls cost, per UTC minute (`minute_ms`, the unix
-- millisecond the minute starts) and currency ('' where a call has none):
-- the exact sum (a decimal as text) of the `cost` of the ledger's `call`
-- events that have a principal and a cost, and how many there were.
-- Maintained by the statement that inserts ledger rows, from the rows it
-- inserted. Filled from the ledger the first time the store opens after
-- this migration (SQLite cannot sum decimals exactly; the store does).
CREATE TABLE spend_minutes (
    principal_id TEXT NOT NULL,
    minute_ms INTEGER NOT NULL,
    currency TEXT NOT NULL,
    amount TEXT NOT NULL,
    calls INTEGER NOT NULL,
    PRIMARY KEY (principal_id, minute_ms, currency)
) WITHOUT ROWID;

-- A snapshot: the spend aggregates as they are at a checkpoint of the
-- Merkle log (the tree of `tree_size` leaves, signed in `checkpoint`),
-- computed from the sealed events that verified. `status` is `building`
-- until every row is in, then `complete`; `digest` is the SHA-256 of the
-- rows' canonical form (see recovery.rs), and `signature` a note signed
-- with the ledger key over the id, tree size and digest.
CREATE TABLE ledger_snapshots (
    id TEXT PRIMARY KEY NOT NULL,
    created_at TEXT NOT NULL,
    status TEXT NOT NULL,
    tree_size INTEGER NOT NULL,
    batch_id TEXT,
    checkpoint TEXT,
    digest TEXT,
    signature TEXT,
    calls INTEGER NOT NULL DEFAULT 0,
    principals INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE snapshot_spend (
    snapshot_id TEXT NOT NULL REFERENCES ledger_snapshots (id) ON DELETE CASCADE,
    principal_id TEXT NOT NULL,
    minute_ms INTEGER NOT NULL,
    currency TEXT NOT NULL,
    amount TEXT NOT NULL,
    calls INTEGER NOT NULL,
    PRIMARY KEY (snapshot_id, principal_id, minute_ms, currency)
) WITHOUT ROWID;

-- The one replay (or restore) of the derived state: which snapshot, who
-- runs it, how far it got. `complete` is 0 while `spend_minutes` holds a
-- restored snapshot without the events after it: counters are then
-- primed from the ledger's rows instead.
CREATE TABLE replay_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    snapshot_id TEXT,
    owner TEXT NOT NULL,
    status TEXT NOT NULL,
    complete INTEGER NOT NULL,
    position INTEGER NOT NULL,
    target INTEGER NOT NULL,
    events INTEGER NOT NULL,
    calls INTEGER NOT NULL,
    unverified INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    finished_at TEXT,
    error TEXT
);

-- Where a replay builds the aggregates before they replace spend_minutes.
CREATE TABLE replay_spend (
    principal_id TEXT NOT NULL,
    minute_ms INTEGER NOT NULL,
    currency TEXT NOT NULL,
    amount TEXT NOT NULL,
    calls INTEGER NOT NULL,
    PRIMARY KEY (principal_id, minute_ms, currency)
) WITHOUT ROWID;

-- The ledger written before this migration is summed when the store opens.
INSERT INTO replay_state (id, snapshot_id, owner, status, complete, position, target, events,
                          calls, unverified, started_at, updated_at)
VALUES (1, NULL, 'migration', 'backfill', 0, 0, 0, 0, 0, 0, '', '');

-- Costs are read per principal and time through ledger_principal_ts (and
-- summed from spend_minutes for priming): the partial index 0006 made is
-- redundant, and every costed insert paid for it.
DROP INDEX IF EXISTS ledger_spend;
