-- In doubt stays in doubt. A row's in_doubt_platforms now survive failure, takeover and retry,
-- and in_doubt_copies counts the attempts that may have left a copy the ledger holds no
-- acknowledgement for: an attempt that failed in doubt, a failover after an in-doubt attempt, a
-- claim taken over from an attempt that died (or lost its lock) after it may have sent the batch.
-- verify explains at most 1 + in_doubt_copies copies of a published id, on its platform and its
-- in-doubt platforms; any other copy is an unexplained duplicate. A constant default: adding the
-- column rewrites no row.
ALTER TABLE ledger ADD COLUMN IF NOT EXISTS in_doubt_copies integer NOT NULL DEFAULT 0;
-- When `vcfstream verify --repair` last republished the row (its copy was lost from its platform).
ALTER TABLE ledger ADD COLUMN IF NOT EXISTS repaired_at timestamptz;

-- One row per chunk attempt (its claim token): the platforms it may publish to. A takeover of
-- the attempt's unmarked claims marks them in doubt on these platforms.
CREATE TABLE IF NOT EXISTS ledger_attempts (
    claim_token bigint      PRIMARY KEY,
    platforms   text[]      NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now()
);
