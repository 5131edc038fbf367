-- Each pending event carries its Merkle leaf, computed by the writer that
-- inserts the row (from the event it inserts, in the same statement), so
-- sealing reads the queue alone instead of every queued row back, and a row
-- changed or deleted between its insert and its seal is sealed as it was
-- inserted (and then fails verification). Events already queued keep a
-- NULL leaf and are hashed from their rows when they are sealed.
ALTER TABLE ledger_pending ADD COLUMN leaf BYTEA;
