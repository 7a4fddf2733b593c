-- Genotypes packed per variant: one catalog row per (dataset, variant) holding every sample's
-- call as arrays in the order of a sample list kept once per dataset and source file, instead
-- of one genotype_calls row per call (20M rows for 20k records x 1,000 samples). Written by
-- binary COPY (vcfstream/stores/catalog.py); the layout is in docs/architecture.md
-- ("Genotypes in the catalog"). genotype_calls stays for the rows stored before this migration
-- and for files at most VCFSTREAM_STORE_CALL_ROWS_MAX_SAMPLES wide (default 0: none).

-- The samples of a source file, in column order: a packed row's arrays follow this order.
CREATE TABLE catalog.sample_lists (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dataset       text NOT NULL,
    source_sha256 text NOT NULL,
    samples       text[] NOT NULL,
    UNIQUE (dataset, source_sha256)
);

-- Loaded once per (dataset, variant) pair, in the transaction that turns its calls_loaded true
-- (as genotype_calls): no unique index. Codes as in AlleleBatch: 0 REF, 1 this ALT, 2 another
-- ALT of the record, -1 missing, -2 no such ploidy slot (a haploid call).
CREATE TABLE catalog.genotype_arrays (
    dataset        text NOT NULL,
    variant_key    text NOT NULL,
    sample_list_id bigint NOT NULL,  -- catalog.sample_lists.id
    ploidy         smallint NOT NULL,  -- slots per sample in gt
    called         integer NOT NULL,  -- samples with at least one non-missing allele
    carriers       bytea NOT NULL,  -- one bit per sample, get_bit(carriers, j): sample j carries this ALT
    gt             bytea NOT NULL,  -- int8 codes, sample-major: sample j's slots at j*ploidy ..
    phased         bytea NOT NULL,  -- one bit per sample, as carriers
    dp             bytea,  -- little-endian int16 (or int32 when a value needs it) per sample, -1 missing; NULL: none
    gq             bytea   -- as dp
);
CREATE INDEX genotype_arrays_variant ON catalog.genotype_arrays (variant_key);
-- Rows of one sample list arrive together: a block range index finds them (shared_variants).
CREATE INDEX genotype_arrays_list ON catalog.genotype_arrays USING brin (sample_list_id);

-- Value j of a packed dp or gq array of n samples (int16 or int32 by its length).
CREATE FUNCTION catalog.packed_int(packed bytea, j integer, n integer) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
SELECT CASE length(packed) / n  -- (operators like | << # bind alike, left to right: parenthesized)
    WHEN 2 THEN ((get_byte(packed, 2 * j) | (get_byte(packed, 2 * j + 1) << 8)) # 32768) - 32768
    ELSE (((get_byte(packed, 4 * j)::bigint | (get_byte(packed, 4 * j + 1)::bigint << 8)
            | (get_byte(packed, 4 * j + 2)::bigint << 16) | (get_byte(packed, 4 * j + 3)::bigint << 24))
           # 2147483648) - 2147483648)::integer
END
$$;

-- Every packed call as a row, for SQL: called cells only, as genotype_calls holds them.
CREATE VIEW catalog.genotype_call_rows AS
SELECT g.dataset, g.variant_key, l.samples[j + 1] AS sample,
       concat_ws(CASE WHEN get_bit(g.phased, j) = 1 THEN '|' ELSE '/' END,
                 VARIADIC ARRAY(SELECT CASE get_byte(g.gt, j * g.ploidy + k)
                                       WHEN 255 THEN '.' WHEN 0 THEN '0' WHEN 1 THEN '1' ELSE '2' END
                                FROM generate_series(0, g.ploidy - 1) AS k
                                WHERE get_byte(g.gt, j * g.ploidy + k) <> 254
                                ORDER BY k)) AS gt,
       get_bit(g.phased, j) = 1 AS phased,
       nullif(catalog.packed_int(g.dp, j, cardinality(l.samples)), -1) AS dp,
       nullif(catalog.packed_int(g.gq, j, cardinality(l.samples)), -1) AS gq
FROM catalog.genotype_arrays g
JOIN catalog.sample_lists l ON l.id = g.sample_list_id
CROSS JOIN LATERAL generate_series(0, cardinality(l.samples) - 1) AS j
WHERE EXISTS (SELECT 1 FROM generate_series(0, g.ploidy - 1) AS k WHERE get_byte(g.gt, j * g.ploidy + k) < 128);
