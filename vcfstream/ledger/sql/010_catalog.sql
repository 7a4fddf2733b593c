-- The catalog of what vcfstream ingested, in its own schema: datasets, source files, ingestion
-- runs, chunks, variants and genotype calls. Written by vcfstream/stores/catalog.py.

CREATE SCHEMA IF NOT EXISTS catalog;

CREATE TABLE catalog.datasets (
    name            text PRIMARY KEY,
    store_genotypes boolean NOT NULL DEFAULT true,  -- as last set by an ingestion of the dataset
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- One row per distinct file content in a dataset: the same bytes ingested twice stay one row.
CREATE TABLE catalog.source_files (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dataset           text NOT NULL REFERENCES catalog.datasets (name),
    sha256            text NOT NULL,
    path              text NOT NULL,  -- where it was last ingested from
    size_bytes        bigint NOT NULL,
    format            text NOT NULL,  -- vcf, vcf.gz, vcf.bgzf, bcf
    header            text NOT NULL,
    samples           text[] NOT NULL,
    status            text NOT NULL,  -- ingesting, ingested, failed, rejected
    first_ingested_at timestamptz NOT NULL DEFAULT now(),
    last_ingested_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (dataset, sha256)
);

CREATE TABLE catalog.ingestion_runs (
    flow_run_id text PRIMARY KEY,  -- the Prefect flow run id
    dataset     text NOT NULL REFERENCES catalog.datasets (name),
    parameters  jsonb NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    ended_at    timestamptz,
    state       text NOT NULL,  -- Prefect state name: Running, Completed, Failed, ...
    summary     jsonb
);

-- The last outcome of each chunk of a file (a re-run overwrites it).
CREATE TABLE catalog.chunks (
    source_file_id bigint NOT NULL REFERENCES catalog.source_files (id),
    chunk_id       text NOT NULL,  -- model.Chunk.chunk_id, stable across runs of one plan
    chunk_index    integer NOT NULL,
    extent         text NOT NULL,  -- region(s) or record range (model.Chunk.label)
    records        integer NOT NULL,
    alleles        integer NOT NULL,
    new            integer NOT NULL,
    duplicates     integer NOT NULL,
    quarantined    integer NOT NULL,
    in_doubt       integer NOT NULL,
    platforms      text[] NOT NULL,  -- where its messages were published
    stored         jsonb NOT NULL,   -- new variants per store
    state          text NOT NULL,
    flow_run_id    text REFERENCES catalog.ingestion_runs (flow_run_id),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_file_id, chunk_id)
);

-- One row per variant allele across all datasets; the first ingestion's values win.
CREATE TABLE catalog.variants (
    variant_key  text PRIMARY KEY,  -- assembly:contig:pos:ref:alt
    assembly     text NOT NULL,
    contig       text NOT NULL,
    pos          bigint NOT NULL,
    ref          text NOT NULL,
    alt          text NOT NULL,
    end_pos      bigint,
    variant_type text NOT NULL,
    vcf_id       text,
    qual         double precision,
    filters      text[],
    info         jsonb,
    first_dataset text NOT NULL,
    first_sha256  text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX variants_locus ON catalog.variants (assembly, contig, pos);

-- Per-allele calls, coded as in AlleleBatch: "1" this ALT, "2" another ALT of the record.
-- Loaded with COPY; skipped for datasets ingested with store_genotypes off.
CREATE TABLE catalog.genotype_calls (
    dataset     text NOT NULL,
    variant_key text NOT NULL,
    sample      text NOT NULL,
    gt          text NOT NULL,  -- "0/1", "1|1", "./1", "1" (haploid)
    phased      boolean NOT NULL,
    dp          integer,
    gq          integer,
    PRIMARY KEY (dataset, variant_key, sample)
);
