"""LanceDB: one ``variants`` table of variant alleles with a feature vector, for similarity search.

The table (at ``settings.lancedb_location``: a local path or an object-store URI) has one row
per variant key: ``variant_key, contig, pos, ref, alt, variant_type, vector``. The first write
of a key wins; later writes of the same key add nothing (``merge_insert`` on ``variant_key``).

The vector comes from a pluggable ``Embedder``. The default, ``VariantFeatures``, is a
deterministic float32 vector of 17 dimensions computed with numpy over the whole batch, each
scaled to about [0, 1] so that no single feature dominates the L2 distance:

====  ================  ==========================================================================
dim   name              meaning
====  ================  ==========================================================================
0-5   class one-hot     variant_type is SNV, MNV, insertion, deletion, indel, symbolic
6     ref_length        log10(1 + reference span) / 3; the span is max(len(REF), END - POS + 1)
7     alt_length        log10(1 + len(ALT)) / 3; 0 for symbolic ALTs (``<DEL>``)
8     transition        1 for an SNV A<->G or C<->T, else 0
9     transversion      1 for an SNV purine<->pyrimidine, else 0 (both 0 for non-SNVs)
10    qual              log10(1 + QUAL) / 4; 0 when QUAL is missing
11    allele_frequency  the ``af`` column (INFO/AF, else AC/AN); else ALT alleles / called alleles
12    carrier_fraction  carriers / samples with a call
13    het_fraction      heterozygous carriers / carriers: the het/hom-alt ratio bounded to [0, 1]
14    missing_fraction  samples without a call / samples
15    mean_dp           log10(1 + mean DP over carriers with a DP) / 3
16    mean_gq           mean GQ over carriers with a GQ / 99, at most 1
====  ================  ==========================================================================

Genotype features (12-16) are 0 for sites-only batches. An approximate-nearest-neighbour index
(IVF_FLAT, L2: the vectors are too short for product quantization to pay off) is built once the
table holds ``settings.lancedb.index_min_rows`` rows; rows added later are searched exactly until
they are indexed. Index upkeep is kept to work proportional to the rows added, because LanceDB's
``optimize()`` rewrites every index over the whole table (measured: 10.3 s to fold 1M new rows
into a 4M-row table; 55 s once during an ingest):

* the key index (a BTree, which ``merge_insert`` uses) folds new rows in once they reach a
  quarter of the indexed ones (at least ``OPTIMIZE_MIN_ROWS``): about 0.8 s at 4M rows;
* the vector index gets a new *delta* over the unindexed rows (assigned to the existing IVF
  centroids, nothing rewritten) once they reach the indexed ones: the table doubles between
  deltas, so there are about log2(rows) of them and a search scans at most half the rows
  exactly (measured: 2.0 s per 500k rows);
* a full ``optimize()`` (compaction, deltas merged, versions older than 7 days pruned) runs only
  once the table has ``COMPACT_FRAGMENTS`` fragments.

The per-index calls are pylance's (``to_lance().optimize.optimize_indices``), which LanceDB's
Python API does not expose.

Writers: on a local path, writes are serialized with a file lock next to the tables, so
concurrent workers can never insert the same new key twice. On an object store the key column
is declared an unenforced primary key, which Lance's commit-conflict check uses instead.

Example:
    >>> store = LanceStore(settings)  # doctest: +SKIP
    >>> store.write(batch)  # doctest: +SKIP
    1200
    >>> similar_variants(settings, "GRCh38:chr20:60070:G:A", k=3)  # doctest: +SKIP
    [{'variant_key': 'GRCh38:chr20:60083:T:C', ..., 'distance': 0.0004}, ...]
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import lancedb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from lancedb.index import BTree, IvfFlat
from lancedb.query import LanceVectorQueryBuilder

from vcfstream.errors import StoreError
from vcfstream.model import AlleleBatch, first_row_per_key
from vcfstream.settings import Settings
from vcfstream.stores.base import describe, file_lock, store_error
from vcfstream.stores.genotypes import called, carrying, homozygous_alt

STORE = "lancedb"
TABLE = "variants"
OPTIMIZE_MIN_ROWS = 500_000
COMPACT_FRAGMENTS = 64

VARIANT_CLASSES = ("SNV", "MNV", "insertion", "deletion", "indel", "symbolic")
FEATURE_NAMES = (
    *(f"class_{name}" for name in VARIANT_CLASSES),
    "ref_length", "alt_length", "transition", "transversion", "qual", "allele_frequency",
    "carrier_fraction", "het_fraction", "missing_fraction", "mean_dp", "mean_gq",
)  # fmt: skip


@runtime_checkable
class Embedder(Protocol):
    """Turns a batch into one vector per allele row: shape (len(batch), dimension), float32."""

    dimension: int

    def embed(self, batch: AlleleBatch) -> np.ndarray: ...


class VariantFeatures:
    """The default embedder: the documented 17 features (see the module docstring)."""

    dimension = len(FEATURE_NAMES)

    def embed(self, batch: AlleleBatch) -> np.ndarray:
        table = batch.table
        features = np.zeros((table.num_rows, self.dimension), dtype=np.float32)
        if table.num_rows == 0:
            return features
        variant_type = table.column("variant_type")
        for i, name in enumerate(VARIANT_CLASSES):
            features[:, i] = _numpy(pc.equal(variant_type, name), False)
        symbolic = features[:, VARIANT_CLASSES.index("symbolic")] > 0
        snv = features[:, VARIANT_CLASSES.index("SNV")] > 0

        ref_length = _numpy(pc.utf8_length(table.column("ref")), 0)
        span = _numpy(pc.subtract(table.column("end"), table.column("pos")), 0) + 1
        features[:, 6] = np.log10(1 + np.maximum(ref_length, span)) / 3
        alt_length = np.where(symbolic, 0, _numpy(pc.utf8_length(table.column("alt")), 0))
        features[:, 7] = np.log10(1 + alt_length) / 3

        ref_purine, ref_pyrimidine = _base_kind(table.column("ref"))
        alt_purine, alt_pyrimidine = _base_kind(table.column("alt"))
        features[:, 8] = snv & ((ref_purine & alt_purine) | (ref_pyrimidine & alt_pyrimidine))
        features[:, 9] = snv & ((ref_purine & alt_pyrimidine) | (ref_pyrimidine & alt_purine))

        qual = np.clip(_numpy(table.column("qual"), 0.0), 0, None)
        features[:, 10] = np.log10(1 + qual) / 4

        gt = batch.gt
        n_samples = gt.shape[1]
        present = (gt >= 0).sum(axis=(1, 2))
        af_from_gt = _ratio((gt == 1).sum(axis=(1, 2)), present)
        af = _numpy(table.column("af"), np.nan)
        features[:, 11] = np.where(np.isnan(af), af_from_gt, af)

        has_call = called(gt)
        carrier = carrying(gt)
        n_called = has_call.sum(axis=1)
        n_carriers = carrier.sum(axis=1)
        features[:, 12] = _ratio(n_carriers, n_called)
        features[:, 13] = _ratio(n_carriers - homozygous_alt(gt).sum(axis=1), n_carriers)
        features[:, 14] = 1 - _ratio(n_called, np.full_like(n_called, n_samples)) if n_samples else 0
        features[:, 15] = np.log10(1 + _carrier_mean(batch.dp, carrier)) / 3
        features[:, 16] = np.minimum(_carrier_mean(batch.gq, carrier) / 99, 1)
        return features


def _numpy(array: pa.ChunkedArray | pa.Array, fill: Any) -> np.ndarray:
    return pc.fill_null(array, fill).to_numpy(zero_copy_only=False)


def _base_kind(alleles: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    upper = pc.utf8_upper(alleles)
    purine = _numpy(pc.is_in(upper, pa.array(["A", "G"])), False)
    pyrimidine = _numpy(pc.is_in(upper, pa.array(["C", "T"])), False)
    return purine, pyrimidine


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.zeros(numerator.shape, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _carrier_mean(values: np.ndarray, carrier: np.ndarray) -> np.ndarray:
    """Mean of the non-missing (>= 0) values over carriers, per allele row; 0 when none."""
    usable = carrier & (values >= 0)
    return _ratio(np.where(usable, values, 0).sum(axis=1), usable.sum(axis=1))


def table_schema(dimension: int) -> pa.Schema:
    return pa.schema(
        [
            # Declared a primary key so Lance detects concurrent inserts of one new key.
            pa.field("variant_key", pa.string(), nullable=False,
                     metadata={"lance-schema:unenforced-primary-key": "true"}),
            pa.field("contig", pa.string()),
            pa.field("pos", pa.int64()),
            pa.field("ref", pa.string()),
            pa.field("alt", pa.string()),
            pa.field("variant_type", pa.string()),
            pa.field("vector", pa.list_(pa.float32(), dimension)),
        ]
    )  # fmt: skip


class LanceStore:
    """Writes each batch's variants with their vectors to the LanceDB ``variants`` table."""

    name = STORE

    def __init__(self, settings: Settings, embedder: Embedder | None = None) -> None:
        self.embedder: Embedder = embedder or VariantFeatures()
        self.location = settings.lancedb_location
        self.index_min_rows = settings.lancedb.index_min_rows
        self.lock_timeout_s = settings.lancedb.lock_timeout_s
        self._schema = table_schema(self.embedder.dimension)
        self._table: lancedb.table.Table | None = None
        self._indexed: set[str] = set()
        try:
            self._db = lancedb.connect(self.location)
        except Exception as exc:  # lancedb raises plain ValueError/OSError/RuntimeError
            raise store_error(STORE, f"cannot open {self.location}", exc) from None

    def write(self, batch: AlleleBatch) -> int:
        """Insert the batch's variant keys not stored yet; returns how many were new."""
        return self.write_many([batch])

    def write_many(self, batches: Sequence[AlleleBatch]) -> int:
        """Insert the batches' variant keys not stored yet, as one commit; a key in several
        batches keeps its first batch's vector. Returns how many were new."""
        parts = [self._rows(batch) for batch in batches if len(batch)]
        if not parts:
            return 0
        data = pa.concat_tables(parts)
        if len(parts) > 1:
            rows = first_row_per_key(data.column("variant_key"))
            if rows.size < data.num_rows:
                data = data.take(pa.array(rows))
        try:
            with self._writer_lock():
                variants = self._open_for_write()
                result = variants.merge_insert("variant_key").when_not_matched_insert_all().execute(data)
                self._maintain(variants)
        except StoreError:
            raise
        except Exception as exc:
            raise store_error(STORE, f"writing {data.num_rows} alleles of {describe(batches)} failed", exc) from None
        return int(result.num_inserted_rows)

    def _rows(self, batch: AlleleBatch) -> pa.Table:
        """The batch's first row per key with its vector, in the table's schema."""
        rows = batch.first_rows()
        vectors = self._vectors(batch)[rows]
        table = batch.table.take(pa.array(rows)) if rows.size < len(batch) else batch.table
        return pa.table(
            [
                *(table.column(name) for name in ("variant_key", "contig", "pos", "ref", "alt", "variant_type")),
                pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), self.embedder.dimension),
            ],
            schema=self._schema,
        )

    def close(self) -> None:
        self._table = None

    def _vectors(self, batch: AlleleBatch) -> np.ndarray:
        vectors = np.asarray(self.embedder.embed(batch), dtype=np.float32)
        expected = (len(batch), self.embedder.dimension)
        if vectors.shape != expected:
            raise StoreError(STORE, f"embedder returned shape {vectors.shape}, expected {expected}")
        if not np.isfinite(vectors).all():
            raise StoreError(STORE, f"embedder returned NaN or infinite values for {batch.source_path}")
        return vectors

    def _writer_lock(self) -> AbstractContextManager[None]:
        if "://" in self.location and not self.location.startswith("file://"):
            return nullcontext()  # object store: Lance's commit-conflict check on the key
        root = Path(self.location.removeprefix("file://"))
        return file_lock(root / f"{TABLE}.write.lock", store=STORE, timeout_s=self.lock_timeout_s)

    def _open_for_write(self) -> lancedb.table.Table:
        if self._table is None:
            table = self._db.create_table(TABLE, schema=self._schema, exist_ok=True)
            existing = table.schema.field("vector").type
            if existing != self._schema.field("vector").type:
                raise StoreError(
                    STORE, f"{self.location}/{TABLE} holds vectors of type {existing}, but the embedder "
                    f"makes {self.embedder.dimension} float32: use another lancedb_uri for this embedder",
                )  # fmt: skip
            self._indexed = {index.columns[0] for index in table.list_indices()}
            self._table = table
        else:
            self._table.checkout_latest()
        return self._table

    def _maintain(self, table: lancedb.table.Table) -> None:
        """Index the key at once, the vectors past the size threshold; keep both up to date as
        the module docstring says."""
        if "variant_key" not in self._indexed:
            table.create_index("variant_key", config=BTree())
            self._indexed.add("variant_key")
        if "vector" not in self._indexed and table.count_rows() >= self.index_min_rows:
            table.create_index("vector", config=IvfFlat(distance_type="l2"))
            self._indexed.add("vector")
        indices = {index.columns[0]: index for index in table.list_indices()}
        dataset = table.to_lance()  # pylance's view of the same table: per-index upkeep
        key = indices.get("variant_key")
        if key is not None and _unindexed(key) >= max(OPTIMIZE_MIN_ROWS, _indexed(key) // 4):
            dataset.optimize.optimize_indices(index_names=[key.name])
        vector = indices.get("vector")
        if vector is not None and _unindexed(vector) >= max(OPTIMIZE_MIN_ROWS, _indexed(vector)):
            dataset.optimize.optimize_indices(index_names=[vector.name], num_indices_to_merge=0)
        if len(dataset.get_fragments()) >= COMPACT_FRAGMENTS:
            table.checkout_latest()
            table.optimize()


def _indexed(index: Any) -> int:
    return index.num_indexed_rows or 0


def _unindexed(index: Any) -> int:
    return index.num_unindexed_rows or 0


def count_variants(settings: Settings) -> int:
    """Rows in the ``variants`` table; 0 when it does not exist yet."""
    try:
        table = _open_existing(settings)
        return 0 if table is None else int(table.count_rows())
    except Exception as exc:
        raise store_error(STORE, f"counting {settings.lancedb_location}/{TABLE} failed", exc) from None


def similar_variants(settings: Settings, variant_key: str, k: int = 10) -> list[dict[str, Any]]:
    """The ``k`` stored variants nearest to ``variant_key`` by feature vector (itself excluded).

    Each row: variant_key, contig, pos, ref, alt, variant_type and distance (squared L2, as
    LanceDB reports it), nearest first.
    """
    try:
        table = _open_existing(settings)
        if table is None:
            raise StoreError(STORE, f"no variants stored in {settings.lancedb_location} yet")
        escaped = variant_key.replace("'", "''")
        hit = table.search().where(f"variant_key = '{escaped}'").select(["vector"]).limit(1).to_arrow()
        if hit.num_rows == 0:
            raise StoreError(STORE, f"variant {variant_key} is not stored in {settings.lancedb_location}")
        query = np.asarray(hit.column("vector")[0].values, dtype=np.float32)
        columns = ["variant_key", "contig", "pos", "ref", "alt", "variant_type"]
        search = table.search(query)
        assert isinstance(search, LanceVectorQueryBuilder)  # a vector (ndarray) query
        found = search.distance_type("l2").select([*columns, "_distance"]).limit(k + 1).to_arrow()
    except StoreError:
        raise
    except Exception as exc:
        raise store_error(STORE, f"searching near {variant_key} failed", exc) from None
    rows = [row for row in found.rename_columns({"_distance": "distance"}).to_pylist() if row["variant_key"] != variant_key]
    return rows[:k]


def _open_existing(settings: Settings) -> lancedb.table.Table | None:
    try:
        return lancedb.connect(settings.lancedb_location).open_table(TABLE)
    except ValueError as exc:
        if "not found" in str(exc):
            return None
        raise
