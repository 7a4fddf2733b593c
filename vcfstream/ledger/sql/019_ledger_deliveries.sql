-- A ledger row is written once. A batch whose ids were all new when claimed (a file's first
-- ingest) and that one platform acknowledged with nothing in doubt is recorded as one row of
-- ledger_deliveries, with each message's id, partition and offset in arrays, instead of an
-- UPDATE of each of its ledger rows (which stay 'claimed' and name their batch). Every other
-- delivery (in doubt, taken over, repaired, a batch with ids that existed) still updates its
-- rows, which then leave 'claimed'.
--
-- A delivery is inserted on the claiming attempt's connection while it holds its claim token's
-- lock, so a takeover (which needs that lock) always sees it and leaves its rows alone; a row a
-- takeover takes leaves its batch (batch = NULL).
ALTER TABLE ledger ADD COLUMN IF NOT EXISTS batch bigint;
CREATE SEQUENCE IF NOT EXISTS ledger_batches;

CREATE TABLE IF NOT EXISTS ledger_deliveries (
    batch         bigint      PRIMARY KEY,
    dataset       text        NOT NULL,
    source_digest text        NOT NULL,
    claim_token   bigint      NOT NULL,
    platform      text        NOT NULL,
    message_ids   uuid[]      NOT NULL,
    partitions    integer[]   NOT NULL,  -- of message_ids[i]
    offsets       bigint[]    NOT NULL,
    published_at  timestamptz NOT NULL DEFAULT now()
);
-- Random ids and growing offsets hardly compress: stored out of line as they are (a 10k-message
-- delivery is inserted in 7 ms instead of 16).
ALTER TABLE ledger_deliveries ALTER message_ids SET STORAGE EXTERNAL, ALTER partitions SET STORAGE EXTERNAL,
    ALTER offsets SET STORAGE EXTERNAL;

-- The ledger as readers see it: a row's state, platform and publication time, its own marks
-- first, else its batch's delivery. (The delivery is found by its primary key; its arrays are
-- not read.)
CREATE OR REPLACE VIEW ledger_state AS
SELECT l.message_id, l.dataset, l.variant_key, l.source_digest, l.chunk_id, l.run_id, l.claim_token,
       CASE WHEN d.batch IS NULL THEN l.state ELSE 'published' END AS state,
       coalesce(l.platform, d.platform) AS platform,
       l.in_doubt_platforms, l.in_doubt_copies, l.error, l.claimed_at,
       coalesce(l.published_at, d.published_at) AS published_at, l.repaired_at
FROM ledger l LEFT JOIN ledger_deliveries d ON l.state = 'claimed' AND d.batch = l.batch;

-- Where each published message went: the partition and offset of rows marked one by one, and
-- of every message of a delivered batch whose row is still in that batch (each batch's arrays
-- unnested once; its rows found by the ledger's unique key).
CREATE OR REPLACE VIEW ledger_offsets AS
SELECT l.dataset, l.source_digest, l.message_id, l.platform, l."partition", l."offset"
FROM ledger l WHERE l.state IN ('published', 'in_doubt')
UNION ALL
SELECT d.dataset, d.source_digest, m.message_id, d.platform, m."partition", m."offset"
FROM ledger_deliveries d, unnest(d.message_ids, d.partitions, d.offsets) m(message_id, "partition", "offset")
WHERE EXISTS (SELECT 1 FROM ledger l
              WHERE hashtextextended(l.dataset || l.source_digest, 0) = hashtextextended(d.dataset || d.source_digest, 0)
                AND l.message_id = m.message_id AND l.dataset = d.dataset AND l.source_digest = d.source_digest
                AND l.state = 'claimed' AND l.batch = d.batch);

-- Rows are no longer updated as a rule: pages filled again (006 left room for every row's
-- published version). Existing pages keep their fill.
ALTER TABLE ledger SET (fillfactor = 100);
