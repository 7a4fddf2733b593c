-- The dedup ledger: one row per message id (dataset x variant key x source digest).
-- A row is claimed by a chunk attempt (claim_token, held as a session advisory lock while the
-- attempt lives), then published (platform, partition, offset) or failed. A claim whose
-- token is no longer locked belongs to a dead attempt and may be taken over.
CREATE TABLE ledger (
    message_id         uuid PRIMARY KEY,
    dataset            text        NOT NULL,
    variant_key        text        NOT NULL,
    source_digest      text        NOT NULL,
    chunk_id           text        NOT NULL,
    run_id             text        NOT NULL,
    claim_token        bigint      NOT NULL,
    state              text        NOT NULL
        CHECK (state IN ('claimed', 'published', 'in_doubt', 'failed')),
    platform           text,
    "partition"        integer,
    "offset"           bigint,
    in_doubt_platforms text[],
    error              text,
    claimed_at         timestamptz NOT NULL DEFAULT now(),
    published_at       timestamptz
);
CREATE INDEX ledger_dataset_state ON ledger (dataset, state);
CREATE INDEX ledger_dataset_source ON ledger (dataset, source_digest);

-- Per chunk: which attempt ran it, how it ended, and why it failed.
CREATE TABLE ledger_chunks (
    dataset       text        NOT NULL,
    source_digest text        NOT NULL,
    chunk_id      text        NOT NULL,
    source_path   text        NOT NULL,
    run_id        text        NOT NULL,
    state         text        NOT NULL CHECK (state IN ('running', 'completed', 'failed')),
    summary       jsonb,
    error         text,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dataset, source_digest, chunk_id)
);
