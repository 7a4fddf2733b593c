"""The PostgreSQL catalog: datasets, source files, runs, chunks, variants and their genotypes.

Tables live in the ``catalog`` schema (migrations ``vcfstream/ledger/sql/010_catalog.sql``,
``011_catalog_membership.sql``, ``012_catalog_run_record.sql``,
``015_catalog_packed_genotypes.sql`` and ``018_catalog_genotypes_per_file.sql``). Per batch, in
one transaction and a handful of statements (never one per variant):

1. the alleles are rendered to CSV by Arrow and COPYed straight into ``variants`` (a new
   variant records this dataset as the one that stored it first), inside a savepoint;
2. if a key was stored before, that COPY fails on the unique key (having done the work up to
   that row) and is rolled back to the savepoint; the same rendered rows are then COPYed into
   a temporary staging table of the same columns and ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` moves the new
   keys into ``variants``. A store goes to the staging table first from then on, until a batch
   is all new again (the flow opens a store per group, so this spans one group's write);
3. only if some keys existed: the same kind of upsert into ``dataset_variants`` records the
   (dataset, variant) pairs not held yet (the dataset's membership);
4. the calls are binary-COPYed straight into ``genotype_arrays``, one row of packed arrays per
   variant in the order of the file's ``sample_lists`` row
   (``vcfstream.stores.genotypes.PackedGenotypes``; docs/architecture.md, "Genotypes in the
   catalog"), inside a savepoint: a file's calls load once per (sample list, variant), that is
   per (dataset, source file, variant), by a unique index. If the file already has a row of some
   key, that COPY fails, is rolled back, and the keys it has are looked up and left out of a
   second COPY; a store does the lookup first from then on, until a batch is all new again. Files
   of at most ``stores.call_rows_max_samples`` samples also get one ``genotype_calls`` row per
   call of the variants whose packed rows were written.

``carriers`` and ``shared_variants`` answer from the packed rows.

Measured on 100k new alleles x 3 samples: a separate membership row per variant and a unique
index on the calls (staging them too) cost about 1.2 s more than the staged path (2.7 s). On
1M new alleles in groups of 250k, step 1 instead of staging took 7.3 instead of 8.7 s of
server CPU.

Re-writing a batch, or ingesting a file twice, therefore adds nothing; a second file of a
dataset adds its own calls of the variants the dataset holds.

Every ingestion run also keeps its run record here, through ``vcfstream.stores.runs.RunRecord``
(whether or not this store is among the stores it writes): ``start_run``; per file
``record_source_file`` and ``record_run_file`` (status "ingesting", later "ingested", "failed"
or "rejected"); per chunk ``record_chunk``; finally ``record_run_file`` again and ``finish_run``.

Example:
    >>> store = CatalogStore(settings)  # doctest: +SKIP
    >>> store.write(batch)  # new variants written  # doctest: +SKIP
    1200
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

import numpy as np
import orjson
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from vcfstream.errors import LedgerError, StoreError
from vcfstream.ledger import db
from vcfstream.model import AlleleBatch, Chunk, ChunkSummary
from vcfstream.settings import Settings
from vcfstream.stores.base import store_error
from vcfstream.stores.genotypes import (
    PackedGenotypes,
    called,
    calls_table,
    gt_text,
    pack_genotypes,
    restrict_rows,
    unpack_bits,
    unpack_ints,
)
from vcfstream.summary import FileOutcome

STORE = "catalog"

_CSV = pacsv.WriteOptions(include_header=False, batch_size=16_384)

# The columns a batch's rows are rendered with (``_variant_rows``), COPYed straight into
# ``variants`` or, when some keys may be stored, into ``stage_variants`` first.
_VARIANT_COLUMNS = ("variant_key, assembly, contig, pos, ref, alt, end_pos, variant_type, vcf_id, qual, filters, "
                    "info, dataset, source_sha256, calls_loaded")

_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS stage_variants (
    variant_key text, assembly text, contig text, pos bigint, ref text, alt text,
    end_pos bigint, variant_type text, vcf_id text, qual double precision,
    filters text[], info jsonb, dataset text, source_sha256 text, calls_loaded boolean
) ON COMMIT DELETE ROWS;
"""

_COPY_VARIANTS = "COPY {} (" + _VARIANT_COLUMNS + ") FROM STDIN (FORMAT csv)"

