"""Kuzu: who carries which variant, in which dataset, in which gene. All Kuzu calls live here.

Graph (at ``settings.kuzu_location``)::

    (Sample)-[:IN_DATASET]->(Dataset)
    (Variant)-[:CARRIED_BY {dataset, gt, phased, dp, gq}]->(Sample)
    (Variant)-[:IN_GENE {consequence, impact}]->(Gene)

``Sample`` nodes are keyed by sample name across datasets (a sample in two datasets is one
node with two IN_DATASET edges); each CARRIED_BY edge names the dataset whose call it records,
so ``carriers(..., dataset=...)`` is exact. Edges exist for carriers only (a 1 in the
per-allele GT). IN_GENE edges come from snpEff ``ANN`` or VEP ``CSQ`` annotations (see
``vcfstream.stores.annotations``; a batch carries its header's CSQ field order, ``csq_fields``).

Why Variant -> Sample, stored forward only: Kuzu keeps a node's edges in one adjacency list and
rewrites the lists a bulk COPY appends to. Stored from the sample side, every chunk appended to
the lists of the same few samples, which hold every variant so far: at 1M variants x 3 samples
the edge COPY took 1.1 s per 50k-allele chunk and kept growing. Stored from the variant side,
a chunk only appends lists of its own new variants (0.25 s, nearly flat). Queries that start
from a sample or gene (``shared_variants``) scan the variants' lists instead of an index.

Writes are bulk and idempotent: one transaction per batch that looks up which variant keys
(and, for variants already present, which CARRIED_BY edges of the dataset) exist, then COPYs only
the missing rows from Arrow tables. A variant's IN_GENE edges are written with the variant, so
the first write of a key decides its annotation. Both the lookup (scans of the Variant table
that hash only the nodes within windows of the batch's positions, see ``_by_locus``) and a COPY
into Variant (a merge into the whole primary-key index) cost in proportion to the graph,
whatever the batch size, so the flow hands this store large batches (``vcfstream.runtime.staging``).

Variants live in a series of node tables, ``Variant``, ``Variant_1``, ``Variant_2``, ...: new
variants go to the newest until it holds ``settings.kuzu.variants_per_table`` nodes, and
CARRIED_BY and IN_GENE join every table of the series (``_VariantTables`` says why). Queries
match them all (``MATCH (v:Variant:Variant_1)``); ``graph_counts`` sums them under "Variant".

Several workers: Kuzu allows one read-write database handle per path, so every write opens
the database, works and closes it while holding an exclusive ``flock`` on ``<path>.lock``;
readers (``carriers``, ``shared_variants``) open it read-only under a shared lock. Writers on
one machine therefore take turns (each waits up to ``settings.kuzu.lock_timeout_s``) and a
reader waits for the current write to finish. The lock is local: the database path must not
be shared between machines. The flow writes through a store-writer process
(``vcfstream.stores.writer``), so a crash of Kuzu's native code fails one write, not the run.

Kuzu 0.11.3 is the last upstream release; keeping every Kuzu call in this module keeps a later
replacement to one file. Its maintained fork, ladybug, runs this module unchanged (imported as
``kuzu``) but cannot open Kuzu's files: docs/architecture.md (known limits) says why vcfstream
stays on Kuzu for now.

Example:
    >>> store = GraphStore(settings)  # doctest: +SKIP
    >>> store.write(batch)  # doctest: +SKIP
    1200
    >>> carriers(settings, "GRCh38:chr20:60070:G:A")  # doctest: +SKIP
    [{'sample': 'HG00096', 'dataset': '1kg', 'gt': '0|1', 'phased': True, 'dp': 31, 'gq': 99}]
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import kuzu
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vcfstream.errors import StoreError
from vcfstream.model import AlleleBatch, first_row_per_key
from vcfstream.settings import Settings
from vcfstream.stores.annotations import gene_links
from vcfstream.stores.base import describe, file_lock, store_error
from vcfstream.stores.genotypes import calls_table, carrying

STORE = "kuzu"
T = TypeVar("T")
W = TypeVar("W")
# Buffer pool bytes a carrier edge takes while its COPY's transaction is open, with room to
# spare for the lookups and index pages beside it (measured: see GraphStore.__init__).
_EDGE_BYTES = 1_000
_CARRIER_ROWS = 4_096

# Columns of every Variant table (_VariantTables).
VARIANT_TABLE = ("(key STRING PRIMARY KEY, assembly STRING, contig STRING, pos INT64, ref STRING, alt STRING,"
                  " variant_type STRING, qual DOUBLE)")
SCHEMA = (
    "CREATE NODE TABLE IF NOT EXISTS Dataset(name STRING PRIMARY KEY)",
    "CREATE NODE TABLE IF NOT EXISTS Sample(name STRING PRIMARY KEY)",
    f"CREATE NODE TABLE IF NOT EXISTS Variant{VARIANT_TABLE}",
    "CREATE NODE TABLE IF NOT EXISTS Gene(id STRING PRIMARY KEY, name STRING)",
    ("CREATE REL TABLE IF NOT EXISTS CARRIED_BY(FROM Variant TO Sample, dataset STRING, gt STRING,"
     " phased BOOLEAN, dp INT32, gq INT32) WITH (storage_direction='fwd')"),
    "CREATE REL TABLE IF NOT EXISTS IN_DATASET(FROM Sample TO Dataset)",
    ("CREATE REL TABLE IF NOT EXISTS IN_GENE(FROM Variant TO Gene, consequence STRING, impact STRING)"
     " WITH (storage_direction='fwd')"),
)

# Property order of each table: COPY maps Arrow columns by position.
_VARIANT_COLUMNS = ["variant_key", "assembly", "contig", "pos", "ref", "alt", "variant_type", "qual"]
_CARRIED_BY_COLUMNS = ["variant_key", "sample", "dataset", "gt", "phased", "dp", "gq"]


class GraphStore:
    """Writes samples, variants, genes and CARRIED_BY / IN_DATASET / IN_GENE edges to Kuzu.

    ``last_write`` tells what the latest write added: variants, genes, carried_by, in_gene.
    """

    name = STORE

    def __init__(self, settings: Settings, *, on_failed_write: Callable[[StoreError], NoReturn] | None = None) -> None:
        self.path = Path(settings.kuzu_location)
        self.lock_timeout_s = settings.kuzu.lock_timeout_s
        self.buffer_pool_mb = settings.kuzu.buffer_pool_mb
        # Variant nodes one key lookup may hash (see _by_locus): about a quarter of what failed
        # (64 MiB ran out at about 450k nodes of interleaved datasets: ~150 bytes per node).
        self.hashed_nodes = (self.buffer_pool_mb << 20) // 600
        # Carrier edges one transaction may COPY: a COPY holds its edges in the buffer pool until
        # it commits (10M edges of 1,000 samples filled 1 GiB). See _EDGE_BYTES.
        self.most_edges = max(1, (self.buffer_pool_mb << 20) // _EDGE_BYTES)
        self.variants_per_table = settings.kuzu.variants_per_table
        self.edges_per_table = settings.kuzu.edges_per_table
        self.last_write: dict[str, int] = {}
        # Called with the error instead of rolling back a failed transaction and closing the
        # database: a store-writer process exits there, and Kuzu discards the uncommitted
        # transaction when the next writer opens the database. Rolled back in process instead,
        # a COPY of millions of edges that ran out of buffer pool left Kuzu 0.11 growing its file
        # without bound at the next write (to 45 GB, then aborting; measured 2026-12-07).
        self.on_failed_write = on_failed_write

    def write(self, batch: AlleleBatch) -> int:
        """Add what the graph lacks of the batch; returns the number of new Variant nodes."""
        return self.write_many([batch])

    def write_many(self, batches: Sequence[AlleleBatch]) -> int:
        """Add what the graph lacks of the batches (one per file, one dataset); returns the
        number of new Variant nodes.

        One transaction for the batches' samples, then one per part of at most
        ``self.most_edges`` carrier edges (``_parts``), across files: a cohort of small files is
        a few large writes, not one per file. New variants go to the newest Variant table
        (``_VariantTables``). A failed part leaves the parts before it committed, and the error
        says so: a retry finds them and writes the rest."""
        counts = dict.fromkeys(("variants", "genes", "in_gene", "carried_by"), 0)
        done = 0
        with _open(self.path, read_only=False, timeout_s=self.lock_timeout_s, buffer_pool_mb=self.buffer_pool_mb) as conn:
            try:
                self._transaction(conn, self._write_samples, batches)
                tables = _VariantTables(conn, self.variants_per_table, self.edges_per_table)
                for part in _parts(batches, self.most_edges):
                    for name, count in self._transaction(conn, self._write, (part, tables)).items():
                        counts[name] += count
                    done += part.table.num_rows
            except Exception as exc:
                hint = (f" (raise VCFSTREAM_KUZU_BUFFER_POOL_MB, now {self.buffer_pool_mb})"
                        if "buffer pool is full" in str(exc) else "")
                kept = f"; the first {done} are stored, a retry writes the rest" if done else ""
                alleles = sum(len(batch) for batch in batches)
                error = store_error(STORE, f"writing {alleles} alleles of {describe(batches)} failed{hint}{kept}", exc)
                if self.on_failed_write is not None:
                    self.on_failed_write(error)  # does not return: the transaction stays as it failed
                raise error from None
        self.last_write = counts
        return counts["variants"]

    def close(self) -> None:
        """Nothing stays open between writes (the database is opened per write)."""

    def _transaction(self, conn: kuzu.Connection, work: Callable[[kuzu.Connection, W], T], what: W) -> T:
        conn.execute("BEGIN TRANSACTION")
        try:
            result = work(conn, what)
            conn.execute("COMMIT")
        except Exception:
            if self.on_failed_write is None:
                _rollback(conn)
            raise
        return result

    @staticmethod
    def _write_samples(conn: kuzu.Connection, batches: Sequence[AlleleBatch]) -> None:
        datasets = {batch.dataset for batch in batches}
        if len(datasets) != 1:
            raise ValueError(f"one write holds one dataset, not {len(datasets)}")
        dataset = datasets.pop()
        conn.execute("MERGE (:Dataset {name: $dataset})", {"dataset": dataset})
        samples = list(dict.fromkeys(name for batch in batches for name in batch.samples))
        if samples:
            conn.execute(
                "MATCH (d:Dataset {name: $dataset}) UNWIND $samples AS name "
                "MERGE (s:Sample {name: name}) MERGE (s)-[:IN_DATASET]->(d)",
                {"dataset": dataset, "samples": samples},
            )

    def _write(self, conn: kuzu.Connection, work: tuple[_Part, _VariantTables]) -> dict[str, int]:
        """Variants, genes and carrier edges of a part, whose rows have distinct keys: new
        variants into the newest Variant table, each edge beside its variant's table."""
        part, tables = work
        dataset, table = part.dataset, part.table
        present = _by_locus(conn, table, "LOAD FROM $keys MATCH (v:{variants}) WHERE {in_range} "
                                         "AND v.key = variant_key RETURN v.key AS key, label(v) AS variant_table",
                            ["key", "variant_table"], self.hashed_nodes, tables.labels)
        is_new = pc.invert(pc.is_in(table.column("variant_key"), value_set=present.column("key")))
        new_variants = table.filter(is_new)
        their_edges = pc.is_in(part.edges.column("variant_key"), value_set=new_variants.column("variant_key"))
        newest = tables.take(conn, new_variants.num_rows, pc.sum(their_edges).as_py() or 0)
        _copy(conn, newest, new_variants.select(_VARIANT_COLUMNS))

        links = part.links
        if present.num_rows:
            links = links.filter(pc.is_in(links.column("variant_key"), value_set=new_variants.column("variant_key")))
        genes = (
            links.group_by("gene_id", use_threads=False)
            .aggregate([("gene_name", "first")])
            .select(["gene_id", "gene_name_first"])
        )
        known = _arrow(conn, "LOAD FROM $genes MATCH (g:Gene {id: gene_id}) RETURN g.id AS id", genes=genes)
        new_genes = genes.filter(pc.invert(pc.is_in(genes.column("gene_id"), value_set=known.column("id"))))
        _copy(conn, "Gene", new_genes)
        _copy(conn, "IN_GENE", links.select(["variant_key", "gene_id", "consequence", "impact"]), pair=(newest, "Gene"))

        edges = part.edges
        edges = edges.append_column("dataset", pa.repeat(pa.scalar(dataset, pa.string()), edges.num_rows))
        if present.num_rows and edges.num_rows:
            existing = _by_locus(
                conn, table.filter(pc.invert(is_new)),
                "LOAD FROM $keys MATCH (v:{variants})-[c:CARRIED_BY]->(s:Sample) WHERE {in_range} "
                "AND v.key = variant_key AND c.dataset = $dataset RETURN s.name AS sample, v.key AS variant_key",
                ["sample", "variant_key"], self.hashed_nodes, tables.labels, dataset=dataset,
            )  # fmt: skip
            edges = edges.join(existing, keys=["sample", "variant_key"], join_type="left anti", use_threads=False)
        # an edge goes beside its variant's table: the newest for new variants
        where = pc.take(present.column("variant_table"), pc.index_in(edges.column("variant_key"), present.column("key")))
        where = pc.fill_null(where, newest)
        for name in pc.unique(where).to_pylist():
            _copy(conn, "CARRIED_BY", edges.filter(pc.equal(where, name)).select(_CARRIED_BY_COLUMNS),
                  pair=(name, "Sample"))
        return {
            "variants": new_variants.num_rows, "genes": new_genes.num_rows,
            "in_gene": links.num_rows, "carried_by": edges.num_rows,
        }  # fmt: skip


