-- The ledger's unique key leads with a hash of dataset and source digest, then the message id.
-- A message id hashes (dataset, variant key, source digest), so only rows of one file in one
-- dataset ever share an id. Keyed by the id alone, every claim inserted at random places in one
-- index over all the rows ever claimed: claims slowed as the ledger grew, and after each
-- checkpoint nearly every page of that index went whole into the WAL. Keyed this way, the rows
-- of one ingest sit in one range of the index, which stays in cache while it runs.
-- Queries that look rows up by id name dataset and source in the same form (vcfstream/ledger/claims.py).
CREATE UNIQUE INDEX IF NOT EXISTS ledger_source_message
    ON ledger (hashtextextended(dataset || source_digest, 0), message_id);
ALTER TABLE ledger DROP CONSTRAINT IF EXISTS ledger_pkey;
-- Statistics on the new key's expression now, not at the next autovacuum: without them the
-- planner takes a lookup by (dataset, source, id) for a scan of the whole ingest's rows.
ANALYZE ledger;
