"""In doubt stays in doubt: a row's in-doubt marks survive failure, takeover and retry; an attempt
that lost its claim (PostgreSQL restarted, its connection broke) stops; repairs mark what they
republish. On the real PostgreSQL."""

from __future__ import annotations

import pytest

from vcfstream.ledger import db
from vcfstream.ledger.claims import ClaimLost, LedgerSession, RepairSession, ledger_entries
from vcfstream.publish.base import Acks
from vcfstream.settings import Settings
from vcfstream.vcf.keys import message_id

DIGEST = "e" * 64


@pytest.fixture(scope="module")
def ledger_settings(services: Settings) -> Settings:
    db.migrate(services)
    return services


def session(settings: Settings, dataset: str, run: str = "run-1", platforms: tuple[str, ...] = ("kafka",)
            ) -> LedgerSession:
    return LedgerSession(settings, dataset=dataset, source_digest=DIGEST, source_path="/x.vcf",
                         chunk_id="chunk-0", run_id=run, platforms=platforms)


def ids_and_keys(dataset: str, n: int) -> tuple[list[bytes], list[str]]:
    keys = [f"GRCh38:chr1:{i + 1}:A:G" for i in range(n)]
    return [message_id(dataset, k, DIGEST) for k in keys], keys


def acks(ids: list[bytes], platform: str = "kafka") -> Acks:
    return Acks(platform, ids, [0] * len(ids), list(range(len(ids))))


def marks(settings: Settings, dataset: str, ids: list[bytes]) -> list[tuple[str, tuple[str, ...], int]]:
    rows = ledger_entries(settings, dataset)
    return [(rows[i].state, rows[i].in_doubt_platforms, rows[i].in_doubt_copies) for i in ids]


def test_a_batch_failed_in_doubt_stays_in_doubt_through_its_retry(ledger_settings: Settings, dataset: str) -> None:
    ids, keys = ids_and_keys(dataset, 20)
    with session(ledger_settings, dataset) as first:
        first.claim(ids, keys)
        first.mark_published(acks(ids[:10]))
        first.mark_failed(ids[10:], "kafka: timed out", in_doubt_platforms=["kafka"])
    assert marks(ledger_settings, dataset, ids[10:11]) == [("failed", ("kafka",), 1)]
    with session(ledger_settings, dataset, "run-2") as retry:
        claim = retry.claim(ids, keys)
        assert claim.to_publish == list(range(10, 20)) and claim.taken_over == 10
        retry.mark_published(acks(ids[10:]))
    assert marks(ledger_settings, dataset, ids[:1] + ids[10:11]) == [("published", (), 0), ("in_doubt", ("kafka",), 1)]


def test_a_batch_failed_cleanly_is_published_plainly_by_its_retry(ledger_settings: Settings, dataset: str) -> None:
    ids, keys = ids_and_keys(dataset, 5)
    with session(ledger_settings, dataset) as first:
        first.claim(ids, keys)
        first.mark_failed(ids, "kafka: connection refused")
    with session(ledger_settings, dataset, "run-2") as retry:
        assert retry.claim(ids, keys).taken_over == 5
        retry.mark_published(acks(ids))
    assert set(marks(ledger_settings, dataset, ids)) == {("published", (), 0)}


def test_rows_of_an_attempt_that_died_before_marking_are_in_doubt_on_its_platforms_only(
        ledger_settings: Settings, dataset: str) -> None:
    ids, keys = ids_and_keys(dataset, 30)
    crashed = session(ledger_settings, dataset, platforms=("iggy", "kafka"))
    crashed.claim(ids[:10], keys[:10])
    crashed.mark_published(acks(ids[:10]))
    crashed.claim(ids[10:20], keys[10:20])  # the batch in flight when it died: maybe sent, never marked
    crashed.close()
    with session(ledger_settings, dataset, "run-2") as retry:
        claim = retry.claim(ids, keys)
        assert claim.taken_over == 10 and claim.duplicates == 10 and len(claim.to_publish) == 20
        retry.mark_published(acks([ids[i] for i in claim.to_publish]))
    assert marks(ledger_settings, dataset, [ids[0], ids[10], ids[20]]) == [
        ("published", (), 0), ("in_doubt", ("iggy", "kafka"), 1), ("published", (), 0)]