class _VariantTables:
    """The Variant node tables: ``Variant``, then ``Variant_1``, ``Variant_2``, ... each a FROM
    table of CARRIED_BY and IN_GENE (a Kuzu rel table may join several pairs of node tables).

    Every COPY into a Kuzu 0.11 rel table walks all node groups (131,072 nodes) of its FROM node
    table and, in each group the rel table was written in before, builds the group's edge index
    in memory, outside the buffer pool, until the database closes: about 7.6 MB a group, so
    600 MB for any edge added beside a 10M-node Variant table, however few (measured). And appending to
    a node group takes buffer pool in proportion to the edges already in it (about 42 bytes an
    edge: a dense 1,000-sample file's 9.7M edges needed a 1 GiB pool). New variants therefore
    go to the newest table until it holds ``most_variants`` nodes or ``most_edges`` carrier
    edges, then a new one starts; a write pays for the tables whose variants it adds edges to,
    not for the whole graph. Graphs written before the series existed are its first table."""

    def __init__(self, conn: kuzu.Connection, most_variants: int, most_edges: int) -> None:
        self.most_variants, self.most_edges = most_variants, most_edges
        self.names = _variant_tables(conn)
        self.variants = _count(conn, f"MATCH (v:{self.names[-1]})", {})
        self.edges = _count(conn, f"MATCH (v:{self.names[-1]})-[c:CARRIED_BY]->()", {}) if self.variants else 0

    @property
    def labels(self) -> str:
        """Every Variant table, as a Cypher label union (``Variant:Variant_1``)."""
        return _labels(self.names)

    def take(self, conn: kuzu.Connection, variants: int, edges: int) -> str:
        """The table to add ``variants`` new variants with ``edges`` carrier edges to: the
        newest, or a new one if the newest has no room for them (a part's variants stay together,
        so a table may pass a bound by one part's). In the write's transaction: a table started
        by a failed write goes with it."""
        full = self.variants + variants > self.most_variants or self.edges + edges > self.most_edges
        if self.variants and full:
            self.names.append(start_variant_table(conn, len(self.names)))
            self.variants = self.edges = 0
        self.variants += variants
        self.edges += edges
        return self.names[-1]


