-- Authority (and, later, budget) policies. Every change is a new version;
-- the previous versions stay, with who changed the policy and why.
CREATE TABLE policies (
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    principal_id TEXT NOT NULL REFERENCES principals (id),
    definition TEXT NOT NULL,
    active INTEGER NOT NULL CHECK (active IN (0, 1)),
    changed_by TEXT NOT NULL,
    change_reason TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (id, version)
);
CREATE INDEX policies_principal ON policies (principal_id);
