"""verify's categories and verify --repair, on the real PostgreSQL ledger, with an in-memory
platform standing in for one that lost messages (a non-durable broker, a lost disk)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from fakes import FakePublisher
from paths import REAL

from vcfstream.ledger import db
from vcfstream.ledger.claims import ledger_entries
from vcfstream.model import Chunk
from vcfstream.pipeline import process_chunk
from vcfstream.publish.base import Publisher
from vcfstream.publish.breakers import Breakers
from vcfstream.publish.health import Health
from vcfstream.publish.iggy import expiry_seconds
from vcfstream.publish.limits import message_options
from vcfstream.publish.routing import Router, RouteResult, build_router
from vcfstream.settings import Settings
from vcfstream.vcf.chunks import plan_chunks
from vcfstream.vcf.encode import sample_list_message
from vcfstream.vcf.reader import ReadContext
from vcfstream.vcf.source import open_source
from vcfstream.verify import iggy_retention_s, kafka_retention_s, reconcile, repair_dataset

SOURCE = REAL / "sample.vcf.gz"


class OneRouter:
    """Routes every batch to one publisher (what a Router does when only it is healthy)."""

    def __init__(self, publisher: FakePublisher) -> None:
        self.publisher = publisher
        self.publishers = {publisher.platform: publisher}

    def route(self, batch: object, *, before_send: Callable[[list[str]], None] | None = None) -> RouteResult:
        if before_send is not None:
            before_send([self.publisher.platform])
        return RouteResult(self.publisher.publish(batch), self.publisher.platform)  # type: ignore[arg-type]

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def ledger_settings(services: Settings) -> Settings:
    db.migrate(services)
    return services.with_groups(ingest={"publish_batch_size": 7})


def ingest(settings: Settings, dataset: str, path: Path, kafka: FakePublisher) -> int:
    source = open_source(str(path))
    ctx = ReadContext.open(dataset, settings.ingest.assembly, source)
    published = 0
    for chunk in plan_chunks(source, settings.ingest.chunk_size):
        outcome = process_chunk(settings, ctx, chunk, run_id="run-1", router=OneRouter(kafka), stage_dir=None)
        published += outcome.summary.published["kafka"]
    return published


def lose(kafka: FakePublisher, dataset: str, keep_every: int) -> int:
    """The platform loses most of what it held; returns how many it lost."""
    held = kafka.stored[dataset]
    kafka.stored[dataset] = held[::keep_every]
    return len(held) - len(kafka.stored[dataset])


def publishers(kafka: FakePublisher) -> dict[str, Publisher]:
    return {"kafka": kafka}


def test_a_clean_ingest_verifies_clean(ledger_settings: Settings, dataset: str) -> None:
    kafka = FakePublisher("kafka")
    published = ingest(ledger_settings, dataset, SOURCE, kafka)
    report = reconcile(ledger_settings, dataset, publishers(kafka)).report()
    assert (report["ledger_published"], report["messages"], report["missing"], report["duplicates"]) == (
        published, published, 0, 0)


def test_repair_republishes_what_a_platform_lost_and_leaves_verify_clean(ledger_settings: Settings,
                                                                        dataset: str) -> None:
    kafka = FakePublisher("kafka")
    published = ingest(ledger_settings, dataset, SOURCE, kafka)
    lost = lose(kafka, dataset, keep_every=3)
    assert reconcile(ledger_settings, dataset, publishers(kafka)).report()["missing"] == lost

    outcome = repair_dataset(ledger_settings, dataset, router=OneRouter(kafka), publishers=publishers(kafka))
    assert outcome["repaired"] == lost and [s["problem"] for s in outcome["sources"]] == [None]
    after = outcome["after"]
    assert (after["missing"], after["duplicates"], after["messages"], after["ledger_published"]) == (
        0, 0, published, published)
    again = repair_dataset(ledger_settings, dataset, router=OneRouter(kafka), publishers=publishers(kafka))
    assert again["repaired"] == 0 and again["sources"] == []  # idempotent: nothing left to do
    assert len(kafka.stored[dataset]) == published


def test_a_changed_or_missing_source_file_is_reported_not_guessed(ledger_settings: Settings, dataset: str,
                                                                  tmp_path: Path) -> None:
    copy = tmp_path / "copy.vcf.gz"
    shutil.copy(SOURCE, copy)
    shutil.copy(f"{SOURCE}.tbi", f"{copy}.tbi")  # copied after the file: newer than it, so used
    kafka = FakePublisher("kafka")
    ingest(ledger_settings, dataset, copy, kafka)
    lost = lose(kafka, dataset, keep_every=2)
    copy.write_bytes((REAL / "mixed_ploidy.vcf.gz").read_bytes())  # another file at the same path
    changed = repair_dataset(ledger_settings, dataset, router=OneRouter(kafka), publishers=publishers(kafka))
    assert changed["repaired"] == 0 and "changed since it was ingested" in changed["sources"][0]["problem"]
    assert changed["after"]["missing"] == lost
    copy.unlink()
    gone = repair_dataset(ledger_settings, dataset, router=OneRouter(kafka), publishers=publishers(kafka))
    assert gone["repaired"] == 0 and "unreadable" in gone["sources"][0]["problem"]


def test_ids_older_than_the_platform_keeps_are_expired_and_republished_only_when_asked(
        ledger_settings: Settings, dataset: str, monkeypatch: pytest.MonkeyPatch) -> None:
    kafka = FakePublisher("kafka")
    published = ingest(ledger_settings, dataset, SOURCE, kafka)
    kafka.stored[dataset] = []  # all gone
    with db.connect(ledger_settings) as conn:  # half of them acknowledged 8 days ago
        conn.execute("UPDATE ledger SET published_at = now() - interval '8 days' WHERE dataset = %s"
                     " AND get_byte(uuid_send(message_id), 15) %% 2 = 0", (dataset,))
        (old,) = conn.execute("SELECT count(*) FROM ledger_state WHERE dataset = %s AND published_at < now() - interval '1 day'",
                              (dataset,)).fetchone()
    monkeypatch.setattr("vcfstream.verify.kafka_retention_s", lambda settings, dataset: 7 * 86400.0)
    report = reconcile(ledger_settings, dataset, publishers(kafka)).report()
    assert (report["expired"], report["missing"], report["retention_s"]) == (old, published - old, {"kafka": 604800.0})
    plain = repair_dataset(ledger_settings, dataset, router=OneRouter(kafka), publishers=publishers(kafka))
    assert plain["repaired"] == published - old and plain["after"]["expired"] == old
    asked = repair_dataset(ledger_settings, dataset, router=OneRouter(kafka), publishers=publishers(kafka),
                           include_expired=True)
    assert asked["repaired"] == old and (asked["after"]["expired"], asked["after"]["missing"]) == (0, 0)


def test_ids_older_than_the_iggy_topics_message_expiry_are_expired_and_republished_only_when_asked(
        ledger_settings: Settings, dataset: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from apache_iggy import IggyExpiry

    iggy, kafka = FakePublisher("iggy"), FakePublisher("kafka")
    ingest(ledger_settings, dataset, SOURCE, iggy)
    published = len(iggy.stored[dataset])
    iggy.stored[dataset] = []  # all gone from iggy
    with db.connect(ledger_settings) as conn:  # half of them acknowledged 3 days ago
        conn.execute("UPDATE ledger SET published_at = now() - interval '3 days' WHERE dataset = %s"
                     " AND get_byte(uuid_send(message_id), 15) %% 2 = 0", (dataset,))
        (old,) = conn.execute("SELECT count(*) FROM ledger_state WHERE dataset = %s AND published_at < now() - interval '1 day'",
                              (dataset,)).fetchone()
    both: dict[str, Publisher] = {"iggy": iggy, "kafka": kafka}
    # the iggy topic's configured expiry (what IggyPublisher.retention_s reads), two days; kafka's topic is absent
    expiry = IggyExpiry.ExpireDuration(timedelta(days=2))
    monkeypatch.setattr("vcfstream.verify.iggy_retention_s", lambda publisher, dataset: expiry_seconds(expiry))
    monkeypatch.setattr("vcfstream.verify.kafka_retention_s", lambda settings, dataset: None)
    report = reconcile(ledger_settings, dataset, both).report()
    assert 0 < old < published
    assert (report["expired"], report["missing"]) == (old, published - old)
    assert report["retention_s"] == {"iggy": 172800.0, "kafka": None}
    plain = repair_dataset(ledger_settings, dataset, router=OneRouter(iggy), publishers=both)
    assert plain["repaired"] == published - old and plain["after"]["expired"] == old
    asked = repair_dataset(ledger_settings, dataset, router=OneRouter(iggy), publishers=both, include_expired=True)
    assert asked["repaired"] == old and (asked["after"]["expired"], asked["after"]["missing"]) == (0, 0)
    # a topic that never expires (or only says "the server's default") keeps them: lost ids are missing
    iggy.stored[dataset] = []
    monkeypatch.setattr("vcfstream.verify.iggy_retention_s",
                        lambda publisher, dataset: expiry_seconds(IggyExpiry.NeverExpire()))
    report = reconcile(ledger_settings, dataset, both).report()
    assert (report["expired"], report["missing"]) == (0, published)


def test_the_retention_of_a_stand_in_for_iggy_is_unknown() -> None:
    assert iggy_retention_s(FakePublisher("iggy"), "ds") is None


def test_a_republish_failed_in_doubt_marks_the_platforms_that_may_hold_it_only(
        ledger_settings: Settings, dataset: str) -> None:
    kafka = FakePublisher("kafka")
    ingest(ledger_settings, dataset, SOURCE, kafka)
    lose(kafka, dataset, keep_every=2)
    lost = reconcile(ledger_settings, dataset, publishers(kafka)).missing
    # the repair's first batch: iggy times out after storing it, kafka refuses it cleanly
    iggy, refusing = FakePublisher("iggy", "timeout", stores_on_timeout=True), FakePublisher("kafka", "refuse")
    settings = ledger_settings.with_groups(routing={"breaker_storage": "memory"})
    router = Router(settings, {"iggy": iggy, "kafka": refusing}, Breakers(settings, ["iggy", "kafka"]), Health())
    outcome = repair_dataset(ledger_settings, dataset, router=router, publishers={"iggy": iggy, "kafka": kafka})
    assert outcome["repaired"] == 0 and "republishing failed" in outcome["sources"][0]["problem"]
    rows = ledger_entries(ledger_settings, dataset)
    (sent,) = iggy.batches
    assert sent and set(sent) <= set(lost)  # the batch in flight, of the lost ids
    assert {i: (rows[i].in_doubt_platforms, rows[i].in_doubt_copies) for i in rows
            if rows[i].in_doubt_copies} == dict.fromkeys(sent, (("iggy",), 1))


def test_copies_are_explained_by_in_doubt_marks_and_no_further(ledger_settings: Settings, dataset: str) -> None:
    kafka = FakePublisher("kafka")
    ingest(ledger_settings, dataset, SOURCE, kafka)
    held = kafka.stored[dataset]
    with db.connect(ledger_settings) as conn:  # the first id: one in-doubt copy on kafka
        conn.execute("UPDATE ledger SET state = 'in_doubt', in_doubt_copies = 1, in_doubt_platforms = '{kafka}'"
                     " WHERE dataset = %s AND message_id = %s", (dataset, held[0].hex()))
    kafka.stored[dataset] = held + [held[0], held[1]]  # a second copy of each of the first two
    report = reconcile(ledger_settings, dataset, publishers(kafka)).report()
    assert (report["in_doubt_copies"], report["duplicates"], report["in_doubt"]) == (1, 1, 1)
    kafka.stored[dataset] = held + [held[0], held[0]]  # two extra copies, one explained
    report = reconcile(ledger_settings, dataset, publishers(kafka)).report()
    assert (report["in_doubt_copies"], report["duplicates"]) == (1, 1)


def test_the_kafka_retention_is_read_from_the_topic(ledger_settings: Settings, dataset: str) -> None:
    source = open_source(str(SOURCE))
    ctx = ReadContext.open(dataset, ledger_settings.ingest.assembly, source)
    chunk: Chunk = plan_chunks(source, ledger_settings.ingest.chunk_size)[0]
    router = build_router(ledger_settings.with_groups(routing={"strategy": "fallback_only"}))
    try:
        process_chunk(ledger_settings, ctx, chunk, run_id="run-1", router=router, stage_dir=None)
    finally:
        router.close()
    assert kafka_retention_s(ledger_settings, dataset) == 7 * 86400.0  # the broker's default, 168 hours
    assert kafka_retention_s(ledger_settings, dataset + "_none") is None



def test_two_repairs_at_once_republish_each_lost_id_once(ledger_settings: Settings, dataset: str) -> None:
    kafka = FakePublisher("kafka")
    published = ingest(ledger_settings, dataset, SOURCE, kafka)
    lost = lose(kafka, dataset, keep_every=4)
    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(lambda _: repair_dataset(ledger_settings, dataset, router=OneRouter(kafka),
                                                          publishers=publishers(kafka)), range(2)))
    assert sorted(o["repaired"] for o in outcomes) == [0, lost]  # the second found nothing left to do
    report = reconcile(ledger_settings, dataset, publishers(kafka)).report()
    assert (report["missing"], report["duplicates"], report["messages"]) == (0, 0, published)


def test_a_batch_every_platform_took_in_doubt_is_explained_after_its_retry(ledger_settings: Settings,
                                                                         dataset: str) -> None:
    from vcfstream.errors import PublishInDoubt

    source = open_source(str(SOURCE))
    ctx = ReadContext.open(dataset, ledger_settings.ingest.assembly, source)
    chunk = plan_chunks(source, ledger_settings.ingest.chunk_size)[0]
    kafka = FakePublisher("kafka", "timeout", stores_on_timeout=True)  # stored, but no acknowledgement came back
    with pytest.raises(PublishInDoubt):
        process_chunk(ledger_settings, ctx, chunk, run_id="run-1", router=OneRouter(kafka), stage_dir=None)
    kafka.set_mode("succeed")
    outcome = process_chunk(ledger_settings, ctx, chunk, run_id="run-1", router=OneRouter(kafka), stage_dir=None)
    report = reconcile(ledger_settings, dataset, publishers(kafka)).report()
    in_flight = ledger_settings.ingest.publish_batch_size  # only the batch in flight is in doubt
    assert (report["duplicates"], report["in_doubt_copies"], report["in_doubt"]) == (0, in_flight, in_flight)
    assert report["messages"] == outcome.summary.alleles + in_flight and report["missing"] == 0


def test_a_lost_sample_list_is_missing_whatever_the_retention_and_repair_publishes_it_again(
        ledger_settings: Settings, dataset: str, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = ledger_settings.with_groups(ingest={"message_form": "compact"})
    source = open_source(str(REAL / "chr22.vcf.gz"))
    ctx = ReadContext.open(dataset, settings.ingest.assembly, source, options=message_options(settings))
    kafka = FakePublisher("kafka")
    published = sum(process_chunk(settings, ctx, chunk, run_id="run-1", router=OneRouter(kafka),
                                  stage_dir=None).summary.published["kafka"]
                    for chunk in plan_chunks(source, 40))  # three chunks, one sample list
    sample_list = sample_list_message(dataset, source).message_id
    assert kafka.stored[dataset].count(sample_list) == 1 and kafka.stored[dataset].index(sample_list) == 0
    kafka.stored[dataset].remove(sample_list)
    kafka.stored[dataset].remove(kafka.stored[dataset][-1])  # and a variant message
    # a retention every message has outlived: the variant message expired, the sample list never does
    monkeypatch.setattr("vcfstream.verify.retention_of", lambda *_: {"kafka": 0.0})
    report = reconcile(settings, dataset, publishers(kafka)).report()
    assert (report["sample_lists"], report["sample_lists_missing"], report["missing"], report["expired"]) == (1, 1, 1, 1)
    monkeypatch.undo()  # the topic's own retention: unlimited, so both are missing
    repaired = repair_dataset(settings, dataset, router=OneRouter(kafka), publishers=publishers(kafka))
    assert repaired["repaired"] == 2 and repaired["sources"][0]["problem"] is None
    assert kafka.stored[dataset][-2] == sample_list  # republished before the message that refers to it
    after = reconcile(settings, dataset, publishers(kafka)).report()
    assert (after["missing"], after["sample_lists_missing"], after["messages"]) == (0, 0, published + 1)