# New keys are stored with this dataset as their first; their calls load in this transaction.
# Returns how many, and which only when not all were new (the caller needs them then).
_INSERT_VARIANTS = f"""
WITH inserted AS (
INSERT INTO catalog.variants ({_VARIANT_COLUMNS})
SELECT {_VARIANT_COLUMNS} FROM stage_variants
ON CONFLICT (variant_key) DO NOTHING
RETURNING variant_key
)
SELECT count(*), CASE WHEN count(*) < %(rows)s THEN coalesce(array_agg(variant_key), '{{}}') END FROM inserted
"""

# Keys another dataset stored first: claim the (dataset, variant) pair (membership only; the
# calls load by sample list). A concurrent writer of a pair waits on its row lock, then skips it.
_CLAIM_OTHERS = """
INSERT INTO catalog.dataset_variants AS dv (dataset, variant_key, source_sha256, calls_loaded)
SELECT %(dataset)s, s.variant_key, %(sha256)s, %(calls)s
FROM stage_variants s JOIN catalog.variants v USING (variant_key)
WHERE v.dataset <> %(dataset)s
ON CONFLICT (dataset, variant_key) DO UPDATE SET calls_loaded = true
WHERE %(calls)s AND NOT dv.calls_loaded
"""

# Keys this dataset stored first with genotypes off, now written with genotypes on.
_CLAIM_OWN = """
UPDATE catalog.variants v SET calls_loaded = true
FROM stage_variants s
WHERE v.variant_key = s.variant_key AND v.dataset = %(dataset)s AND NOT v.calls_loaded
"""

_COPY_CALLS = "COPY catalog.genotype_calls (dataset, variant_key, sample, gt, phased, dp, gq) FROM STDIN (FORMAT csv)"

# Packed rows (``PackedGenotypes``) go in by binary COPY, the variable-width texts last.
_PACKED_COLUMNS = ("sample_list_id", "ploidy", "called", "carriers", "gt", "phased", "dp", "gq", "dataset",
                   "variant_key")
_COPY_PACKED = f"COPY catalog.genotype_arrays ({', '.join(_PACKED_COLUMNS)}) FROM STDIN (FORMAT binary)"
_COPY_HEADER = b"PGCOPY\n\xff\r\n\0" + bytes(8)  # signature, flags, no header extension
_COPY_TRAILER = b"\xff\xff"
_COPY_SLICE_BYTES = 32 << 20  # packed rows rendered per write to the COPY

# Which of the keys already have a packed row of this sample list (index on (variant_key, sample_list_id)).
_STORED_PACKED = """
SELECT variant_key FROM catalog.genotype_arrays WHERE variant_key = ANY (%(keys)s) AND sample_list_id = %(list_id)s
"""

# The sample list of a source file in a dataset, stored once; returns its id when inserted.
_INSERT_SAMPLE_LIST = """
INSERT INTO catalog.sample_lists (dataset, source_sha256, samples) VALUES (%(dataset)s, %(sha256)s, %(samples)s)
ON CONFLICT (dataset, source_sha256) DO NOTHING
RETURNING id, samples
"""
_SELECT_SAMPLE_LIST = """
SELECT id, samples FROM catalog.sample_lists WHERE dataset = %(dataset)s AND source_sha256 = %(sha256)s
"""

_ENSURE_DATASET = """
INSERT INTO catalog.datasets (name, store_genotypes) VALUES (%(dataset)s, %(store_genotypes)s)
ON CONFLICT (name) DO UPDATE SET store_genotypes = EXCLUDED.store_genotypes
WHERE catalog.datasets.store_genotypes IS DISTINCT FROM EXCLUDED.store_genotypes
"""


