-- ledger_spend duplicated ledger_principal_ts (the same columns, rows with a
-- cost only): the one query that used it (a principal's spend since a time,
-- for priming budget counters when no aggregates are complete) is served by
-- ledger_principal_ts with the cost filtered on the rows it finds. One fewer
-- B-tree for the writer to update per ledger row; PostgreSQL's ledger
-- dropped the same index (migrations-pg/0003).
DROP INDEX IF EXISTS ledger_spend;