def start_variant_table(conn: kuzu.Connection, number: int) -> str:
    """Create ``Variant_<number>``, the next table of the series, joined to CARRIED_BY and
    IN_GENE; returns its name."""
    name = f"Variant_{number}"
    conn.execute(f"CREATE NODE TABLE IF NOT EXISTS {name}{VARIANT_TABLE}")
    conn.execute(f"ALTER TABLE CARRIED_BY ADD IF NOT EXISTS FROM {name} TO Sample")
    conn.execute(f"ALTER TABLE IN_GENE ADD IF NOT EXISTS FROM {name} TO Gene")
    return name


@dataclass(frozen=True, slots=True)
class _Part:
    """What one transaction writes: alleles of distinct keys, their carrier edges (variant_key,
    sample, gt, phased, dp, gq) and their gene links."""

    dataset: str
    table: pa.Table
    edges: pa.Table
    links: pa.Table


def _parts(batches: Sequence[AlleleBatch], most_edges: int) -> Iterator[_Part]:
    """The batches' first rows per key, in order, as parts holding at most ``most_edges``
    carrier edges each (a row holding more is a part alone): a wide file's group of chunks can
    hold tens of millions of carrier calls, and a cohort's group many small files. A key in
    several files of a part keeps its first file's row and annotation; its edges come from
    every file (a sample in two files keeps its first call)."""
    slices: list[tuple[AlleleBatch, np.ndarray]] = []
    room = most_edges
    for batch in batches:
        rows = batch.first_rows()
        per_row = np.zeros(len(rows), dtype=np.int64)
        for start in range(0, len(rows), _CARRIER_ROWS):  # the (rows, samples, ploidy) test a slice at a time
            per_row[start:start + _CARRIER_ROWS] = carrying(batch.gt[rows[start:start + _CARRIER_ROWS]]).sum(axis=1)
        start = 0
        while start < len(rows):
            # the last row at which the running total still fits the room left
            within = np.cumsum(per_row[start:]) <= room
            fit = int(np.argmin(within)) if not within.all() else len(within)
            if fit == 0 and slices:  # no room left: write what is gathered first
                yield _part(slices)
                slices, room = [], most_edges
                continue
            stop = start + max(1, fit)
            slices.append((batch, rows[start:stop]))
            room -= int(per_row[start:stop].sum())
            start = stop
    if slices:
        yield _part(slices)