class CatalogStore:
    """Writes each batch's variants (and, unless switched off, genotypes) to PostgreSQL.

    Genotypes are packed, one ``genotype_arrays`` row per allele and file; files of at most
    ``settings.stores.call_rows_max_samples`` samples also get one ``genotype_calls`` row per
    call. Holds one connection for its lifetime; every ``write`` is one transaction.
    ``last_write`` tells what the latest write added: {"variants": n, "genotype_calls": called
    cells packed, "call_rows": genotype_calls rows}.
    """

    name = STORE

    def __init__(self, settings: Settings) -> None:
        self.store_genotypes = settings.stores.genotypes
        self.call_rows_max_samples = settings.stores.call_rows_max_samples
        self.last_write: dict[str, int] = {}
        self._all_new_expected = True  # COPY straight into variants; false after a batch was not
        self._all_new_packed_expected = True  # COPY packed rows straight in; false after a file had some
        self._conn = _connect(settings, autocommit=True)  # each write is one explicit transaction
        try:
            with self._conn.transaction():
                self._conn.execute(_STAGING)
        except psycopg.errors.Error as exc:
            self._conn.close()
            raise store_error(STORE, "could not prepare staging tables", exc) from None

    def write(self, batch: AlleleBatch) -> int:
        """Upsert the batch's variants and calls by key; returns the number of new variants."""
        rows = batch.first_rows()
        variants = batch.table if rows.size == batch.table.num_rows else batch.table.take(rows)
        params = {"dataset": batch.dataset, "sha256": batch.source_digest, "calls": self.store_genotypes,
                  "rows": rows.size}
        try:
            with self._conn.transaction():
                _ensure_dataset(self._conn, batch.dataset, self.store_genotypes)
                new_keys = self._insert_variants(variants, params)
                new_variants = rows.size if new_keys is None else len(new_keys)
                if new_keys is not None:  # some keys were stored before: record this dataset holds them
                    self._conn.execute(_CLAIM_OTHERS, params)
                    if self.store_genotypes:
                        self._conn.execute(_CLAIM_OWN, params)
                new_calls = call_rows = 0
                if self.store_genotypes and batch.samples:
                    new_calls, written = self._copy_packed(batch, rows)
                    if len(batch.samples) <= self.call_rows_max_samples:
                        call_rows = self._copy_calls(batch, written)
        except psycopg.errors.UndefinedTable as exc:
            raise store_error(STORE, "catalog tables are missing; run vcfstream.ledger.db.migrate(settings)", exc) from None
        except psycopg.Error as exc:
            raise store_error(STORE, f"writing {len(batch)} alleles of {batch.source_path} failed", exc) from None
        self.last_write = {"variants": new_variants, "genotype_calls": new_calls, "call_rows": call_rows}
        return new_variants

    def _insert_variants(self, variants: pa.Table, params: dict[str, Any]) -> list[str] | None:
        """Store the keys not stored yet; returns None when all were new, else the new keys."""
        rendered = _variant_rows(variants, params)
        if self._all_new_expected:
            try:
                with self._conn.transaction():  # a savepoint
                    _copy_into(self._conn, _COPY_VARIANTS.format("catalog.variants"), rendered)
                return None
            except psycopg.errors.UniqueViolation:
                self._all_new_expected = False
        _copy_into(self._conn, _COPY_VARIANTS.format("stage_variants"), rendered)
        row = self._conn.execute(_INSERT_VARIANTS, params).fetchone()
        assert row is not None
        count, keys = row
        self._all_new_expected = count == params["rows"]
        return None if keys is None else list(keys)

    def close(self) -> None:
        self._conn.close()

    def _copy_packed(self, batch: AlleleBatch, rows: np.ndarray) -> tuple[int, np.ndarray]:
        """Store the packed calls of the batch's ``rows`` whose keys this file (its sample list)
        has none of yet; returns the called cells written and the rows written."""
        if rows.size == 0:
            return 0, rows
        list_id = self._sample_list_id(batch)
        if self._all_new_packed_expected:
            try:
                with self._conn.transaction():  # a savepoint
                    return self._copy_packed_rows(batch, rows, list_id), rows
            except psycopg.errors.UniqueViolation:
                self._all_new_packed_expected = False
        keys = batch.table.column("variant_key").take(pa.array(rows))
        stored = self._conn.execute(_STORED_PACKED, {"keys": keys.to_pylist(), "list_id": list_id}).fetchall()
        self._all_new_packed_expected = not stored
        if stored:
            value_set = pa.array([key for (key,) in stored], pa.string())
            rows = rows[~pc.is_in(keys, value_set=value_set).to_numpy(zero_copy_only=False)]
        return self._copy_packed_rows(batch, rows, list_id), rows

    def _copy_packed_rows(self, batch: AlleleBatch, rows: np.ndarray, list_id: int) -> int:
        """Binary-COPY the packed calls of ``rows`` in slices of about ``_COPY_SLICE_BYTES``;
        returns the called cells written."""
        if rows.size == 0:
            return 0
        row_bytes = len(batch.samples) * (batch.gt.shape[2] + 8) + 64
        step = max(1, _COPY_SLICE_BYTES // row_bytes)
        written = 0
        with self._conn.cursor().copy(_COPY_PACKED) as copy:
            copy.write(_COPY_HEADER)
            for start in range(0, rows.size, step):
                part = rows[start:start + step]
                packed = pack_genotypes(batch, part)
                keys = batch.table.column("variant_key").take(pa.array(part))
                copy.write(_binary_rows(packed, list_id, batch.dataset, keys))
                written += int(packed.called.sum())
            copy.write(_COPY_TRAILER)
        return written

    def _sample_list_id(self, batch: AlleleBatch) -> int:
        """The id of the batch's sample list (stored on first use, in this write's transaction:
        never remembered past it, as a failed write takes the row back); a list stored for the
        same file with other names is a ``StoreError``."""
        params = {"dataset": batch.dataset, "sha256": batch.source_digest, "samples": list(batch.samples)}
        row = self._conn.execute(_INSERT_SAMPLE_LIST, params).fetchone()
        if row is None:  # stored before (or by a writer that committed meanwhile)
            row = self._conn.execute(_SELECT_SAMPLE_LIST, params).fetchone()
        assert row is not None
        list_id, samples = row
        if list(samples) != list(batch.samples):
            raise StoreError(STORE, f"{batch.source_path} (sha256 {batch.source_digest[:12]}) has "
                                    f"{len(batch.samples)} samples, but dataset {batch.dataset!r} holds another "
                                    f"list of {len(samples)} for the same file")
        return int(list_id)

    def _copy_calls(self, batch: AlleleBatch, rows: np.ndarray) -> int:
        """COPY one ``genotype_calls`` row per called cell of ``rows`` (those whose packed rows
        were just written); returns how many."""
        if rows.size == 0:
            return 0
        calls = calls_table(batch, restrict_rows(called(batch.gt), rows))
        dataset = pa.repeat(pa.scalar(batch.dataset), calls.num_rows)
        _copy_into(self._conn, _COPY_CALLS, calls.add_column(0, "dataset", dataset))
        return calls.num_rows


def _binary_rows(packed: PackedGenotypes, list_id: int, dataset: str, keys: pa.ChunkedArray) -> pa.Buffer:
    """``packed`` as COPY binary tuples in ``_PACKED_COLUMNS`` order: every field but the
    variant key has one width for the whole batch, so they are laid out as one (rows, width)
    byte matrix and Arrow appends each row's key to its row."""
    n = len(packed)
    dataset_bytes = dataset.encode()
    key_bytes = keys.combine_chunks().cast(pa.binary())
    key_lengths = pc.binary_length(key_bytes).to_numpy(zero_copy_only=False).astype(">i4")
    fields: list[np.ndarray | bytes | None] = [
        struct.pack(">q", list_id), struct.pack(">h", packed.ploidy),
        packed.called.astype(">i4").view(np.uint8).reshape(n, 4),
        packed.carriers, packed.gt, packed.phased, packed.dp, packed.gq, dataset_bytes,
    ]
    parts: list[np.ndarray] = [np.frombuffer(struct.pack(">h", len(_PACKED_COLUMNS)), np.uint8)]
    for value in fields:
        if value is None:  # NULL: length -1
            parts.append(np.frombuffer(struct.pack(">i", -1), np.uint8))
            continue
        width = len(value) if isinstance(value, bytes) else value.shape[1]
        parts.append(np.frombuffer(struct.pack(">i", width), np.uint8))
        parts.append(np.frombuffer(value, np.uint8) if isinstance(value, bytes) else value)
    parts.append(key_lengths.view(np.uint8).reshape(n, 4))
    widths = [part.shape[-1] for part in parts]
    fixed = np.empty((n, sum(widths)), dtype=np.uint8)
    at = 0
    for part, width in zip(parts, widths):
        fixed[:, at:at + width] = part  # a 1-D part (the same bytes in every row) broadcasts
        at += width
    offsets = np.arange(0, (n + 1) * fixed.shape[1], fixed.shape[1], dtype=np.int64)
    heads = pa.Array.from_buffers(pa.large_binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(fixed)])
    rows = pc.binary_join_element_wise(heads, key_bytes.cast(pa.large_binary()), pa.scalar(b"", pa.large_binary()))
    ends = np.frombuffer(rows.buffers()[1], dtype=np.int64, count=n + 1, offset=rows.offset * 8)
    return rows.buffers()[2].slice(int(ends[0]), int(ends[n] - ends[0]))


