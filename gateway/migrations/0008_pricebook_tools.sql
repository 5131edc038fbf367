-- Tools priced per use (kind 'tool', the amount in per_request), and a
-- model's context window: the bound on the input of a request whose
-- input the body does not carry. SQLite cannot change a CHECK constraint,
-- so the table is rebuilt with the same rows.
CREATE TABLE prices_new (
    provider TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('model', 'resource', 'tool')),
    name TEXT NOT NULL,
    currency TEXT NOT NULL,
    input TEXT,
    output TEXT,
    cached_input TEXT,
    cache_write TEXT,
    per_request TEXT,
    context_window INTEGER CHECK (context_window IS NULL OR context_window > 0),
    source TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (provider, kind, name)
);
INSERT INTO prices_new (provider, kind, name, currency, input, output, cached_input,
                        cache_write, per_request, source, updated_at)
    SELECT provider, kind, name, currency, input, output, cached_input,
           cache_write, per_request, source, updated_at
    FROM prices;
DROP TABLE prices;
ALTER TABLE prices_new RENAME TO prices;