def _part(slices: list[tuple[AlleleBatch, np.ndarray]]) -> _Part:
    tables, edges, links = [], [], []
    seen: pa.Array | None = None  # keys of the part's earlier slices
    for batch, rows in slices:
        if rows.size == len(batch) and np.array_equal(rows, np.arange(len(batch))):
            sub = batch
        else:
            sub = AlleleBatch(batch.dataset, batch.source_path, batch.source_digest, batch.samples,
                              batch.table.take(pa.array(rows)), batch.gt[rows], batch.phased[rows],
                              batch.dp[rows], batch.gq[rows])
        table = sub.table
        edges.append(calls_table(sub, carrying(sub.gt)))
        if seen is not None:
            table = table.filter(pc.invert(pc.is_in(table.column("variant_key"), value_set=seen)))
        keys = table.column("variant_key").combine_chunks()
        seen = keys if seen is None else pa.concat_arrays([seen, keys])
        tables.append(table)
        links.append(gene_links(table, batch.csq_fields))
    all_edges = pa.concat_tables(edges)
    if len(slices) > 1 and all_edges.num_rows:  # a sample in two files: its first call
        rows = first_row_per_key(pc.binary_join_element_wise(all_edges.column("variant_key"),
                                                             all_edges.column("sample"), "\t"))
        if rows.size < all_edges.num_rows:
            all_edges = all_edges.take(pa.array(rows))
    return _Part(slices[0][0].dataset, pa.concat_tables(tables), all_edges, pa.concat_tables(links))


