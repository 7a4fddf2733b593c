"""In doubt stays in doubt: a row's in-doubt marks survive failure, takeover and retry; an attempt
that lost its claim (PostgreSQL restarted, its connection broke) stops; repairs mark what they
republish. In-doubt marks are exact: only the batch in flight when a platform failed (or the
process died), only on the platforms that may hold it. On the real PostgreSQL; the chunk tests
route over in-process fakes (``tests/fakes.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from fakes import FakePublisher
from paths import REPO

from vcfstream.ledger import db
from vcfstream.ledger.claims import ClaimLost, LedgerSession, RepairSession, ledger_entries
from vcfstream.model import ChunkSummary
from vcfstream.pipeline import process_chunk
from vcfstream.publish.base import Acks, OutgoingBatch
from vcfstream.publish.breakers import Breakers
from vcfstream.publish.health import Health
from vcfstream.publish.routing import BatchInDoubt, Router, in_doubt_on
from vcfstream.settings import Settings
from vcfstream.vcf.chunks import plan_chunks
from vcfstream.vcf.keys import message_id
from vcfstream.vcf.reader import ReadContext
from vcfstream.vcf.source import open_source
from vcfstream.verify import reconcile

sys.path.insert(0, str(REPO / "bench"))

from synth_vcf import generate

DIGEST = "e" * 64


@pytest.fixture(scope="module")
def ledger_settings(services: Settings) -> Settings:
    db.migrate(services)
    return services


def session(settings: Settings, dataset: str, run: str = "run-1") -> LedgerSession:
    return LedgerSession(settings, dataset=dataset, source_digest=DIGEST, source_path="/x.vcf",
                         chunk_id="chunk-0", run_id=run)


def claim_and_send(attempt: LedgerSession, ids: list[bytes], keys: list[str], *platforms: str) -> None:
    """Claim a batch and hand it to a platform after which ``platforms`` may hold it (what the
    router tells the ledger before each send)."""
    attempt.claim(ids, keys)
    attempt.sending(platforms)


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


def test_rows_of_an_attempt_that_died_before_marking_are_in_doubt_on_the_platforms_it_sent_them_to(
        ledger_settings: Settings, dataset: str) -> None:
    ids, keys = ids_and_keys(dataset, 30)
    crashed = session(ledger_settings, dataset)
    claim_and_send(crashed, ids[:10], keys[:10], "iggy", "kafka")  # kafka in doubt, failed over to iggy
    crashed.mark_published(acks(ids[:10], "iggy"), in_doubt_platforms=["iggy", "kafka"])
    claim_and_send(crashed, ids[10:20], keys[10:20], "kafka")  # in flight to kafka when it died
    crashed.close()
    with session(ledger_settings, dataset, "run-2") as retry:
        claim = retry.claim(ids, keys)
        assert claim.taken_over == 10 and claim.duplicates == 10 and len(claim.to_publish) == 20
        retry.mark_published(acks([ids[i] for i in claim.to_publish]))
    assert marks(ledger_settings, dataset, [ids[0], ids[10], ids[20]]) == [
        ("in_doubt", ("iggy", "kafka"), 1), ("in_doubt", ("kafka",), 1), ("published", (), 0)]


def test_a_batch_claimed_but_handed_to_no_platform_when_its_attempt_died_is_not_in_doubt(
        ledger_settings: Settings, dataset: str) -> None:
    ids, keys = ids_and_keys(dataset, 20)
    crashed = session(ledger_settings, dataset)
    claim_and_send(crashed, ids[:10], keys[:10], "kafka")
    crashed.mark_published(acks(ids[:10]))
    crashed.claim(ids[10:], keys[10:])  # died before the router was called
    crashed.close()
    with session(ledger_settings, dataset, "run-2") as retry:
        assert retry.claim(ids[10:], keys[10:]).taken_over == 10
        retry.mark_published(acks(ids[10:]))
    assert set(marks(ledger_settings, dataset, ids)) == {("published", (), 0)}


def test_doubt_accumulates_over_every_attempt_that_may_have_sent(ledger_settings: Settings, dataset: str) -> None:
    ids, keys = ids_and_keys(dataset, 3)
    first = session(ledger_settings, dataset)
    claim_and_send(first, ids, keys, "kafka")
    first.close()  # died after sending
    second = session(ledger_settings, dataset, "run-2")
    claim_and_send(second, ids, keys, "kafka")
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
    claim_and_send(publisher, ids, keys, "kafka")
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
    # Rows marked one by one are checked against the token as they are marked. (A takeover needs
    # the claimant's lock, so it cannot happen while the claimant is alive to mark; this is the
    # second line of defence.)
    ids, keys = ids_and_keys(dataset, 4)
    with session(ledger_settings, dataset) as first:
        first.claim(ids, keys)
        with db.connect(ledger_settings, autocommit=True) as conn:
            conn.execute("UPDATE ledger SET claim_token = 1 WHERE dataset = %s", (dataset,))
        with pytest.raises(ClaimLost):
            first.mark_published(acks(ids), in_doubt_platforms=["iggy", "kafka"])


def test_a_batch_delivery_marks_no_row_that_left_the_batch(ledger_settings: Settings, dataset: str) -> None:
    # A takeover takes rows out of their batch: a delivery of that batch no longer marks them.
    ids, keys = ids_and_keys(dataset, 4)
    with session(ledger_settings, dataset) as first:
        first.claim(ids, keys)
        with db.connect(ledger_settings, autocommit=True) as conn:
            conn.execute("UPDATE ledger SET claim_token = 1, batch = NULL WHERE dataset = %s"
                         " AND message_id = %s", (dataset, ids[0].hex()))
        first.mark_published(acks(ids))
    assert [state for state, _, _ in marks(ledger_settings, dataset, ids)] == ["claimed"] + ["published"] * 3


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


# -- through a chunk: the router over in-process fakes, the real ledger --------------------------
class Died(BaseException):
    """The process dying while a platform holds the batch (nothing below catches it)."""


class DyingPublisher(FakePublisher):
    """Stores the batch of call ``fail_from_call`` and dies before it can acknowledge it."""

    def publish(self, batch: OutgoingBatch) -> Acks:
        if len(self.batches) == self.fail_from_call:
            self.batches.append(list(batch.message_ids))
            self._store(batch)
            raise Died
        return super().publish(batch)


def chunk_router(settings: Settings, iggy: FakePublisher, kafka: FakePublisher) -> Router:
    return Router(settings, {"iggy": iggy, "kafka": kafka}, Breakers(settings, ["iggy", "kafka"]), Health())


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 records: one chunk of about nine batches of 7."""
    return generate(tmp_path_factory.mktemp("in_doubt") / "in_doubt.vcf.gz", 60, 3, seed=17)


