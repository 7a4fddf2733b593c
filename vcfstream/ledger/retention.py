"""``vcfstream ledger drop``: remove a dataset's ledger rows, chunk records and dead letters.

The ledger grows by one row per message ever published. Once a dataset's messages have aged
out of the brokers (or its topic is gone), its rows only hold space, and its dead letters still
hold raw records of the input, which may be personal data. Dropping them means:

- a later ingest of the dataset's files claims and publishes every record again, with the same
  message ids: the ledger no longer knows they were sent;
- copies still on a broker become ``unknown`` to ``vcfstream verify`` (no ledger row), and a
  second copy published by a later ingest counts as a duplicate there. So drop once the
  platforms' retention has passed, or delete the topic with it. Sample-list messages never
  expire, so a later ingest adds a second copy of each;
- the stores (catalog, LanceDB, Kuzu) keep what they hold; writing the same alleles again
  stores nothing new.

Safely: the drop takes the dataset's lock alone (chunk attempts share it,
``vcfstream.ledger.claims.DATASET_LOCK_KEY``) and its repair lock, and refuses while an ingest or a
repair of the dataset is running; an ingest that starts meanwhile waits for the drop. Chunk
records go first, in one transaction, so a file whose ledger rows are half dropped is never
taken for complete by a cohort run; ledger rows then go in batches of ``batch_rows``, each its
own transaction, so the WAL and the locks stay bounded on a ledger of tens of millions of rows;
the batch deliveries that mark rows published (``ledger_deliveries``) go after their rows, so a
row left by a stopped drop still reads as published. A drop that is stopped part way is
finished by running it again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import psycopg

from vcfstream.errors import LedgerError
from vcfstream.ledger import db
from vcfstream.ledger.claims import DATASET_LOCK_KEY, DATASET_LOCK_SALT, REPAIR_LOCK_SALT
from vcfstream.settings import Settings

# The rows of one dataset (and file, when a digest is given) in each table.
_OF = "dataset = %(dataset)s AND (%(digest)s::text IS NULL OR source_digest = %(digest)s::text)"


@dataclass(frozen=True, slots=True)
class LedgerFootprint:
    """What the ledger holds of a dataset (or one of its files), and what a drop removed."""

    dataset: str
    source_digest: str | None
    ledger_rows: dict[str, int]  # by state: claimed, published, in_doubt, failed
    chunks: int
    dead_letters: int
    newest_published_at: str | None  # ISO 8601; when the newest acknowledged copy was sent
    dropped: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def ledger_footprint(settings: Settings, dataset: str, source_digest: str | None = None) -> LedgerFootprint:
    """Count what ``drop_ledger`` would remove, and when the newest of it was published."""
    with db.connect(settings) as conn:
        return _footprint(conn, dataset, source_digest, dropped=False)


def drop_ledger(settings: Settings, dataset: str, source_digest: str | None = None, *,
                batch_rows: int = 50_000) -> LedgerFootprint:
    """Remove the dataset's (or one file's) ledger rows, chunk records and dead letters, as the
    module docstring says; returns what was there. Raises ``LedgerError`` while an ingest or a
    repair of the dataset runs."""
    params = {"dataset": dataset, "digest": source_digest}
    with db.connect(settings, autocommit=True) as conn:
        try:
            held = conn.execute(f"SELECT pg_try_advisory_lock({DATASET_LOCK_KEY}), pg_try_advisory_lock({DATASET_LOCK_KEY})",
                                (dataset, DATASET_LOCK_SALT, dataset, REPAIR_LOCK_SALT)).fetchone()
            if held is None or not all(held):
                busy = "an ingest" if held is not None and not held[0] else "a repair (verify --repair)"
                raise LedgerError(f"dataset {dataset}: {busy} of it is running; drop its ledger once that has ended")
            before = _footprint(conn, dataset, source_digest, dropped=True)
            conn.execute(f"DELETE FROM ledger_chunks WHERE {_OF}", params)
            while True:
                cur = conn.execute(f"DELETE FROM ledger WHERE ctid = ANY(ARRAY(SELECT ctid FROM ledger WHERE {_OF}"
                                   " LIMIT %(limit)s))", {**params, "limit": batch_rows})
                if cur.rowcount < batch_rows:
                    break
            conn.execute(f"DELETE FROM ledger_deliveries WHERE {_OF}", params)
            conn.execute(f"DELETE FROM dead_letters WHERE {_OF}", params)
        except psycopg.Error as exc:
            raise LedgerError(f"dropping the ledger of dataset {dataset}: {exc}") from None
    return before  # the locks went with the connection


def _footprint(conn: psycopg.Connection, dataset: str, source_digest: str | None, *, dropped: bool) -> LedgerFootprint:
    params = {"dataset": dataset, "digest": source_digest}
    by_state = conn.execute(f"SELECT state, count(*), max(published_at) FROM ledger_state WHERE {_OF} GROUP BY state",
                            params).fetchall()  # one pass over the rows for both
    states = {state: int(n) for state, n, _ in by_state}
    newest = max((at for _, _, at in by_state if at is not None), default=None)
    chunks = conn.execute(f"SELECT count(*) FROM ledger_chunks WHERE {_OF}", params).fetchone()
    dead = conn.execute(f"SELECT count(*) FROM dead_letters WHERE {_OF}", params).fetchone()
    return LedgerFootprint(
        dataset, source_digest, dict(sorted(states.items())),
        int(chunks[0]) if chunks else 0, int(dead[0]) if dead else 0,
        newest.isoformat() if newest is not None else None, dropped,
    )
