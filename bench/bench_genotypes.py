"""The catalog's packed genotypes: write time and size, and ``carriers`` / ``shared`` query times.

Reads a synthetic cohort (``bench/synth_vcf.py``, cached under bench/out/) through the reader,
writes it with ``CatalogStore`` into a new database of the running PostgreSQL (dropped at the
end), then times:
  * the write (binary COPY of the packed rows) and the size of ``catalog.genotype_arrays``;
  * ``carriers`` of ``--keys`` variant keys (one query each; rows decoded with numpy);
  * ``shared A B`` of ``--pairs`` sample pairs two ways: the SQL of ``shared_variants`` (carrier
    bits tested with ``get_bit`` in the server) and the carrier bit rows fetched and tested with
    numpy in this process.
Both ways must agree; the script says so or exits 1.

    .venv/bin/python bench/bench_genotypes.py --records 10000 --samples 2504 [--keys 200] [--pairs 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from bench_ingest import synthetic
from bench_stores import fresh_postgres

from vcfstream.ledger import db
from vcfstream.settings import Settings, load_settings
from vcfstream.stores.catalog import CatalogStore, carriers, shared_variants
from vcfstream.vcf.chunks import plan_chunks
from vcfstream.vcf.reader import ReadContext, read_chunk
from vcfstream.vcf.source import open_source

# The carrier bit rows of the lists holding both samples, with each sample's position.
_BITS = """
WITH lists AS MATERIALIZED (
    SELECT id, array_position(samples, %(a)s) - 1 AS a, array_position(samples, %(b)s) - 1 AS b
    FROM catalog.sample_lists WHERE %(a)s = ANY (samples) AND %(b)s = ANY (samples)
)
SELECT g.variant_key, g.carriers, l.a, l.b FROM lists l JOIN catalog.genotype_arrays g ON g.sample_list_id = l.id
"""


def shared_with_numpy(settings: Settings, a: str, b: str) -> set[str]:
    with db.connect(settings) as conn:
        rows = conn.execute(_BITS, {"a": a, "b": b}).fetchall()
    if not rows:
        return set()
    keys = [row[0] for row in rows]
    bits = np.frombuffer(b"".join(row[1] for row in rows), dtype=np.uint8).reshape(len(rows), -1)
    ia, ib = rows[0][2], rows[0][3]  # one file: one list, one position each
    both = (bits[:, ia // 8] >> (ia % 8)) & (bits[:, ib // 8] >> (ib % 8)) & 1
    return {keys[k] for k in np.flatnonzero(both)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=2_504)
    parser.add_argument("--keys", type=int, default=200, help="variant keys whose carriers are timed")
    parser.add_argument("--pairs", type=int, default=20, help="sample pairs whose shared variants are timed")
    args = parser.parse_args()

    path = synthetic(args.records, args.samples, "realistic")
    source = open_source(str(path))
    context = ReadContext.open("bench", "GRCh38", source)
    settings = load_settings(home=REPO / load_settings().home)
    with fresh_postgres(settings) as scratch:
        store = CatalogStore(scratch)
        written, keys = 0.0, []
        for chunk in plan_chunks(source, scratch.ingest.chunk_size):
            batch = read_chunk(context, chunk).batch
            keys += batch.table.column("variant_key").to_pylist()
            started = time.perf_counter()
            store.write(batch)
            written += time.perf_counter() - started
        store.close()
        with db.connect(scratch) as conn:
            size = conn.execute("SELECT pg_total_relation_size('catalog.genotype_arrays')").fetchone()
        assert size is not None
        print(f"file: {path.name}: {len(keys):,} alleles x {len(source.samples):,} samples")
        print(f"write (packed, binary COPY): {written:6.2f} s; genotype_arrays {size[0] / 2**20:,.1f} MiB")

        step = max(1, len(keys) // args.keys)
        times = []
        for key in keys[::step][: args.keys]:
            started = time.perf_counter()
            carriers(scratch, key)
            times.append(time.perf_counter() - started)
        print(f"carriers: median {statistics.median(times) * 1e3:6.1f} ms, max {max(times) * 1e3:6.1f} ms "
              f"over {len(times)} keys (each on a new connection)")

        rng = np.random.default_rng(7)
        in_sql, in_numpy, found = [], [], []
        for _ in range(args.pairs):
            a, b = rng.choice(source.samples, size=2, replace=False).tolist()
            started = time.perf_counter()
            by_sql = {row["variant_key"] for row in shared_variants(scratch, a, b)}
            in_sql.append(time.perf_counter() - started)
            started = time.perf_counter()
            by_numpy = shared_with_numpy(scratch, a, b)
            in_numpy.append(time.perf_counter() - started)
            if by_sql != by_numpy:
                print(f"shared {a} {b}: SQL and numpy disagree ({len(by_sql)} against {len(by_numpy)})")
                return 1
            found.append(len(by_sql))
        print(f"shared, SQL get_bit  : median {statistics.median(in_sql) * 1e3:6.1f} ms over {args.pairs} pairs "
              f"(median {statistics.median(found):.0f} variants shared)")
        print(f"shared, numpy bits   : median {statistics.median(in_numpy) * 1e3:6.1f} ms (same answers)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
