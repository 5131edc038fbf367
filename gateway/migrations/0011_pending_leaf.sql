-- Each pending event carries its Merkle leaf, computed by the writer that
-- inserts the row (from the event it inserts, in the same transaction), so
-- sealing reads the queue alone instead of every queued row back, and a row
-- changed between its insert and its seal is sealed as it was inserted (and
-- then fails verification) rather than as it was changed.
--
-- The writer now queues the events it inserted itself, with their leaves:
-- the trigger goes. Events already queued keep a NULL leaf and are hashed
-- from their rows when they are sealed.
ALTER TABLE ledger_pending ADD COLUMN leaf BLOB;
DROP TRIGGER ledger_events_pending;
