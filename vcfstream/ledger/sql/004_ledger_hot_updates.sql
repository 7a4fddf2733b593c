-- Every ledger row is written twice: claimed, then marked published. Both got cheaper here.
-- Marking: with no index on the columns it changes (state, platform, partition, offset, ...)
-- and free space left in each page, PostgreSQL does it as a heap-only (HOT) update, writing no
-- index entries. Claiming: the secondary index keys on dataset alone (every query on ledger
-- rows filters by dataset; by source, ledger_chunks answers), not dataset + a 64-char digest.
DROP INDEX IF EXISTS ledger_dataset_state;
DROP INDEX IF EXISTS ledger_dataset_source;
CREATE INDEX IF NOT EXISTS ledger_dataset ON ledger (dataset);
ALTER TABLE ledger SET (fillfactor = 70);