def _variant_rows(table: pa.Table, params: dict[str, Any]) -> pa.Table:
    """The batch's rows in ``_VARIANT_COLUMNS`` order; ``params`` gives dataset, sha256 and calls."""
    n = table.num_rows
    return pa.table({
        "variant_key": table.column("variant_key"),
        "assembly": table.column("assembly"),
        "contig": table.column("contig"),
        "pos": table.column("pos"),
        "ref": table.column("ref"),
        "alt": table.column("alt"),
        "end_pos": table.column("end"),
        "variant_type": table.column("variant_type"),
        "vcf_id": table.column("vcf_id"),
        "qual": table.column("qual"),
        "filters": _text_arrays(table.column("filters")),
        "info": table.column("info"),
        "dataset": pa.repeat(pa.scalar(params["dataset"]), n),
        "source_sha256": pa.repeat(pa.scalar(params["sha256"]), n),
        "calls_loaded": pa.repeat(pa.scalar(params["calls"]), n),
    })


def _text_arrays(lists: pa.ChunkedArray) -> pa.Array:
    """list<string> as PostgreSQL text[] literals ('{"PASS","q10"}'); null lists stay null."""
    lists = lists.combine_chunks()
    lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False)
    offsets = np.zeros(len(lists) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    items = pc.replace_substring(pc.replace_substring(pc.list_flatten(lists), "\\", "\\\\"), '"', '\\"')
    quoted = pc.binary_join_element_wise('"', items, '"', "")
    joined = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), quoted, mask=lists.is_null()), ",")
    return pc.binary_join_element_wise("{", joined, "}", "")