def run_chunk(settings: Settings, path: Path, dataset: str, router: Router, run: str) -> ChunkSummary:
    source = open_source(str(path))
    ctx = ReadContext.open(dataset, settings.ingest.assembly, source)
    chunk = plan_chunks(source, settings.ingest.chunk_size)[0]
    return process_chunk(settings, ctx, chunk, run_id=run, router=router, stage_dir=None).summary


def in_doubt_rows(settings: Settings, dataset: str) -> dict[bytes, tuple[str, tuple[str, ...], int]]:
    return {i: (row.state, row.in_doubt_platforms, row.in_doubt_copies)
            for i, row in ledger_entries(settings, dataset).items() if row.in_doubt_copies or row.in_doubt_platforms}


@pytest.fixture
def chunk_settings(ledger_settings: Settings) -> Settings:
    """Batches of 7 messages (a chunk of several), breakers in memory, health routing."""
    return ledger_settings.with_groups(ingest={"publish_batch_size": 7},
                                       routing={"breaker_storage": "memory", "strategy": "health"})


def test_a_platform_failing_in_doubt_mid_chunk_marks_that_batch_on_that_platform_only(
        chunk_settings: Settings, synthetic: Path, dataset: str) -> None:
    # The third batch: iggy times out after storing it, kafka refuses it cleanly. The chunk fails.
    iggy = FakePublisher("iggy", "timeout", stores_on_timeout=True, fail_from_call=2)
    kafka = FakePublisher("kafka", "refuse")
    with pytest.raises(BatchInDoubt) as raised:
        run_chunk(chunk_settings, synthetic, dataset, chunk_router(chunk_settings, iggy, kafka), "run-1")
    assert raised.value.in_doubt_platforms == ["iggy"] and in_doubt_on(raised.value) == ["iggy"]
    in_flight = iggy.batches[2]
    assert len(in_flight) == 7 and kafka.batches == [in_flight]
    assert in_doubt_rows(chunk_settings, dataset) == dict.fromkeys(in_flight, ("failed", ("iggy",), 1))

    # The retry publishes the rest on iggy; only that batch stays in doubt, on iggy alone.
    iggy.set_mode("succeed")
    kafka.set_mode("succeed")
    summary = run_chunk(chunk_settings, synthetic, dataset, chunk_router(chunk_settings, iggy, kafka), "run-2")
    assert in_doubt_rows(chunk_settings, dataset) == dict.fromkeys(in_flight, ("in_doubt", ("iggy",), 1))
    report = reconcile(chunk_settings, dataset, {"iggy": iggy, "kafka": kafka}).report()
    assert (report["missing"], report["duplicates"], report["in_doubt_copies"], report["in_doubt"]) == (0, 0, 7, 7)
    assert report["messages"] == summary.alleles + 7


