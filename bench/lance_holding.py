"""A LanceDB ``variants`` table already holding ``variants`` variants, for measuring writes into a
large store.

The rows have the keys of ``bench/graph_holding.py`` (spread over chr1..chr22 and chrX under
the assembly ``GRCh38``, so a benchmark file's own keys never match them) and random vectors.
They go in as the store leaves its table after many writes: the store's schema, fragments of
500k rows, the key's BTree index and the vectors' IVF_FLAT index over every row. About 2 minutes
per 10M here. Built once under bench/out/ and copied for each run (``bench_ingest.py
--lance-holding N``).

    .venv/bin/python bench/lance_holding.py --variants 10000000
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import lancedb
import numpy as np
import pyarrow as pa
from lancedb.index import BTree, IvfFlat

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from graph_holding import held_keys, held_positions

from vcfstream.stores.lance import FEATURE_NAMES, TABLE, table_schema

ROWS_PER_WRITE = 500_000


def lance_holding(variants: int) -> Path:
    """The cached LanceDB directory (built on first use)."""
    path = REPO / "bench" / "out" / f"lance_holding_{variants}" / "lancedb"
    if not path.exists():
        shutil.rmtree(path.parent, ignore_errors=True)
        _build(path, variants)
    return path


def _build(path: Path, variants: int) -> None:
    dimension = len(FEATURE_NAMES)
    schema = table_schema(dimension)
    table = lancedb.connect(str(path)).create_table(TABLE, schema=schema)
    rng = np.random.default_rng(2)
    for contig, pos in held_positions(variants, ROWS_PER_WRITE):
        rows = len(pos)
        table.add(pa.table([
            held_keys(contig, pos), pa.repeat(pa.scalar(contig), rows),
            pa.array(pos), pa.repeat(pa.scalar("A"), rows), pa.repeat(pa.scalar("G"), rows),
            pa.repeat(pa.scalar("SNV"), rows),
            pa.FixedSizeListArray.from_arrays(pa.array(rng.random(rows * dimension, dtype=np.float32)), dimension),
        ], schema=schema))
    table.create_index("variant_key", config=BTree())
    table.create_index("vector", config=IvfFlat(distance_type="l2"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", type=int, default=10_000_000)
    args = parser.parse_args()
    print(lance_holding(args.variants))


if __name__ == "__main__":
    main()