_CSV_SLICE_ROWS = 32_768  # rows rendered at a time: a group's CSV is never whole in memory


def _copy_into(conn: psycopg.Connection, statement: str, table: pa.Table) -> None:
    """Stream ``table`` as CSV (rendered by Arrow, a slice at a time) into a COPY ... FROM STDIN
    statement."""
    if table.num_rows == 0:
        return
    with conn.cursor().copy(statement) as copy:
        for start in range(0, table.num_rows, _CSV_SLICE_ROWS):
            sink = pa.BufferOutputStream()  # an Arrow stream: the writer never calls back into Python
            pacsv.write_csv(table.slice(start, _CSV_SLICE_ROWS), sink, _CSV)
            copy.write(sink.getvalue())


def catalog_counts(settings: Settings, dataset: str | None = None) -> dict[str, int]:
    """Stored variants, genotype calls (called cells of the packed rows) and ``genotype_calls``
    rows: of ``dataset`` if given, else of all datasets."""
    sql = """
    SELECT (SELECT count(*) FROM catalog.variants WHERE %(dataset)s::text IS NULL),
           (SELECT count(*) FROM catalog.dataset_membership WHERE dataset = %(dataset)s),
           (SELECT coalesce(sum(called), 0) FROM catalog.genotype_arrays
            WHERE %(dataset)s::text IS NULL OR dataset = %(dataset)s),
           (SELECT count(*) FROM catalog.genotype_calls WHERE %(dataset)s::text IS NULL OR dataset = %(dataset)s)
    """
    with _session(settings, "counting catalog rows") as conn:
        row = conn.execute(sql, {"dataset": dataset}).fetchone()
    assert row is not None
    all_variants, dataset_variants, calls, call_rows = row
    return {"variants": int(dataset_variants if dataset else all_variants), "genotype_calls": int(calls),
            "call_rows": int(call_rows)}


# --- Who carries what, from the packed genotypes -----------------------------------------------

_CARRIER_ROWS = """
SELECT g.dataset, l.samples, g.ploidy, g.carriers, g.gt, g.phased, g.dp, g.gq
FROM catalog.genotype_arrays g JOIN catalog.sample_lists l ON l.id = g.sample_list_id
WHERE g.variant_key = %(key)s AND (%(dataset)s::text IS NULL OR g.dataset = %(dataset)s)
"""

