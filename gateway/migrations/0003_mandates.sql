-- Mandates. Only public signing keys are kept here: gateways verify with
-- them and never need the private keyring. The token itself is a bearer
-- credential and is never stored; its claims are.
CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    public_key BLOB NOT NULL CHECK (length(public_key) = 32),
    created_at INTEGER NOT NULL,
    retired_at INTEGER
);

CREATE TABLE mandates (
    jti TEXT PRIMARY KEY,
    issuer_id TEXT NOT NULL REFERENCES principals (id),
    subject_id TEXT NOT NULL REFERENCES principals (id),
    parent_jti TEXT REFERENCES mandates (jti),
    policy_id TEXT NOT NULL,
    policy_version INTEGER NOT NULL,
    -- The scope as JSON ({"resources": [...], "actions": [...]}).
    scope TEXT NOT NULL,
    iat INTEGER NOT NULL,
    nbf INTEGER NOT NULL,
    exp INTEGER NOT NULL,
    depth INTEGER NOT NULL,
    -- Ancestor jtis, root first, as a JSON array.
    chain TEXT NOT NULL,
    revoked_at INTEGER,
    revoked_by TEXT,
    revoke_reason TEXT,
    created_at TEXT NOT NULL,
    FOREIGN KEY (policy_id, policy_version) REFERENCES policies (id, version)
);
CREATE INDEX mandates_subject ON mandates (subject_id);
CREATE INDEX mandates_issuer ON mandates (issuer_id);
CREATE INDEX mandates_parent ON mandates (parent_jti);