def carriers(settings: Settings, variant_key: str, dataset: str | None = None) -> list[dict[str, Any]]:
    """Samples carrying ``variant_key`` (in ``dataset`` if given), with their call.

    Rows: sample, dataset, gt, phased, dp, gq; ordered by dataset then sample.
    """
    query = (
        "MATCH (v:<Variant> {key: $key})-[c:CARRIED_BY]->(s:Sample) WHERE $dataset IS NULL OR c.dataset = $dataset "
        "RETURN s.name AS sample, c.dataset AS dataset, c.gt AS gt, c.phased AS phased, c.dp AS dp, c.gq AS gq "
        "ORDER BY dataset, sample"
    )
    return _read(settings, query, key=variant_key, dataset=dataset)


def shared_variants(settings: Settings, sample_a: str, sample_b: str, dataset: str | None = None) -> list[dict[str, Any]]:
    """Variants both samples carry (both calls in ``dataset`` if given), by position.

    Rows: variant_key, contig, pos, ref, alt, variant_type.
    """
    query = (
        "MATCH (a:Sample {name: $a})<-[ca:CARRIED_BY]-(v:<Variant>)-[cb:CARRIED_BY]->(b:Sample {name: $b}) "
        "WHERE $dataset IS NULL OR (ca.dataset = $dataset AND cb.dataset = $dataset) "
        "RETURN DISTINCT v.key AS variant_key, v.contig AS contig, v.pos AS pos, v.ref AS ref, v.alt AS alt, "
        "v.variant_type AS variant_type ORDER BY contig, pos, variant_key"
    )
    return _read(settings, query, a=sample_a, b=sample_b, dataset=dataset)


