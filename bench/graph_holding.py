"""A Kuzu graph already holding ``variants`` variants, for measuring writes into a large store.

The variants are spread evenly over chr1..chr22 and chrX, about 300 bp apart, keyed as
vcfstream keys them under the assembly ``GRCh38`` (so a benchmark file's own assembly never
matches them), each with one carrier among 100 samples of the dataset ``held``. They fill the
series of Variant tables ``vcfstream.stores.graph`` writes, ``per_table`` nodes each (the
default of ``kuzu.variants_per_table``; pass the total for one table, as graphs written before
the series were). Rows go in by COPY, as the store writes them, about 40 s per 10M here.
Built once under bench/out/ and copied for each run (``bench_ingest.py --graph-holding N``).

    .venv/bin/python bench/graph_holding.py --variants 10000000 [--per-table 1000000]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import kuzu
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vcfstream.settings import KuzuSettings
from vcfstream.stores.graph import SCHEMA, start_variant_table

CONTIGS = [f"chr{number}" for number in range(1, 23)] + ["chrX"]
SAMPLES = [f"H{number:03d}" for number in range(100)]
SPACING = 300


def graph_holding(variants: int, per_table: int | None = None) -> Path:
    """The cached graph's database file (built on first use)."""
    per_table = per_table or KuzuSettings().variants_per_table
    path = REPO / "bench" / "out" / f"graph_holding_{variants}_{per_table}" / "graph.kuzu"
    if not path.exists():
        shutil.rmtree(path.parent, ignore_errors=True)
        path.parent.mkdir(parents=True)
        _build(path, variants, per_table)
    return path


def copy_of(source: Path, target: Path) -> None:
    """Copy the database (its file and any beside it, as the WAL) to ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    for item in source.parent.glob(source.name + "*"):
        shutil.copy2(item, target.parent / item.name.replace(source.name, target.name, 1))


def held_positions(variants: int, piece: int) -> Iterator[tuple[str, np.ndarray]]:
    """The held variants' contig and positions, in pieces of at most ``piece`` on one contig."""
    rng = np.random.default_rng(1)
    per_contig = -(-variants // len(CONTIGS))
    done = 0
    for contig in CONTIGS:
        start = 0
        while start < per_contig and done < variants:
            rows = min(piece, per_contig - start, variants - done)
            yield contig, np.arange(start, start + rows, dtype=np.int64) * SPACING + 10_000 + rng.integers(0, SPACING, rows)
            start, done = start + rows, done + rows


def held_keys(contig: str, pos: np.ndarray) -> pa.Array:
    """The held variants' keys at ``pos`` on ``contig`` (A>G SNVs under GRCh38), built by Arrow."""
    return pc.binary_join_element_wise(f"GRCh38:{contig}:", pa.array(pos).cast(pa.string()), ":A:G", "")


def _build(path: Path, variants: int, per_table: int) -> None:
    database = kuzu.Database(str(path), buffer_pool_size=1 << 30)
    conn = kuzu.Connection(database)
    for statement in SCHEMA:
        conn.execute(statement)
    conn.execute("CREATE (:Dataset {name: 'held'})")
    conn.execute("MATCH (d:Dataset {name: 'held'}) UNWIND $names AS name "
                 "CREATE (:Sample {name: name})-[:IN_DATASET]->(d)", {"names": SAMPLES})
    rng = np.random.default_rng(1)
    table, tables, held = "Variant", 0, 0
    for contig, positions in held_positions(variants, 500_000):
        while positions.size:
            if held == per_table:  # the next table of the series, as the store starts it
                tables += 1
                table, held = start_variant_table(conn, tables), 0
            pos, positions = positions[:per_table - held], positions[per_table - held:]
            rows = len(pos)
            keys = held_keys(contig, pos)
            conn.execute(f"COPY {table} FROM $rows", {"rows": pa.table({
                "key": keys, "assembly": pa.repeat(pa.scalar("GRCh38"), rows), "contig": pa.repeat(pa.scalar(contig), rows),
                "pos": pa.array(pos), "ref": pa.repeat(pa.scalar("A"), rows), "alt": pa.repeat(pa.scalar("G"), rows),
                "variant_type": pa.repeat(pa.scalar("snv"), rows), "qual": pa.array(np.full(rows, 50.0))})})
            conn.execute(f"COPY CARRIED_BY FROM $rows (from='{table}', to='Sample')", {"rows": pa.table({
                "variant_key": keys, "sample": pa.array(np.array(SAMPLES)[rng.integers(0, len(SAMPLES), rows)]),
                "dataset": pa.repeat(pa.scalar("held"), rows), "gt": pa.repeat(pa.scalar("0/1"), rows),
                "phased": pa.array(np.zeros(rows, bool)), "dp": pa.array(np.full(rows, 30, np.int32)),
                "gq": pa.array(np.full(rows, 99, np.int32))})})
            held += rows
    conn.close()
    database.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", type=int, default=10_000_000)
    parser.add_argument("--per-table", type=int, default=None, help="Variant nodes per table (default: the setting's)")
    args = parser.parse_args()
    print(graph_holding(args.variants, args.per_table))


if __name__ == "__main__":
    main()
