-- Genotypes load once per (sample list, variant), i.e. per dataset, source file and variant, no
-- longer once per (dataset, variant): every file of a dataset that holds a variant (a cohort of
-- single-sample files in one dataset) keeps its own packed row of it. The unique index on
-- (variant_key, sample_list_id) is what makes re-writing a batch, or re-ingesting a file, add
-- nothing (vcfstream/stores/catalog.py); it also serves the lookups by key the old index did.
-- Rows stored before cannot violate it: they were loaded once per (dataset, variant), and a
-- sample list belongs to one dataset.
DROP INDEX catalog.genotype_arrays_variant;
CREATE UNIQUE INDEX genotype_arrays_variant_list ON catalog.genotype_arrays (variant_key, sample_list_id);
COMMENT ON INDEX catalog.genotype_arrays_variant_list IS
    'one packed row per variant and sample list (dataset and source file): a file''s calls load once';

-- The row-per-call table follows the packed rows: written for the same keys in the same write.
COMMENT ON TABLE catalog.genotype_calls IS
    'written with the packed row of the same (dataset, source file, variant); no unique index by design';