# The pairs of sample lists of one dataset holding the first and the second sample, with their
# positions. A list holding both: its rows whose carrier bits of both are set. Two lists (two
# files): the first list's rows carrying the first sample, each joined to the second list's row
# of its key (the unique index on (variant_key, sample_list_id)) carrying the second.
_SHARED = """
WITH lists AS MATERIALIZED (  -- each list's positions found once, not per row
    SELECT la.id AS list_a, la.a, lb.id AS list_b, lb.b
    FROM (SELECT id, dataset, array_position(samples, %(a)s) - 1 AS a FROM catalog.sample_lists
          WHERE %(a)s = ANY (samples) AND (%(dataset)s::text IS NULL OR dataset = %(dataset)s)) la
    JOIN (SELECT id, dataset, array_position(samples, %(b)s) - 1 AS b FROM catalog.sample_lists
          WHERE %(b)s = ANY (samples) AND (%(dataset)s::text IS NULL OR dataset = %(dataset)s)) lb USING (dataset)
), shared AS (
    SELECT g.variant_key
    FROM lists l JOIN catalog.genotype_arrays g ON g.sample_list_id = l.list_a
    WHERE l.list_a = l.list_b AND get_bit(g.carriers, l.a) = 1 AND get_bit(g.carriers, l.b) = 1
    UNION
    SELECT ga.variant_key
    FROM lists l JOIN catalog.genotype_arrays ga ON ga.sample_list_id = l.list_a
    JOIN catalog.genotype_arrays gb ON gb.variant_key = ga.variant_key AND gb.sample_list_id = l.list_b
    WHERE l.list_a <> l.list_b AND get_bit(ga.carriers, l.a) = 1 AND get_bit(gb.carriers, l.b) = 1
)
SELECT v.variant_key, v.contig, v.pos, v.ref, v.alt, v.variant_type
FROM shared JOIN catalog.variants v USING (variant_key)
ORDER BY v.contig, v.pos, v.variant_key
"""


def carriers(settings: Settings, variant_key: str, dataset: str | None = None) -> list[dict[str, Any]]:
    """Samples carrying ``variant_key`` (in ``dataset`` if given), with their call: rows of
    sample, dataset, gt (per-allele coded, as ``bcftools norm -m-``: "0/1", "./1", "1|2", "1"),
    phased, dp, gq (None when missing); ordered by dataset then sample.

    Example:
        >>> carriers(settings, "GRCh38:chr20:60070:G:A")  # doctest: +SKIP
        [{'sample': 'HG00096', 'dataset': '1kg', 'gt': '0|1', 'phased': True, 'dp': 31, 'gq': 99}]
    """
    found: list[dict[str, Any]] = []
    with _session(settings, f"finding the carriers of {variant_key}") as conn:
        stored = conn.execute(_CARRIER_ROWS, {"key": variant_key, "dataset": dataset}).fetchall()
    for ds, samples, ploidy, carrier_bits, gt, phased_bits, dp, gq in stored:
        m = len(samples)
        columns = np.flatnonzero(unpack_bits(carrier_bits, m))
        phased = unpack_bits(phased_bits, m)[columns]
        calls = np.frombuffer(gt, dtype=np.int8).reshape(m, ploidy)[columns]
        texts = gt_text(calls, phased).to_pylist()
        depths, qualities = unpack_ints(dp, m)[columns].tolist(), unpack_ints(gq, m)[columns].tolist()
        for k, column in enumerate(columns.tolist()):
            found.append({"sample": samples[column], "dataset": ds, "gt": texts[k], "phased": bool(phased[k]),
                          "dp": None if depths[k] < 0 else depths[k], "gq": None if qualities[k] < 0 else qualities[k]})
    return sorted(found, key=lambda row: (row["dataset"], row["sample"]))


def shared_variants(settings: Settings, sample_a: str, sample_b: str, dataset: str | None = None) -> list[dict[str, Any]]:
    """Variants both samples carry (in one dataset's calls, from one file or two; of ``dataset``
    if given), by position: rows of variant_key, contig, pos, ref, alt, variant_type. Answered in
    SQL from the carrier bits (see docs/benchmarks.md for why not in Python)."""
    with _session(settings, f"finding the variants {sample_a} and {sample_b} share") as conn:
        cursor = conn.execute(_SHARED, {"a": sample_a, "b": sample_b, "dataset": dataset})
        names = [column.name for column in cursor.description or ()]
        return [dict(zip(names, row)) for row in cursor]


# --- Records the flow keeps about files, runs and chunks -------------------------------------


class SourceFileInfo(Protocol):
    """What the catalog keeps about an input file (``vcfstream.vcf.source.SourceFile`` has it all)."""

    @property
    def path(self) -> str: ...

    @property
    def size(self) -> int: ...

    @property
    def digest(self) -> str: ...  # sha256 of the file's bytes

    @property
    def format(self) -> str: ...

    @property
    def header_text(self) -> str: ...

    @property
    def samples(self) -> list[str]: ...