def variant_genes(settings: Settings, variant_key: str) -> list[dict[str, Any]]:
    """Genes a variant is annotated in: gene_id, gene_name, consequence, impact."""
    query = (
        "MATCH (v:<Variant> {key: $key})-[r:IN_GENE]->(g:Gene) RETURN g.id AS gene_id, g.name AS gene_name, "
        "r.consequence AS consequence, r.impact AS impact ORDER BY gene_id"
    )
    return _read(settings, query, key=variant_key)


def graph_counts(settings: Settings) -> dict[str, int]:
    """Nodes and edges per table, e.g. {"Variant": 120, "CARRIED_BY": 300, ...}, with every Variant
    table under "Variant" (``_VariantTables``); empty if no graph."""
    counts: dict[str, int] = {}
    for table in ("Dataset", "Sample", "<Variant>", "Gene"):
        for row in _read(settings, f"MATCH (n:{table}) RETURN count(n) AS n"):
            counts[table.strip("<>")] = row["n"]
    for table in ("CARRIED_BY", "IN_DATASET", "IN_GENE"):
        for row in _read(settings, f"MATCH ()-[r:{table}]->() RETURN count(r) AS n"):
            counts[table] = row["n"]
    return counts


def _read(settings: Settings, query: str, **params: Any) -> list[dict[str, Any]]:
    """``query``'s rows, with ``<Variant>`` standing for every Variant table (``_VariantTables``)."""
    path = Path(settings.kuzu_location)
    if not path.exists():
        return []
    with _open(path, read_only=True, timeout_s=settings.kuzu.lock_timeout_s,
               buffer_pool_mb=settings.kuzu.buffer_pool_mb) as conn:
        try:
            query = query.replace("<Variant>", _labels(_variant_tables(conn)))
            return _arrow(conn, query, **params).to_pylist()
        except Exception as exc:
            raise store_error(STORE, f"querying {path} failed", exc) from None


