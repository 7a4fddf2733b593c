-- Records that broke a validation rule: kept, not published. One row per (dataset, file,
-- record, rule): re-ingesting the file adds nothing.
CREATE TABLE dead_letters (
    id            bigserial   PRIMARY KEY,
    dataset       text        NOT NULL,
    source_path   text        NOT NULL,
    source_digest text        NOT NULL,
    chunk_id      text        NOT NULL,
    line          bigint,
    rule          text        NOT NULL,
    message       text        NOT NULL,
    raw           text        NOT NULL,
    record_hash   bytea       NOT NULL,
    run_id        text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (dataset, source_digest, record_hash, rule)
);
CREATE INDEX dead_letters_dataset ON dead_letters (dataset, source_path, line);