def record_source_file(settings: Settings, dataset: str, source: SourceFileInfo, status: str = "ingesting") -> int:
    """Record (or update) a file of a dataset by content; returns its catalog id.

    The first call inserts it; later calls for the same bytes update path, status and
    ``last_ingested_at`` and keep ``first_ingested_at``.
    """
    sql = """
    INSERT INTO catalog.source_files (dataset, sha256, path, size_bytes, format, header, samples, status)
    VALUES (%(dataset)s, %(sha256)s, %(path)s, %(size)s, %(format)s, %(header)s, %(samples)s, %(status)s)
    ON CONFLICT (dataset, sha256) DO UPDATE
    SET path = EXCLUDED.path, status = EXCLUDED.status, last_ingested_at = now()
    RETURNING id
    """
    params = {
        "dataset": dataset, "sha256": source.digest, "path": source.path, "size": source.size,
        "format": str(source.format), "header": source.header_text, "samples": list(source.samples),
        "status": status,
    }  # fmt: skip
    with _session(settings, f"recording {source.path}") as conn:
        _ensure_dataset(conn, dataset, settings.stores.genotypes)
        row = conn.execute(sql, params).fetchone()
    assert row is not None
    return int(row[0])


def start_run(settings: Settings, flow_run_id: str, dataset: str, parameters: Mapping[str, Any],
              parent_flow_run_id: str | None = None) -> None:
    """Record that an ingestion flow run started (a retried flow run starts its row over).

    ``parent_flow_run_id``: the flow run this one runs for (an ``ingest_cohort`` run), if any.
    """
    sql = """
    INSERT INTO catalog.ingestion_runs (flow_run_id, dataset, parameters, state, parent_flow_run_id)
    VALUES (%(id)s, %(dataset)s, %(parameters)s::jsonb, 'Running', %(parent)s)
    ON CONFLICT (flow_run_id) DO UPDATE
    SET parameters = EXCLUDED.parameters, started_at = now(), ended_at = NULL, state = 'Running', summary = NULL,
        parent_flow_run_id = EXCLUDED.parent_flow_run_id
    """
    params = {"id": flow_run_id, "dataset": dataset, "parameters": _json(parameters), "parent": parent_flow_run_id}
    with _session(settings, f"starting run {flow_run_id}") as conn:
        _ensure_dataset(conn, dataset, settings.stores.genotypes)
        conn.execute(sql, params)


def finish_run(settings: Settings, flow_run_id: str, state: str, summary: ChunkSummary | Mapping[str, Any]) -> None:
    """Record a flow run's end: its final state name and merged summary."""
    sql = """
    UPDATE catalog.ingestion_runs SET ended_at = now(), state = %(state)s, summary = %(summary)s::jsonb
    WHERE flow_run_id = %(id)s
    """
    data = summary.to_dict() if isinstance(summary, ChunkSummary) else dict(summary)
    with _session(settings, f"finishing run {flow_run_id}") as conn:
        if conn.execute(sql, {"id": flow_run_id, "state": state, "summary": _json(data)}).rowcount == 0:
            raise StoreError(STORE, f"run {flow_run_id} was never started; call start_run first")


def record_chunk(
    settings: Settings,
    dataset: str,
    chunk: Chunk,
    summary: ChunkSummary,
    state: str,
    flow_run_id: str | None = None,
    message: str | None = None,
) -> None:
    """Record a chunk's latest outcome (``message``: its outcome or error); the file must have
    been recorded already."""
    sql = """
    INSERT INTO catalog.chunks (source_file_id, chunk_id, chunk_index, extent, records, alleles,
        new, duplicates, quarantined, in_doubt, platforms, stored, state, flow_run_id, failovers,
        published, message, read_digest)
    SELECT f.id, %(chunk_id)s, %(index)s, %(extent)s, %(records)s, %(alleles)s, %(new)s,
        %(duplicates)s, %(quarantined)s, %(in_doubt)s, %(platforms)s, %(stored)s::jsonb,
        %(state)s, %(run)s, %(failovers)s, %(published)s::jsonb, %(message)s, %(read_digest)s
    FROM catalog.source_files f WHERE f.dataset = %(dataset)s AND f.sha256 = %(sha256)s
    ON CONFLICT (source_file_id, chunk_id) DO UPDATE
    SET records = EXCLUDED.records, alleles = EXCLUDED.alleles, new = EXCLUDED.new,
        duplicates = EXCLUDED.duplicates, quarantined = EXCLUDED.quarantined,
        in_doubt = EXCLUDED.in_doubt, platforms = EXCLUDED.platforms, stored = EXCLUDED.stored,
        state = EXCLUDED.state, flow_run_id = EXCLUDED.flow_run_id, failovers = EXCLUDED.failovers,
        published = EXCLUDED.published, message = EXCLUDED.message, read_digest = EXCLUDED.read_digest,
        updated_at = now()
    """
    params = {
        "dataset": dataset, "sha256": chunk.digest, "chunk_id": chunk.chunk_id, "index": chunk.index,
        "extent": chunk.label, "records": summary.records, "alleles": summary.alleles,
        "new": summary.new, "duplicates": summary.duplicates, "quarantined": summary.quarantined,
        "in_doubt": summary.in_doubt, "platforms": sorted(p for p, n in summary.published.items() if n),
        "stored": _json(dict(summary.stored)), "state": state, "run": flow_run_id,
        "failovers": summary.failovers, "published": _json(dict(summary.published)), "message": message,
        "read_digest": summary.read_digest,
    }  # fmt: skip
    with _session(settings, f"recording chunk {chunk.chunk_id}") as conn:
        if conn.execute(sql, params).rowcount == 0:
            raise StoreError(
                STORE, f"{chunk.path} (sha256 {chunk.digest[:12]}) is not recorded in dataset "
                f"{dataset!r}; call record_source_file before record_chunk",
            )  # fmt: skip


