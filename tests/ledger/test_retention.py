"""Dropping a dataset's ledger (``vcfstream ledger drop``) on the real PostgreSQL."""

from __future__ import annotations

import threading
import time

import pytest

from vcfstream.errors import LedgerError
from vcfstream.ledger import db
from vcfstream.ledger.claims import DATASET_LOCK_KEY, DATASET_LOCK_SALT, LedgerSession, RepairSession
from vcfstream.ledger.retention import drop_ledger, ledger_footprint
from vcfstream.model import ChunkSummary, Quarantined
from vcfstream.publish.base import Acks
from vcfstream.settings import Settings
from vcfstream.vcf.keys import message_id

DIGEST_A, DIGEST_B = "a" * 64, "b" * 64


@pytest.fixture(scope="module")
def ledger_settings(services: Settings) -> Settings:
    db.migrate(services)
    return services


def session(settings: Settings, dataset: str, digest: str, chunk: str = "chunk-0") -> LedgerSession:
    return LedgerSession(settings, dataset=dataset, source_digest=digest, source_path=f"/{digest[0]}.vcf",
                         chunk_id=chunk, run_id="run-1")


def ingest_rows(settings: Settings, dataset: str, digest: str, n: int, *, publish: int) -> list[bytes]:
    """Claim ``n`` ids of one file, publish the first ``publish`` (one batch delivery), quarantine one
    record, finish."""
    keys = [f"GRCh38:chr1:{i + 1}:A:G" for i in range(n)]
    ids = [message_id(dataset, key, digest) for key in keys]
    with session(settings, dataset, digest) as s:
        s.chunk_started()
        s.claim(ids[:publish], keys[:publish])
        s.mark_published(Acks("kafka", ids[:publish], [0] * publish, list(range(publish))))
        s.claim(ids[publish:], keys[publish:])
        s.record_dead_letters([Quarantined(f"/{digest[0]}.vcf", 9, "info.type", "bad", "chr1\t9\t.\tA\tG")])
        s.chunk_finished(ChunkSummary(records=n))
    return ids


def rows_of(settings: Settings, dataset: str) -> tuple[int, int, int, int]:
    with db.connect(settings) as conn:
        return tuple(conn.execute(f"SELECT count(*) FROM {table} WHERE dataset = %s", (dataset,)).fetchone()[0]
                     for table in ("ledger", "ledger_deliveries", "ledger_chunks", "dead_letters"))  # type: ignore[return-value]


def test_counting_drops_nothing_and_dropping_removes_every_row_of_the_dataset_only(
        ledger_settings: Settings, dataset: str) -> None:
    ingest_rows(ledger_settings, dataset, DIGEST_A, 120, publish=100)
    other = dataset + "-other"
    ingest_rows(ledger_settings, other, DIGEST_A, 10, publish=10)

    counted = ledger_footprint(ledger_settings, dataset)
    assert counted.ledger_rows == {"claimed": 20, "published": 100}
    assert (counted.chunks, counted.dead_letters, counted.dropped) == (1, 1, False)
    assert counted.newest_published_at is not None
    assert rows_of(ledger_settings, dataset) == (120, 1, 1, 1)

    dropped = drop_ledger(ledger_settings, dataset, batch_rows=7)  # many batches
    assert dropped.ledger_rows == counted.ledger_rows and dropped.dropped
    assert rows_of(ledger_settings, dataset) == (0, 0, 0, 0)
    assert rows_of(ledger_settings, other) == (10, 1, 1, 1)


def test_a_dropped_dataset_claims_everything_again(ledger_settings: Settings, dataset: str) -> None:
    ids = ingest_rows(ledger_settings, dataset, DIGEST_A, 50, publish=50)
    drop_ledger(ledger_settings, dataset)
    keys = [f"GRCh38:chr1:{i + 1}:A:G" for i in range(50)]
    with session(ledger_settings, dataset, DIGEST_A) as again:
        assert again.claim(ids, keys).to_publish == list(range(50))


def test_dropping_one_file_keeps_the_other_files_of_the_dataset(ledger_settings: Settings, dataset: str) -> None:
    ingest_rows(ledger_settings, dataset, DIGEST_A, 30, publish=30)
    ingest_rows(ledger_settings, dataset, DIGEST_B, 40, publish=40)
    dropped = drop_ledger(ledger_settings, dataset, DIGEST_A)
    assert dropped.ledger_rows == {"published": 30} and dropped.source_digest == DIGEST_A
    assert rows_of(ledger_settings, dataset) == (40, 1, 1, 1)
    assert ledger_footprint(ledger_settings, dataset, DIGEST_B).ledger_rows == {"published": 40}


def test_a_running_ingest_or_repair_of_the_dataset_refuses_the_drop(ledger_settings: Settings, dataset: str) -> None:
    ingest_rows(ledger_settings, dataset, DIGEST_A, 10, publish=10)
    with session(ledger_settings, dataset, DIGEST_B), pytest.raises(LedgerError, match="an ingest of it is running"):
        drop_ledger(ledger_settings, dataset)
    with RepairSession(ledger_settings, dataset), pytest.raises(LedgerError, match="a repair"):
        drop_ledger(ledger_settings, dataset)
    with session(ledger_settings, dataset + "-other", DIGEST_A):  # another dataset's ingest is no obstacle
        drop_ledger(ledger_settings, dataset)
    assert rows_of(ledger_settings, dataset) == (0, 0, 0, 0)


def test_an_ingest_starting_during_a_drop_waits_for_it(ledger_settings: Settings, dataset: str) -> None:
    ingest_rows(ledger_settings, dataset, DIGEST_A, 10, publish=10)
    with db.connect(ledger_settings, autocommit=True) as holder:  # a drop in progress holds the dataset alone
        holder.execute(f"SELECT pg_advisory_lock({DATASET_LOCK_KEY})", (dataset, DATASET_LOCK_SALT))
        started: list[float] = []
        opener = threading.Thread(target=lambda: (session(ledger_settings, dataset, DIGEST_B).close(),
                                                  started.append(time.monotonic())))
        opener.start()
        opener.join(timeout=1.0)
        assert opener.is_alive() and not started  # blocked on the dataset's lock
        released = time.monotonic()
        holder.execute("SELECT pg_advisory_unlock_all()")
        opener.join(timeout=10)
    assert started and started[0] >= released
