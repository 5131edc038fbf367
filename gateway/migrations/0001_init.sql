-- Caracal embedded store: the system of record of one workspace.

-- One row; bumped in the same transaction as every change to the
-- enforcement state, so a running gateway notices and rebuilds its snapshot.
CREATE TABLE state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO state (id, version) VALUES (1, 1);

CREATE TABLE principals (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('agent', 'user', 'service')),
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    token_hash BLOB NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);
CREATE UNIQUE INDEX principals_name ON principals (name);

CREATE TABLE providers (
    name TEXT PRIMARY KEY,
    definition TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE allowlists (
    id TEXT PRIMARY KEY,
    principal_id TEXT NOT NULL REFERENCES principals (id) ON DELETE CASCADE,
    pattern TEXT NOT NULL,
    pattern_type TEXT NOT NULL CHECK (pattern_type IN ('regex', 'glob')),
    created_at TEXT NOT NULL
);
CREATE INDEX allowlists_principal ON allowlists (principal_id);

-- Append-only record of every call and denial.
CREATE TABLE ledger_events (
    id TEXT PRIMARY KEY,
    ts TEXT NOT NULL,
    ts_ms INTEGER NOT NULL,
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
    status INTEGER,
    request_bytes INTEGER NOT NULL DEFAULT 0,
    response_bytes INTEGER NOT NULL DEFAULT 0,
    duration_ms INTEGER NOT NULL DEFAULT 0,
    model TEXT,
    input_tokens INTEGER,
    output_tokens INTEGER,
    cached_input_tokens INTEGER,
    usage TEXT,
    detail TEXT
);
CREATE INDEX ledger_principal_ts ON ledger_events (principal_id, ts_ms);
CREATE INDEX ledger_ts ON ledger_events (ts_ms);
