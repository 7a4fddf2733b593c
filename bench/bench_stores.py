"""Write throughput of each store on synthetic allele batches (default 100k alleles, 3 samples),
beside the raw library writing the same rows.

Each store gets a fresh location (LanceDB and Kuzu under a temporary directory, PostgreSQL in
a new database on the server ``services.up`` finds or starts). The batches are written once
(every allele new) and then again (every allele already stored: the idempotent path a retry
takes), one store after another. Then all stores are written at once, one thread per store,
as the flow's concurrent store tasks do. Rates are alleles per second of wall time.

The reference for each store, timed over the same batches in a fresh location, is its library
writing the rows the store builds from them, with nothing else (no key lookups, no indexes):
  * catalog: psycopg binary COPY (``write_row``) of the variant rows into a table like
    ``catalog.variants`` without its indexes, and of the packed genotype rows (the bytes the
    store sends) into one like ``catalog.genotype_arrays``;
  * lancedb: ``table.add`` of the rows (with their vectors) into a new table;
  * kuzu: ``COPY`` of the Variant rows and the carrier edges into empty tables.
The store's time over the reference's is the figure: how much the store adds to its library.
``--raw-indexed`` gives the catalog's reference the two key indexes the catalog needs.

    .venv/bin/python bench/bench_stores.py --alleles 100000 --samples 3 --chunk 50000
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from functools import partial
from pathlib import Path

import kuzu
import lancedb
import numpy as np
import orjson
import psycopg
import pyarrow as pa
from psycopg.conninfo import make_conninfo
from psycopg.types.json import set_json_dumps
from pydantic import SecretStr

from vcfstream.ledger import db
from vcfstream.model import ALLELE_SCHEMA, AlleleBatch
from vcfstream.settings import Settings, load_settings
from vcfstream.stores.base import Store
from vcfstream.stores.catalog import (
    _COPY_HEADER,
    _COPY_TRAILER,
    _PACKED_COLUMNS,
    CatalogStore,
    _binary_rows,
    _variant_rows,
)
from vcfstream.stores.genotypes import pack_genotypes
from vcfstream.stores.graph import _CARRIED_BY_COLUMNS, _VARIANT_COLUMNS, SCHEMA, GraphStore, _parts
from vcfstream.stores.lance import LanceStore

BASES = np.array(list("ACGT"))


def synthetic_batches(alleles: int, samples: int, chunk: int, seed: int = 1) -> list[AlleleBatch]:
    """~85% SNVs, 8% deletions, 7% insertions; 3% missing calls; INFO AC/AN/AF/DP per allele."""
    rng = np.random.default_rng(seed)
    names = [f"S{i:04d}" for i in range(samples)]
    pos = np.cumsum(rng.integers(1, 200, alleles))
    kind = rng.choice(3, alleles, p=[0.85, 0.08, 0.07])
    base_index = rng.integers(0, 4, alleles)
    base = BASES[base_index].astype(object)
    other = BASES[(base_index + rng.integers(1, 4, alleles)) % 4].astype(object)
    extra = np.array(["".join(rng.choice(BASES, 3)) for _ in range(64)], dtype=object)[rng.integers(0, 64, alleles)]
    ref = np.where(kind == 1, base + extra, base)
    alt = np.where(kind == 0, other, np.where(kind == 1, base, base + extra))
    vtype = np.array(["SNV", "deletion", "insertion"], dtype=object)[kind]
    gt = rng.choice(np.array([0, 1], np.int8), size=(alleles, samples, 2), p=[0.7, 0.3])
    gt[rng.random((alleles, samples)) < 0.03] = -1
    phased = rng.random((alleles, samples)) < 0.5
    dp = rng.integers(5, 60, (alleles, samples)).astype(np.int32)
    gq = rng.integers(10, 99, (alleles, samples)).astype(np.int32)
    ac = (gt == 1).sum(axis=(1, 2))
    an = (gt >= 0).sum(axis=(1, 2))
    af = np.divide(ac, an, out=np.zeros(alleles), where=an > 0)
    keys = [f"GRCh38:chr1:{p}:{r}:{a}" for p, r, a in zip(pos.tolist(), ref, alt, strict=True)]
    info = [
        orjson.dumps({"AC": [int(c)], "AN": int(n), "AF": [round(float(f), 4)], "DP": int(d)}).decode()
        for c, n, f, d in zip(ac, an, af, dp.sum(axis=1), strict=True)
    ]
    table = pa.table(
        {
            "message_id": pa.array([uuid.UUID(int=i + 1).bytes for i in range(alleles)], pa.binary(16)),
            "variant_key": keys, "assembly": ["GRCh38"] * alleles, "contig": ["chr1"] * alleles,
            "pos": pos, "ref": ref.tolist(), "alt": alt.tolist(),
            "end": pos + np.array([len(r) for r in ref]) - 1, "variant_type": vtype.tolist(),
            "allele_index": np.ones(alleles, np.int16), "n_alts": np.ones(alleles, np.int16),
            "vcf_id": pa.nulls(alleles, pa.string()), "qual": rng.uniform(10, 3000, alleles),
            "filters": [["PASS"]] * alleles, "info": info, "af": af,
            "line": pa.nulls(alleles, pa.int64()), "value": pa.nulls(alleles, pa.binary()),
        },
        schema=ALLELE_SCHEMA,
    )  # fmt: skip
    return [
        AlleleBatch("bench", "synthetic.vcf.gz", "ee" * 32, names, table.slice(start, chunk),
                    gt[start:start + chunk], phased[start:start + chunk], dp[start:start + chunk],
                    gq[start:start + chunk])
        for start in range(0, alleles, chunk)
    ]


@contextmanager
def fresh_postgres(settings: Settings) -> Iterator[Settings]:
    from vcfstream.devservices import services

    report = services.up(settings, ["postgres"])
    base = settings.postgres_dsn()
    name = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    fresh = settings.with_groups(postgres={"dsn": SecretStr(make_conninfo(base, dbname=name))})
    try:
        db.migrate(fresh)
        yield fresh
    finally:
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if report["postgres"].get("started"):
            services.down(settings, ["postgres"])


def timed_writes(make_store: Callable[[], Store], batches: list[AlleleBatch]) -> tuple[float, int]:
    """Seconds to write every batch (a new store object per batch, as the flow's tasks do)."""
    started = time.perf_counter()
    written = 0
    for batch in batches:
        store = make_store()
        try:
            written += store.write(batch)
        finally:
            store.close()
    return time.perf_counter() - started, written


def raw_catalog(settings: Settings, batches: list[AlleleBatch], *, indexed: bool = False) -> float:
    """Seconds for psycopg's binary COPY of the rows the catalog writes, into unindexed tables
    (``indexed``: with the catalog's key indexes, the variants' primary key and the packed
    rows' index on the key)."""
    with psycopg.connect(settings.postgres_dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE raw_variants (LIKE catalog.variants INCLUDING DEFAULTS)")
        conn.execute("CREATE TABLE raw_packed (LIKE catalog.genotype_arrays INCLUDING DEFAULTS)")
        if indexed:
            conn.execute("ALTER TABLE raw_variants ADD PRIMARY KEY (variant_key)")
            conn.execute("CREATE INDEX ON raw_packed (variant_key)")
        types = ["text", "text", "text", "bigint", "text", "text", "bigint", "text", "text", "float8", "text[]",
                 "jsonb", "text", "text", "bool"]
        # the same variant rows as the store, as Python values (binary COPY takes them row by row)
        rows = [_variant_rows(b.table, {"dataset": b.dataset, "sha256": b.source_digest, "calls": True}) for b in batches]
        # the filters as the lists the batch holds (the store renders them as text[] literals)
        values = [[[*row[:10], filters, None if row[11] is None else orjson.loads(row[11]), *row[12:]]
                   for row, filters in zip(zip(*(t.column(i).to_pylist() for i in range(t.num_columns)), strict=True),
                                           b.table.column("filters").to_pylist(), strict=True)]
                  for t, b in zip(rows, batches, strict=True)]
        set_json_dumps(orjson.dumps, context=conn)
        packed = [_binary_rows(pack_genotypes(b, np.arange(len(b))), 1, b.dataset, b.table.column("variant_key"))
                  for b in batches]
        started = time.perf_counter()
        for table, per_batch, buffer in zip(rows, values, packed, strict=True):
            with conn.cursor().copy(f"COPY raw_variants ({', '.join(table.column_names)}) FROM STDIN (FORMAT binary)") as copy:
                copy.set_types(types)
                for row in per_batch:
                    copy.write_row(row)
            with conn.cursor().copy(f"COPY raw_packed ({', '.join(_PACKED_COLUMNS)}) FROM STDIN (FORMAT binary)") as copy:
                copy.write(_COPY_HEADER)
                copy.write(buffer)
                copy.write(_COPY_TRAILER)
        return time.perf_counter() - started


def raw_lancedb(root: Path, batches: list[AlleleBatch], settings: Settings) -> float:
    """Seconds for LanceDB's ``table.add`` of the rows (vectors included) the store builds."""
    store = LanceStore(settings)
    rows = [store._rows(batch) for batch in batches]
    table = lancedb.connect(str(root)).create_table("variants", schema=rows[0].schema)
    started = time.perf_counter()
    for part in rows:
        table.add(part)
    return time.perf_counter() - started


def raw_kuzu(root: Path, batches: list[AlleleBatch]) -> float:
    """Seconds for Kuzu's COPY of the Variant rows and carrier edges the store builds, into empty tables."""
    root.mkdir(parents=True, exist_ok=True)
    database = kuzu.Database(str(root / "graph.kuzu"))
    conn = kuzu.Connection(database)
    for statement in SCHEMA:
        conn.execute(statement)
    samples = list(dict.fromkeys(name for batch in batches for name in batch.samples))
    conn.execute("UNWIND $names AS name CREATE (:Sample {name: name})", {"names": samples})
    parts = [part for batch in batches for part in _parts([batch], 2_000_000)]
    edges = [part.edges.append_column("dataset", pa.repeat(pa.scalar(part.dataset), part.edges.num_rows))
             .select(_CARRIED_BY_COLUMNS) for part in parts]
    started = time.perf_counter()
    for part, carried in zip(parts, edges, strict=True):
        conn.execute("COPY Variant FROM $rows", {"rows": part.table.select(_VARIANT_COLUMNS)})
        conn.execute("COPY CARRIED_BY FROM $rows (from='Variant', to='Sample')", {"rows": carried})
    seconds = time.perf_counter() - started
    conn.close()
    database.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alleles", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=load_settings().stores.batch_alleles,
                        help="alleles per batch, one write each (default: settings.stores.batch_alleles, the most "
                             "a run's store write holds)")
    parser.add_argument("--stores", default="catalog,lancedb,kuzu")
    parser.add_argument("--raw-indexed", action="store_true",
                        help="the catalog's reference COPYs into tables with the catalog's key indexes")
    args = parser.parse_args()

    batches = synthetic_batches(args.alleles, args.samples, args.chunk)
    names = args.stores.split(",")
    makers: dict[str, Callable[[Settings], Store]] = {"lancedb": LanceStore, "kuzu": GraphStore, "catalog": CatalogStore}
    print(f"{args.alleles:,} alleles x {args.samples} samples in {len(batches)} batches of {args.chunk:,}")
    with tempfile.TemporaryDirectory(prefix="bench-stores-") as tmp:
        for name in names:
            with _store_settings(Path(tmp) / f"alone-{name}", with_postgres=name == "catalog") as settings:
                first, written = timed_writes(partial(makers[name], settings), batches)
                again, rewritten = timed_writes(partial(makers[name], settings), batches)
            with _store_settings(Path(tmp) / f"raw-{name}", with_postgres=name == "catalog") as settings:
                if name == "catalog":
                    raw = raw_catalog(settings, batches, indexed=args.raw_indexed)
                elif name == "lancedb":
                    raw = raw_lancedb(Path(tmp) / f"raw-{name}" / "lancedb", batches, settings)
                else:
                    raw = raw_kuzu(Path(tmp) / f"raw-{name}", batches)
            print(
                f"{name:8} first write {args.alleles / first:>9,.0f} alleles/s ({first:5.2f}s, {written:,} new)"
                f"   re-write {args.alleles / again:>9,.0f} alleles/s ({again:5.2f}s, {rewritten} new)"
                f"   raw library {args.alleles / raw:>9,.0f} alleles/s ({raw:5.2f}s): first write / raw {first / raw:.2f}x"
            )
        with _store_settings(Path(tmp) / "together", with_postgres="catalog" in names) as settings:
            started = time.perf_counter()
            with ThreadPoolExecutor(len(names)) as pool:
                futures = [pool.submit(timed_writes, lambda n=n: makers[n](settings), batches) for n in names]
                for future in futures:
                    future.result()
            together = time.perf_counter() - started
        print(f"all stores at once, one thread each: {args.alleles / together:,.0f} alleles/s ({together:.2f}s)")


@contextmanager
def _store_settings(root: Path, *, with_postgres: bool) -> Iterator[Settings]:
    settings = load_settings(lancedb={"uri": str(root / "lancedb")}, kuzu={"path": root / "graph.kuzu"})
    with ExitStack() as stack:
        yield stack.enter_context(fresh_postgres(settings)) if with_postgres else settings


if __name__ == "__main__":
    main()