def record_run_file(settings: Settings, flow_run_id: str, dataset: str, outcome: FileOutcome) -> None:
    """Record what a run did with one of its files (``run_files``, by run and path; again as it
    changes). A file with a digest must have been recorded with ``record_source_file``: its
    ``source_files.status`` follows the outcome; a file without one (it could not be read) has
    no ``source_files`` row."""
    sql = """
    WITH file AS (
        UPDATE catalog.source_files SET status = %(status)s
        WHERE dataset = %(dataset)s AND sha256 = %(sha256)s AND %(sha256)s <> ''
        RETURNING id
    )
    INSERT INTO catalog.run_files (flow_run_id, path, source_file_id, status, chunks, failed_chunks, records,
        alleles, new, duplicates, quarantined, failovers, in_doubt, published, error, finished_at)
    VALUES (%(run)s, %(path)s, (SELECT id FROM file), %(status)s, %(chunks)s, %(failed_chunks)s, %(records)s,
        %(alleles)s, %(new)s, %(duplicates)s, %(quarantined)s, %(failovers)s, %(in_doubt)s,
        %(published)s::jsonb, %(error)s, CASE WHEN %(status)s = 'ingesting' THEN NULL ELSE now() END)
    ON CONFLICT (flow_run_id, path) DO UPDATE
    SET source_file_id = EXCLUDED.source_file_id, status = EXCLUDED.status, chunks = EXCLUDED.chunks,
        failed_chunks = EXCLUDED.failed_chunks, records = EXCLUDED.records, alleles = EXCLUDED.alleles,
        new = EXCLUDED.new, duplicates = EXCLUDED.duplicates, quarantined = EXCLUDED.quarantined,
        failovers = EXCLUDED.failovers, in_doubt = EXCLUDED.in_doubt, published = EXCLUDED.published,
        error = EXCLUDED.error, finished_at = EXCLUDED.finished_at
    """
    counts = outcome.counts
    params = {
        "run": flow_run_id, "dataset": dataset, "path": outcome.path or outcome.file, "sha256": outcome.digest,
        "status": outcome.status, "chunks": outcome.chunks, "failed_chunks": outcome.failed_chunks,
        "records": counts.records, "alleles": counts.alleles, "new": counts.new, "duplicates": counts.duplicates,
        "quarantined": counts.quarantined, "failovers": counts.failovers, "in_doubt": counts.in_doubt,
        "published": _json(dict(counts.published)), "error": outcome.error or None,
    }  # fmt: skip
    with _session(settings, f"recording {params['path']} of run {flow_run_id}") as conn:
        conn.execute(sql, params)


def _ensure_dataset(conn: psycopg.Connection, dataset: str, store_genotypes: bool) -> None:
    conn.execute(_ENSURE_DATASET, {"dataset": dataset, "store_genotypes": store_genotypes})


@contextmanager
def _session(settings: Settings, doing: str) -> Iterator[psycopg.Connection]:
    """A short transaction on a fresh connection, with errors turned into ``StoreError``."""
    try:
        with _connect(settings) as conn:  # commits on success, rolls back on error, closes
            yield conn
    except psycopg.Error as exc:
        raise store_error(STORE, f"{doing} failed", exc) from None


def _connect(settings: Settings, *, autocommit: bool = False) -> psycopg.Connection:
    try:
        return db.connect(settings, autocommit=autocommit)
    except LedgerError as exc:
        raise StoreError(STORE, str(exc)) from None


def _json(value: Any) -> str:
    return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
