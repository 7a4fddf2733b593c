"""Write throughput of each store on synthetic allele batches (default 100k alleles, 3 samples).

Each store gets a fresh location (LanceDB and Kuzu under a temporary directory, PostgreSQL in
a new database on the server ``services.up`` finds or starts). The batches are written once
(every allele new) and then again (every allele already stored: the idempotent path a retry
takes), one store after another. Then all stores are written at once, one thread per store,
as the flow's concurrent store tasks do. Rates are alleles per second of wall time.

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

import numpy as np
import orjson
import psycopg
import pyarrow as pa
from psycopg.conninfo import make_conninfo
from pydantic import SecretStr

from vcfstream.ledger import db
from vcfstream.model import ALLELE_SCHEMA, AlleleBatch
from vcfstream.settings import Settings, load_settings
from vcfstream.stores.base import Store
from vcfstream.stores.catalog import CatalogStore
from vcfstream.stores.graph import GraphStore
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alleles", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=load_settings().chunk_size,
                        help="alleles per batch, one write each (default: settings.ingest.chunk_size, as the flow)")
    parser.add_argument("--stores", default="catalog,lancedb,kuzu")
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
            print(
                f"{name:8} first write {args.alleles / first:>9,.0f} alleles/s ({first:5.2f}s, {written:,} new)"
                f"   re-write {args.alleles / again:>9,.0f} alleles/s ({again:5.2f}s, {rewritten} new)"
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
