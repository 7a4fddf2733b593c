"""A ledger and a catalog already holding many rows, for measuring ingests into large ones.

Both live in the home's PostgreSQL (not copied per run, as the embedded stores are): these
functions top them up, in place, to at least the asked size, and do nothing when it is there.

- **Ledger**: datasets ``held-ledger-<k>`` of up to 2,000,000 ids each, one source file each,
  every id claimed all new and delivered in batches of 10,000 to Kafka, as a file's first ingest
  leaves them (``state = 'claimed'``, its batch, one ``ledger_deliveries`` row per batch; the
  batch numbers are taken from ``ledger_batches``). A dataset's rows go in sorted by id, so the
  unique index is built by appends (a real ingest inserts them in random id order).
- **Catalog**: variants of the dataset ``held``, A>G SNVs under ``GRCh38`` on ``graph_holding.py``'s
  contigs and spacing (so a benchmark file's own assembly never matches them), each with one packed genotype row of 3 diploid samples. ``genotype_calls``
  is not filled: it has no index, so its size does not change what a write costs.

Rows are made by the server (``generate_series``): 14 to 26 s per 2M ledger ids and 9 to 12 s
per 1M variants here. ``bench_ingest.py --ledger-holding N --catalog-holding M`` calls these.

    .venv/bin/python bench/pg_holding.py --ledger 50000000 --catalog 10000000
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from graph_holding import CONTIGS, SPACING

from vcfstream.ledger import db
from vcfstream.settings import Settings, load_settings

LEDGER_DATASET = "held-ledger-"
PER_DATASET = 2_000_000
BATCH = 10_000
CATALOG_DATASET = "held"

_LEDGER_ROWS = """
INSERT INTO ledger (message_id, dataset, variant_key, source_digest, chunk_id, run_id, claim_token, state, batch)
SELECT md5(%(dataset)s || i)::uuid, %(dataset)s, 'GRCh38:chr1:' || (10000 + 3 * i) || ':A:G', %(digest)s,
       'held-' || (i / 50000), %(run)s, %(token)s, 'claimed', %(first_batch)s + i / %(batch)s
FROM generate_series(0, %(rows)s - 1) AS i
ORDER BY 1
"""

_DELIVERIES = """
INSERT INTO ledger_deliveries (batch, dataset, source_digest, claim_token, platform, message_ids, partitions, offsets)
SELECT batch, %(dataset)s, %(digest)s, %(token)s, 'kafka', array_agg(message_id ORDER BY message_id),
       array_agg(0 ORDER BY message_id), array_agg(batch * %(batch)s + n ORDER BY message_id)
FROM (SELECT batch, message_id, row_number() OVER (PARTITION BY batch) AS n FROM ledger
      WHERE dataset = %(dataset)s) AS rows
GROUP BY batch
"""

_SAMPLE_LIST = """
INSERT INTO catalog.sample_lists (dataset, source_sha256, samples) VALUES (%(dataset)s, %(digest)s, '{H0,H1,H2}')
ON CONFLICT (dataset, source_sha256) DO UPDATE SET samples = EXCLUDED.samples
RETURNING id
"""

# Variants ``start`` .. ``start + rows - 1`` of the series (c: contig, p: position, key: its
# key): the k-th lies on CONTIGS[k % 23].
_SERIES = """
FROM generate_series(%(start)s, %(start)s + %(rows)s - 1) AS k,
     LATERAL (SELECT (%(contigs)s::text[])[k %% 23 + 1] AS c, 10000 + (k / 23) * %(spacing)s + k %% 7 AS p) AS at,
     LATERAL (SELECT 'GRCh38:' || c || ':' || p || ':A:G' AS key) AS named
"""

_VARIANTS = """
INSERT INTO catalog.variants (variant_key, assembly, contig, pos, ref, alt, end_pos, variant_type, vcf_id, qual,
                              filters, info, dataset, source_sha256, calls_loaded)
SELECT key, 'GRCh38', c, p, 'A', 'G', p, 'snv', NULL, 50, '{PASS}', jsonb_build_object('AC', 1, 'AN', 6),
       %(dataset)s, %(digest)s, true
