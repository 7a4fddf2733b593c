-- What each chunk read: the digest of its record lines (vcfstream.vcf.reader.ChunkRead.digest,
-- BLAKE2b-256 of the lines in the order read, each followed by a newline). A re-run of the same
-- file reads the same lines, so a chunk whose digest differs between two runs was read from
-- other bytes. Null for a chunk that failed before it was read, and for rows written before.
ALTER TABLE catalog.chunks ADD COLUMN IF NOT EXISTS read_digest text;
COMMENT ON COLUMN catalog.chunks.read_digest IS
    'BLAKE2b-256 (hex) of the record lines the chunk read, each followed by a newline; null: not read';
