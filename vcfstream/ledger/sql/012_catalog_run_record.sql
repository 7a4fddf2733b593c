-- The run record: every ingest_vcf run writes it (vcfstream/stores/runs.py), whichever stores it
-- writes, so "which files did last night's cohort load, when, how many variants, which failed"
-- is one query:
-- * ingestion_runs: the flow run that started a run (a cohort's ingest_cohort run), and a
--   (dataset, started_at) index for "the runs of a dataset since ...";
-- * run_files: each file of each run once, with its outcome and counts; a file that could not
--   be read has no source_files row (no digest), so it is named by its path;
-- * chunks: failed-over batches, published counts per platform and the failure's text.

ALTER TABLE catalog.ingestion_runs ADD COLUMN parent_flow_run_id text;
COMMENT ON COLUMN catalog.ingestion_runs.parent_flow_run_id IS
    'the flow run this run is a subflow or deployment run of (an ingest_cohort run), if any';
CREATE INDEX ingestion_runs_dataset_started ON catalog.ingestion_runs (dataset, started_at);
CREATE INDEX ingestion_runs_parent ON catalog.ingestion_runs (parent_flow_run_id) WHERE parent_flow_run_id IS NOT NULL;

CREATE TABLE catalog.run_files (
    flow_run_id    text NOT NULL REFERENCES catalog.ingestion_runs (flow_run_id) ON DELETE CASCADE,
    path           text NOT NULL,  -- as the run was given it
    source_file_id bigint REFERENCES catalog.source_files (id),  -- null: the file could not be read
    status         text NOT NULL,  -- ingesting, ingested, failed, rejected
    chunks         integer NOT NULL DEFAULT 0,  -- planned
    failed_chunks  integer NOT NULL DEFAULT 0,
    records        bigint NOT NULL DEFAULT 0,
    alleles        bigint NOT NULL DEFAULT 0,  -- variants (one per published ALT allele)
    new            bigint NOT NULL DEFAULT 0,
    duplicates     bigint NOT NULL DEFAULT 0,
    quarantined    bigint NOT NULL DEFAULT 0,
    failovers      bigint NOT NULL DEFAULT 0,
    in_doubt       bigint NOT NULL DEFAULT 0,
    published      jsonb NOT NULL DEFAULT '{}',  -- alleles per platform
    error          text,  -- why it failed or was rejected (secrets removed)
    started_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    PRIMARY KEY (flow_run_id, path)
);
CREATE INDEX run_files_source ON catalog.run_files (source_file_id);

ALTER TABLE catalog.chunks ADD COLUMN failovers integer NOT NULL DEFAULT 0;
ALTER TABLE catalog.chunks ADD COLUMN published jsonb NOT NULL DEFAULT '{}';
ALTER TABLE catalog.chunks ADD COLUMN message text;
COMMENT ON COLUMN catalog.chunks.message IS 'the outcome, or why the chunk failed (secrets removed)';
