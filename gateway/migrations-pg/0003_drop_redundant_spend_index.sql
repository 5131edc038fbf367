-- ledger_spend duplicated ledger_principal_ts (same columns, cost IS NOT
-- NULL only): reading spend for priming now uses spend_minutes, and the
-- remaining query is served by ledger_principal_ts. One fewer index to
-- update per ledger row the writers insert.
DROP INDEX IF EXISTS ledger_spend;