""" + _SERIES

_PACKED = """
INSERT INTO catalog.genotype_arrays (dataset, variant_key, sample_list_id, ploidy, called, carriers, gt, phased, dp, gq)
SELECT %(dataset)s, key, %(list)s, 2, 3, '\\x01'::bytea, '\\x010000000000'::bytea, '\\x00'::bytea,
       '\\x1e001e001e00'::bytea, '\\x630063006300'::bytea
""" + _SERIES


def hold_ledger(settings: Settings, rows: int) -> int:
    """Top the ledger up to at least ``rows`` rows; returns how many it holds."""
    db.migrate(settings)
    with db.connect(settings, autocommit=True) as conn:
        held = _count(conn, "SELECT count(*) FROM ledger")
        k = _count(conn, "SELECT count(DISTINCT dataset) FROM ledger WHERE dataset LIKE %s", (LEDGER_DATASET + "%",))
        while held < rows:
            n = min(PER_DATASET, rows - held)
            batches = -(-n // BATCH)
            first = _count(conn, "SELECT nextval('ledger_batches')")
            conn.execute("SELECT setval('ledger_batches', %s)", (first + batches,))
            params = {"dataset": f"{LEDGER_DATASET}{k}", "digest": secrets.token_hex(32), "run": "held",
                      "token": secrets.randbits(62), "first_batch": first, "batch": BATCH, "rows": n}
            started = time.perf_counter()
            with conn.transaction():
                conn.execute(_LEDGER_ROWS, params)
                conn.execute(_DELIVERIES, params)
            held, k = held + n, k + 1
            print(f"ledger: {n:,} ids of {params['dataset']} in {time.perf_counter() - started:.1f} s; "
                  f"{held:,} rows", flush=True)
        conn.execute("ANALYZE ledger")
        conn.execute("ANALYZE ledger_deliveries")
    return held


def hold_catalog(settings: Settings, variants: int, piece: int = 1_000_000) -> int:
    """Top the catalog's ``held`` variants up to at least ``variants``; returns how many it holds."""
    db.migrate(settings)
    with db.connect(settings, autocommit=True) as conn:
        held = _count(conn, "SELECT count(*) FROM catalog.variants WHERE dataset = %s", (CATALOG_DATASET,))
        if held >= variants:
            return held
        conn.execute("INSERT INTO catalog.datasets (name, store_genotypes) VALUES (%s, true) ON CONFLICT DO NOTHING",
                     (CATALOG_DATASET,))
        digest = "0" * 64
        row = conn.execute(_SAMPLE_LIST, {"dataset": CATALOG_DATASET, "digest": digest}).fetchone()
        assert row is not None
        while held < variants:
            params = {"dataset": CATALOG_DATASET, "digest": digest, "list": row[0], "start": held,
                      "rows": min(piece, variants - held), "contigs": CONTIGS, "spacing": SPACING}
            started = time.perf_counter()
            with conn.transaction():
                conn.execute(_VARIANTS, params)
                conn.execute(_PACKED, params)
            held += params["rows"]
            print(f"catalog: {params['rows']:,} variants in {time.perf_counter() - started:.1f} s; {held:,} held",
                  flush=True)
        conn.execute("ANALYZE catalog.variants")
        conn.execute("ANALYZE catalog.genotype_arrays")
    return held


def home_settings() -> Settings:
    """The settings of the home the services run from (``VCFSTREAM_HOME`` or the default)."""
    return load_settings(home=REPO / load_settings().home)


def _count(conn: psycopg.Connection, sql: str, params: tuple[object, ...] = ()) -> int:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return int(row[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ledger", type=int, default=0, metavar="N", help="ledger rows to hold at least")
    parser.add_argument("--catalog", type=int, default=0, metavar="N", help="catalog variants of 'held' to hold at least")
    args = parser.parse_args()
    settings = home_settings()
    if args.ledger:
        print(f"ledger holds {hold_ledger(settings, args.ledger):,} rows")
    if args.catalog:
        print(f"catalog holds {hold_catalog(settings, args.catalog):,} held variants")


if __name__ == "__main__":
    main()