@contextmanager
def _open(path: Path, *, read_only: bool, timeout_s: float, buffer_pool_mb: int) -> Iterator[kuzu.Connection]:
    """A connection to the database at ``path``, held under its file lock, closed after use.
    ``buffer_pool_mb`` caps Kuzu's page cache, which also holds a write's uncommitted rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(path.name + ".lock")
    with file_lock(lock, store=STORE, shared=read_only, timeout_s=timeout_s):
        try:
            database = kuzu.Database(str(path), read_only=read_only, buffer_pool_size=buffer_pool_mb << 20)
            conn = kuzu.Connection(database)
            if not read_only:
                for statement in SCHEMA:
                    conn.execute(statement)
        except Exception as exc:
            raise store_error(STORE, f"cannot open {path}", exc) from None
        try:
            yield conn
        finally:
            conn.close()
            database.close()


def _by_locus(conn: kuzu.Connection, table: pa.Table, query: str, returns: Sequence[str], most: int,
              labels: str, **params: Any) -> pa.Table:
    """``query`` run per position window of ``table``, with ``$keys`` the window's variant keys,
    ``{variants}`` the Variant tables' ``labels`` and ``{in_range}`` a filter on the Variant nodes
    to its contig and positions; the string columns ``returns`` of all answers.

    Kuzu answers a key join by hashing the Variant side, in its buffer pool: over every node, a
    graph of about 8.5M variants no longer fit the default 1 GiB pool and every write failed. The
    filter, applied before the hash, keeps that to the nodes in the window, and a window holding
    more than ``most`` nodes (other datasets' variants among the batch's) is halved first.
    """
    in_range = "v.contig = $contig AND v.pos >= $first AND v.pos <= $last"
    contigs = table.column("contig")
    parts = []
    for contig in pc.unique(contigs).to_pylist():
        windows = [table.filter(pc.equal(contigs, contig)).sort_by("pos")]
        while windows:
            rows = windows.pop()
            pos = rows.column("pos")
            window = {"contig": contig, "first": pos[0].as_py(), "last": pos[-1].as_py()}
            if window["first"] < window["last"] and _count(conn, f"MATCH (v:{labels}) WHERE {in_range}", window) > most:
                cut = pos[rows.num_rows // 2].as_py()
                below = pc.less(pos, cut) if cut > window["first"] else pc.less_equal(pos, cut)
                windows += [rows.filter(below), rows.filter(pc.invert(below))]
                continue
            parts.append(_arrow(conn, query.format(variants=labels, in_range=in_range), keys=rows.select(["variant_key"]),
                                **window, **params))
    return pa.concat_tables(parts) if parts else pa.table({name: pa.array([], pa.string()) for name in returns})


def _variant_tables(conn: kuzu.Connection) -> list[str]:
    """The graph's Variant tables, in order (``_VariantTables``)."""
    tables = _arrow(conn, "CALL show_tables() RETURN name").column("name").to_pylist()
    numbered = [found for name in tables if (found := re.fullmatch(r"Variant(?:_(\d+))?", name))]
    return [found.group(0) for found in sorted(numbered, key=lambda found: int(found.group(1) or 0))]


def _labels(tables: Sequence[str]) -> str:
    return ":".join(tables)


def _count(conn: kuzu.Connection, match: str, params: dict[str, Any]) -> int:
    return _arrow(conn, f"{match} RETURN count(*) AS n", **params).column("n")[0].as_py()


def _arrow(conn: kuzu.Connection, query: str, **params: Any) -> pa.Table:
    result = conn.execute(query, params)
    assert isinstance(result, kuzu.QueryResult)
    return result.get_as_arrow()


def _copy(conn: kuzu.Connection, table_name: str, rows: pa.Table, pair: tuple[str, str] | None = None) -> None:
    """COPY ``rows`` into ``table_name``; a rel table's ``pair`` names the node tables it joins."""
    if rows.num_rows:
        options = f" (from='{pair[0]}', to='{pair[1]}')" if pair else ""
        conn.execute(f"COPY {table_name} FROM $rows{options}", {"rows": rows})


def _rollback(conn: kuzu.Connection) -> None:
    try:
        conn.execute("ROLLBACK")
    except RuntimeError:
        pass  # no transaction was open