def test_doubt_accumulates_over_every_attempt_that_may_have_sent(ledger_settings: Settings, dataset: str) -> None:
    ids, keys = ids_and_keys(dataset, 3)
    first = session(ledger_settings, dataset)
    first.claim(ids, keys)
    first.close()  # died after sending
    second = session(ledger_settings, dataset, "run-2")
    second.claim(ids, keys)
    second.mark_failed(ids, "timed out", in_doubt_platforms=["kafka"])
    second.close()
    with session(ledger_settings, dataset, "run-3") as third:
        assert third.claim(ids, keys).taken_over == 3
        third.mark_published(acks(ids, "iggy"), in_doubt_platforms=["iggy", "kafka"])  # kafka in doubt again
    assert set(marks(ledger_settings, dataset, ids)) == {("in_doubt", ("iggy", "kafka"), 3)}


def test_an_attempt_whose_lock_is_gone_stops_and_another_takes_its_rows_in_doubt(
        ledger_settings: Settings, dataset: str) -> None:
    ids, keys = ids_and_keys(dataset, 8)
    publisher = session(ledger_settings, dataset)
    publisher.claim(ids, keys)
    publisher.check_claim()
    with db.connect(ledger_settings, autocommit=True) as admin:  # what a PostgreSQL restart does to it
        admin.execute("SELECT pg_terminate_backend(%s)", (publisher.conn.info.backend_pid,))
    with pytest.raises(ClaimLost):
        publisher.check_claim()
    with session(ledger_settings, dataset, "run-2") as other:
        assert other.claim(ids, keys).taken_over == 8
        other.mark_published(acks(ids))
    with pytest.raises(ClaimLost):
        publisher.mark_published(acks(ids))
    publisher.close()
    assert set(marks(ledger_settings, dataset, ids)) == {("in_doubt", ("kafka",), 1)}


def test_marking_rows_another_attempt_took_raises_claim_lost(ledger_settings: Settings, dataset: str) -> None:
    ids, keys = ids_and_keys(dataset, 4)
    with session(ledger_settings, dataset) as first:
        first.claim(ids, keys)
        with db.connect(ledger_settings, autocommit=True) as conn:
            conn.execute("UPDATE ledger SET claim_token = 1 WHERE dataset = %s", (dataset,))
        with pytest.raises(ClaimLost):
            first.mark_published(acks(ids))


def test_a_repair_points_rows_at_their_new_copy_and_keeps_their_doubt(ledger_settings: Settings, dataset: str) -> None:
    ids, keys = ids_and_keys(dataset, 4)
    with session(ledger_settings, dataset) as first:
        first.claim(ids, keys)
        first.mark_published(acks(ids[:2]))
        first.mark_published(acks(ids[2:], "iggy"), in_doubt_platforms=["iggy", "kafka"])
    with RepairSession(ledger_settings, dataset) as repair:
        assert repair.mark_repaired(DIGEST, Acks("kafka", ids, [3] * 4, [100, 101, 102, 103])) == 4
    assert marks(ledger_settings, dataset, ids) == [("published", (), 0)] * 2 + [("in_doubt", ("iggy", "kafka"), 1)] * 2
    with db.connect(ledger_settings) as conn:
        rows = conn.execute('SELECT "partition", "offset", repaired_at IS NOT NULL FROM ledger WHERE dataset = %s'
                            ' ORDER BY "offset"', (dataset,)).fetchall()
    assert rows == [(3, 100, True), (3, 101, True), (3, 102, True), (3, 103, True)]
