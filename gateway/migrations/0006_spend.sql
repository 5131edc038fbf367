-- What a call cost, in the currency of its price, and on what basis
-- (`usage`: the provider's reported usage; `reservation`: usage could not
-- be read, the worst case reserved before forwarding was charged;
-- `request`: a per-request price; `free`: nothing to bill). Amounts are
-- exact decimals kept as text. Budget counters are primed from these rows.
ALTER TABLE ledger_events ADD COLUMN cost TEXT;
ALTER TABLE ledger_events ADD COLUMN currency TEXT;
ALTER TABLE ledger_events ADD COLUMN cost_basis TEXT;
ALTER TABLE ledger_events ADD COLUMN reserved TEXT;
CREATE INDEX ledger_spend ON ledger_events (principal_id, ts_ms) WHERE cost IS NOT NULL;
