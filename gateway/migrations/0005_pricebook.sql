-- The pricebook: prices operators set or imported, overriding the
-- built-in list prices of the provider templates. Amounts are exact
-- decimal text. A model row has input and output (cached_input and
-- cache_write NULL = the input price); a resource row has per_request.
CREATE TABLE prices (
    provider TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('model', 'resource')),
    name TEXT NOT NULL,
    currency TEXT NOT NULL,
    input TEXT,
    output TEXT,
    cached_input TEXT,
    cache_write TEXT,
    per_request TEXT,
    source TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (provider, kind, name)
);