def test_a_batch_failed_over_after_an_in_doubt_attempt_is_in_doubt_on_both_and_no_other_is(
        chunk_settings: Settings, synthetic: Path, dataset: str) -> None:
    iggy = FakePublisher("iggy", "disconnect", fail_from_call=1)  # from the second batch on
    kafka = FakePublisher("kafka")
    summary = run_chunk(chunk_settings, synthetic, dataset, chunk_router(chunk_settings, iggy, kafka), "run-1")
    # The batches iggy failed in doubt went to kafka and may be on iggy too; the ones after its
    # breaker opened went to kafka alone; none other is in doubt.
    failed_over = [i for batch in iggy.batches[1:] for i in batch]
    assert kafka.batches[:len(iggy.batches) - 1] == iggy.batches[1:] and summary.in_doubt == len(failed_over)
    assert in_doubt_rows(chunk_settings, dataset) == dict.fromkeys(failed_over, ("in_doubt", ("iggy", "kafka"), 1))
    assert len(kafka.batches) > len(iggy.batches) - 1 and summary.published["kafka"] > len(failed_over)


def test_a_platform_that_took_part_of_a_batch_leaves_that_batch_in_doubt_and_every_copy_explained(
        chunk_settings: Settings, synthetic: Path, dataset: str) -> None:
    # From the fourth batch on, iggy stores 3 messages of each, then the connection drops; kafka takes it.
    iggy = FakePublisher("iggy", "disconnect", fail_from_call=3, stores_before_failing=3)
    kafka = FakePublisher("kafka")
    summary = run_chunk(chunk_settings, synthetic, dataset, chunk_router(chunk_settings, iggy, kafka), "run-1")
    failed = iggy.batches[3:]
    doubted = [i for batch in failed for i in batch]
    kept = sum(min(3, len(batch)) for batch in failed)  # the copies iggy holds of them
    assert kafka.batches[:len(failed)] == failed and summary.in_doubt == len(doubted)
    assert in_doubt_rows(chunk_settings, dataset) == dict.fromkeys(doubted, ("in_doubt", ("iggy", "kafka"), 1))
    report = reconcile(chunk_settings, dataset, {"iggy": iggy, "kafka": kafka}).report()
    # the copies iggy kept are explained; the other ids of those batches are marked but have none
    assert (report["missing"], report["duplicates"], report["in_doubt_copies"], report["in_doubt"]) == (
        0, 0, kept, len(doubted))
    assert report["messages"] == summary.alleles + kept and kept < len(doubted)


def test_an_attempt_that_died_mid_batch_leaves_that_batch_in_doubt_where_it_was_sent(
        chunk_settings: Settings, synthetic: Path, dataset: str) -> None:
    # The second batch: iggy refuses it cleanly, kafka stores it and the process dies.
    iggy = FakePublisher("iggy", "refuse", fail_from_call=1)
    kafka = DyingPublisher("kafka", fail_from_call=0)
    with pytest.raises(Died):
        run_chunk(chunk_settings, synthetic, dataset, chunk_router(chunk_settings, iggy, kafka), "run-1")
    in_flight = kafka.batches[0]
    assert iggy.batches[1] == in_flight and in_doubt_rows(chunk_settings, dataset) == {}  # not marked yet: claimed

    iggy.set_mode("succeed")
    run_chunk(chunk_settings, synthetic, dataset, chunk_router(chunk_settings, iggy, kafka), "run-2")  # takes it over
    # in doubt on kafka, acknowledged by iggy: a copy on each explained, none on iggy for the others
    assert in_doubt_rows(chunk_settings, dataset) == dict.fromkeys(in_flight, ("in_doubt", ("iggy", "kafka"), 1))
    report = reconcile(chunk_settings, dataset, {"iggy": iggy, "kafka": kafka}).report()
    assert (report["missing"], report["duplicates"], report["in_doubt_copies"]) == (0, 0, 7)
