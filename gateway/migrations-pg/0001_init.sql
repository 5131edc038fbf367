-- Caracal on PostgreSQL: the same model as the embedded store
-- (migrations/0001..0008), written at once in PostgreSQL's types. Same
-- tables and columns; integers are BIGINT, blobs BYTEA, flags BOOLEAN.
-- Times stay as the model keeps them: RFC 3339 text (jiff's, to the
-- nanosecond, which TIMESTAMPTZ would round to microseconds) or unix
-- seconds and milliseconds as BIGINT. Keys and sort columns are
-- COLLATE "C" so that ordering is by code point, as in SQLite, whatever
-- the database's locale.

-- One row; bumped in the same transaction as every change to the
-- enforcement state. Its row lock serialises those changes.
CREATE TABLE state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO state (id, version) VALUES (1, 1);

CREATE TABLE principals (
    id TEXT COLLATE "C" PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('agent', 'user', 'service')),
    name TEXT COLLATE "C" NOT NULL,
    email TEXT NOT NULL,
    token_hash BYTEA NOT NULL UNIQUE,
    created_at TEXT COLLATE "C" NOT NULL
);
CREATE UNIQUE INDEX principals_name ON principals (name);

CREATE TABLE providers (
    name TEXT COLLATE "C" PRIMARY KEY,
    definition TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE allowlists (
    id TEXT COLLATE "C" PRIMARY KEY,
    principal_id TEXT COLLATE "C" NOT NULL REFERENCES principals (id) ON DELETE CASCADE,
    pattern TEXT NOT NULL,
    pattern_type TEXT NOT NULL CHECK (pattern_type IN ('regex', 'glob')),
    created_at TEXT COLLATE "C" NOT NULL
);
CREATE INDEX allowlists_principal ON allowlists (principal_id);

-- Authority (and budget) policies. Every change is a new version.
CREATE TABLE policies (
    id TEXT COLLATE "C" NOT NULL,
    version BIGINT NOT NULL,
    principal_id TEXT COLLATE "C" NOT NULL REFERENCES principals (id),
    definition TEXT NOT NULL,
    active BOOLEAN NOT NULL,
    changed_by TEXT NOT NULL,
    change_reason TEXT NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (id, version)
);
CREATE INDEX policies_principal ON policies (principal_id);

-- Mandates and the public halves of their signing keys (times in unix
-- seconds). The token is never stored; its claims are.
CREATE TABLE signing_keys (
    kid TEXT COLLATE "C" PRIMARY KEY,
    public_key BYTEA NOT NULL CHECK (octet_length(public_key) = 32),
    created_at BIGINT NOT NULL,
    retired_at BIGINT
);

CREATE TABLE mandates (
    jti TEXT COLLATE "C" PRIMARY KEY,
    issuer_id TEXT COLLATE "C" NOT NULL REFERENCES principals (id),
    subject_id TEXT COLLATE "C" NOT NULL REFERENCES principals (id),
    parent_jti TEXT COLLATE "C" REFERENCES mandates (jti),
    policy_id TEXT COLLATE "C" NOT NULL,
    policy_version BIGINT NOT NULL,
    -- The scope as JSON ({"resources": [...], "actions": [...]}), kept as
    -- the text written.
    scope TEXT NOT NULL,
    iat BIGINT NOT NULL,
    nbf BIGINT NOT NULL,
    exp BIGINT NOT NULL,
    depth BIGINT NOT NULL,
    -- Ancestor jtis, root first, as a JSON array.
    chain TEXT NOT NULL,
    revoked_at BIGINT,
    revoked_by TEXT,
    revoke_reason TEXT,
    created_at TEXT NOT NULL,
    FOREIGN KEY (policy_id, policy_version) REFERENCES policies (id, version)
);
CREATE INDEX mandates_subject ON mandates (subject_id);
CREATE INDEX mandates_issuer ON mandates (issuer_id);
CREATE INDEX mandates_parent ON mandates (parent_jti);
CREATE INDEX mandates_exp ON mandates (exp);

-- The pricebook's stored rows. Amounts are exact decimal text.
CREATE TABLE prices (
    provider TEXT COLLATE "C" NOT NULL,
    kind TEXT COLLATE "C" NOT NULL CHECK (kind IN ('model', 'resource', 'tool')),
    name TEXT COLLATE "C" NOT NULL,
    currency TEXT NOT NULL,
    input TEXT,
    output TEXT,
    cached_input TEXT,
    cache_write TEXT,
    per_request TEXT,
    context_window BIGINT CHECK (context_window IS NULL OR context_window > 0),
    source TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (provider, kind, name)
);

-- Append-only record of every call, denial and authority change,
-- partitioned by month of `ts_ms` (unix milliseconds, UTC months). The
-- store creates a month's partition before it writes the month's first
-- rows; the DEFAULT partition catches anything else (times outside years
-- 1970..9999, or a month whose partition a concurrent writer has not yet
-- made), and creating a month's partition later moves its rows out of it.
--
-- The primary key of a partitioned table must contain the partition key,
-- so (ts_ms, id) is unique only within a month. An event id is unique
-- across the whole ledger through `ledger_event_ids` below. The key
-- (ts_ms, id) also serves `ORDER BY ts_ms, id` and time ranges.
CREATE TABLE ledger_events (
    id TEXT COLLATE "C" NOT NULL,
    ts TEXT NOT NULL,
    ts_ms BIGINT NOT NULL,
    kind TEXT NOT NULL,
    principal_id TEXT,
    mode TEXT NOT NULL,
    provider TEXT,
    resource TEXT,
    action TEXT,
    method TEXT,
    url TEXT,
    decision TEXT NOT NULL CHECK (decision IN ('allow', 'deny', 'error')),
    code TEXT NOT NULL,
    status BIGINT,
    request_bytes BIGINT NOT NULL DEFAULT 0,
    response_bytes BIGINT NOT NULL DEFAULT 0,
    duration_ms BIGINT NOT NULL DEFAULT 0,
    model TEXT,
    input_tokens BIGINT,
    output_tokens BIGINT,
    cached_input_tokens BIGINT,
    usage TEXT,
    detail TEXT,
    mandate_id TEXT,
    -- What a call cost, in `currency`, exact decimal text, and on what
    -- basis; the worst case reserved before forwarding.
    cost TEXT,
    currency TEXT,
    cost_basis TEXT,
    reserved TEXT,
    duration_us BIGINT,
    PRIMARY KEY (ts_ms, id)
) PARTITION BY RANGE (ts_ms);
CREATE TABLE ledger_events_default PARTITION OF ledger_events DEFAULT;

-- The queries `ledger query` makes: by principal over time, by mandate,
-- by kind over time (time alone uses the primary key); and the spend of
-- a principal (`spend_since`), which primes budget counters.
CREATE INDEX ledger_principal_ts ON ledger_events (principal_id, ts_ms);
CREATE INDEX ledger_mandate ON ledger_events (mandate_id, ts_ms) WHERE mandate_id IS NOT NULL;
CREATE INDEX ledger_kind_ts ON ledger_events (kind, ts_ms);
CREATE INDEX ledger_spend ON ledger_events (principal_id, ts_ms) WHERE cost IS NOT NULL;

-- Every event id ever written, with the month it went to. An insert
-- claims its ids here first (ON CONFLICT DO NOTHING) and writes to
-- `ledger_events` only the rows whose id it claimed, in one statement:
-- the unique index makes a concurrent writer of the same id wait and
-- then skip it, so a retried batch never double counts, whatever month
-- its rows carry. Dropping a month's partition should delete its ids
-- (by `ts_ms`) in the same transaction.
CREATE TABLE ledger_event_ids (
    id TEXT COLLATE "C" PRIMARY KEY,
    ts_ms BIGINT NOT NULL
);
