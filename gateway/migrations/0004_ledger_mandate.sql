-- The mandate a call went ahead under (or was refused for), and the
-- mandate an authority event is about: an auditor follows a mandate from
-- its issue through every call made under it to its revocation.
ALTER TABLE ledger_events ADD COLUMN mandate_id TEXT;
CREATE INDEX ledger_mandate ON ledger_events (mandate_id) WHERE mandate_id IS NOT NULL;
