"""Messages that fit every broker, against the real Kafka of the shared services: with a small
``message.max.bytes``, a record too big in full form is published compact after its file's
sample list (in a compacted topic of its own, published once per dataset and source); one too
big even compact is quarantined with its line and rule; the rest of the chunk is published and
nothing is in doubt. ``verify`` counts the sample list and reports it when it is gone."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic
from fakes import FakePublisher, make_batch
from vcfs import wide_names_vcf

from vcfstream.errors import FailureKind, PublishUnavailable
from vcfstream.ledger import db
from vcfstream.ledger.quarantine import list_quarantined
from vcfstream.model import ChunkSummary
from vcfstream.pipeline import process_chunk
from vcfstream.publish.base import OutgoingBatch, Publisher, StoredMessage
from vcfstream.publish.kafka import KafkaPublisher
from vcfstream.publish.limits import message_options
from vcfstream.publish.routing import RouteResult, build_router
from vcfstream.settings import Settings
from vcfstream.vcf.chunks import plan_chunks
from vcfstream.vcf.encode import COMPACT_SCHEMA, decode_compact, sample_list_message
from vcfstream.vcf.reader import ReadContext
from vcfstream.vcf.source import open_source
from vcfstream.verify import verify_dataset

LIMIT = 12_000  # Kafka's message.max.bytes here: the file's full-form messages are over it


@pytest.fixture
def small_kafka(services: Settings, make_name) -> Settings:
    db.migrate(services)
    return services.with_groups(
        kafka={"topic_prefix": f"vcfstream.{make_name('lim')}.", "sample_list_topic_prefix": f"vcfstream.{make_name('sl')}.",
               "message_max_bytes": LIMIT},
        routing={"breaker_storage": "memory", "strategy": "fallback_only"}, ingest={"chunk_size": 2})


def ingest(settings: Settings, dataset: str, path: Path) -> ChunkSummary:
    """Every chunk of ``path`` through the pipeline, to the configured Kafka (two chunks here)."""
    source = open_source(str(path))
    ctx = ReadContext.open(dataset, settings.ingest.assembly, source, options=message_options(settings))
    router = build_router(settings)
    total = ChunkSummary()
    try:
        for chunk in plan_chunks(source, settings.ingest.chunk_size):
            total = total + process_chunk(settings, ctx, chunk, run_id="run-1", router=router, stage_dir=None).summary
    finally:
        router.close()
    return total


def topic_values(settings: Settings, topic: str) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) of every message of ``topic`` (one partition at a time, start to end)."""
    consumer = Consumer({**settings.kafka.client_config(), "group.id": f"t-{time.time_ns()}",
                         "enable.auto.commit": False})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, p, low)])
            offset = low
            while offset < high:
                for msg in consumer.consume(100, timeout=2.0):
                    assert msg.error() is None
                    yield msg.key(), msg.value()
                    offset = msg.offset() + 1
    finally:
        consumer.close()


def test_a_record_too_big_for_kafka_in_full_form_goes_compact_and_one_too_big_even_compact_is_quarantined(
        small_kafka: Settings, dataset: str, tmp_path: Path) -> None:
    path = wide_names_vcf(tmp_path, samples=100, info_bytes=15_000)  # full ~12 kB a record, compact ~1 kB
    summary = ingest(small_kafka, dataset, path)
    assert (summary.records, summary.alleles, summary.new, dict(summary.published)) == (3, 2, 2, {"kafka": 2})
    assert (summary.quarantined, dict(summary.rules), summary.in_doubt) == (1, {"message.size": 1}, 0)
    (dead,) = list_quarantined(small_kafka, dataset)
    assert (dead["path"], dead["line"], dead["rule"]) == (str(path), 7, "message.size")
    assert f"over the limit of {LIMIT:,} bytes even in the compact form" in dead["message"]

    # on Kafka: the sample list, once, in its compacted topic; two compact messages that decode with it
    source = open_source(str(path))
    sample_list = sample_list_message(dataset, source)
    listed = list(topic_values(small_kafka, small_kafka.kafka.sample_list_topic(dataset)))
    assert listed == [(sample_list.key.encode(), sample_list.value)]
    names = orjson.loads(sample_list.value)["samples"]
    messages = [orjson.loads(value) for _, value in topic_values(small_kafka, small_kafka.kafka.topic(dataset))]
    assert sorted(m["variant"]["pos"] for m in messages) == [100, 300]
    for message in messages:
        assert message["schema"] == COMPACT_SCHEMA and message["genotypes"]["sample_list"] == sample_list.message_id.hex()
        assert decode_compact(message, names)[names[0]] == {"GT": "0/1"}
    admin = AdminClient(small_kafka.kafka.client_config())
    resource = ConfigResource(ConfigResource.Type.TOPIC, small_kafka.kafka.sample_list_topic(dataset))
    config = admin.describe_configs([resource])[resource].result(timeout=10)
    assert (config["cleanup.policy"].value, config["max.message.bytes"].value) == ("compact", str(LIMIT))

    report = verify_dataset(small_kafka, dataset)
    assert (report["ledger_published"], report["messages"], report["missing"], report["duplicates"]) == (3, 3, 0, 0)
    assert (report["sample_lists"], report["sample_lists_missing"], report["oversized"], report["in_doubt"]) == (
        1, 0, 1, 0)

    again = ingest(small_kafka, dataset, path)  # a rerun publishes nothing, the sample list neither
    assert (dict(again.published), again.duplicates) == ({}, 2)
    assert len(list(topic_values(small_kafka, small_kafka.kafka.sample_list_topic(dataset)))) == 1


class Hiding:
    """A platform's read-back without some ids: as if it had lost them."""

    def __init__(self, publisher: KafkaPublisher, hidden: set[bytes]) -> None:
        self.publisher, self.hidden, self.platform = publisher, hidden, publisher.platform

    def publish(self, batch: OutgoingBatch) -> object:
        return self.publisher.publish(batch)

    def healthy(self) -> bool:
        return self.publisher.healthy()

    def read_back(self, dataset: str) -> Iterator[StoredMessage]:
        return (m for m in self.publisher.read_back(dataset) if m.message_id not in self.hidden)

    def close(self) -> None:
        self.publisher.close()


def test_verify_reports_a_sample_list_gone_from_kafka_as_missing(small_kafka: Settings, dataset: str,
                                                                 tmp_path: Path) -> None:
    path = wide_names_vcf(tmp_path, samples=100, info_bytes=10)
    assert ingest(small_kafka, dataset, path).published["kafka"] == 3
    sample_list = sample_list_message(dataset, open_source(str(path)))
    lost: dict[str, Publisher] = {"kafka": Hiding(KafkaPublisher(small_kafka), {sample_list.message_id})}  # type: ignore[dict-item]
    report = verify_dataset(small_kafka, dataset, lost)
    assert (report["missing"], report["sample_lists"], report["sample_lists_missing"], report["expired"]) == (1, 1, 1, 0)


class ToFake:
    """Routes every batch to one fake publisher; a sample list takes half a second to be acknowledged."""

    def __init__(self, publisher: FakePublisher) -> None:
        self.publisher = publisher

    def route(self, batch: OutgoingBatch, *, before_send: Callable[[list[str]], None] | None = None) -> RouteResult:
        if batch.sample_list:
            time.sleep(0.5)
        return RouteResult(self.publisher.publish(batch), self.publisher.platform)


def test_chunks_of_a_file_at_once_publish_its_sample_list_once_and_before_any_message_that_refers_to_it(
        services: Settings, dataset: str, tmp_path: Path) -> None:
    db.migrate(services)
    settings = services.with_groups(ingest={"message_form": "compact"})
    source = open_source(str(wide_names_vcf(tmp_path, samples=5, info_bytes=10)))
    kafka = FakePublisher("kafka")

    def one_chunk(chunk: object) -> ChunkSummary:
        ctx = ReadContext.open(dataset, settings.ingest.assembly, source, options=message_options(settings))
        return process_chunk(settings, ctx, chunk, run_id="run-1", router=ToFake(kafka),  # type: ignore[arg-type]
                             stage_dir=None).summary

    chunks = plan_chunks(source, 1)
    with ThreadPoolExecutor(len(chunks)) as pool:
        summaries = list(pool.map(one_chunk, chunks))
    sample_list = sample_list_message(dataset, source).message_id
    assert (len(chunks), sum(s.published["kafka"] for s in summaries)) == (3, 3)
    assert kafka.stored[dataset][0] == sample_list and kafka.stored[dataset].count(sample_list) == 1
    assert len(kafka.stored[dataset]) == 4


def test_an_existing_topic_that_takes_smaller_messages_than_the_setting_is_refused_before_anything_is_sent(
        services: Settings, dataset: str, make_name: Callable[[str], str]) -> None:
    settings = services.with_groups(kafka={"topic_prefix": f"vcfstream.{make_name('small')}.",
                                           "message_max_bytes": 100_000})
    topic = settings.kafka.topic(dataset)
    admin = AdminClient(settings.kafka.client_config())
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1,
                                  config={"max.message.bytes": "20000"})])[topic].result(timeout=30)
    publisher = KafkaPublisher(settings)
    try:
        with pytest.raises(PublishUnavailable, match="takes messages of up to 20,000 bytes") as caught:
            publisher.publish(make_batch(dataset, 2))
        assert caught.value.kind is FailureKind.INVALID and not caught.value.in_doubt
        assert list(publisher.read_back(dataset)) == []
    finally:
        publisher.close()
    fitting = KafkaPublisher(settings.with_groups(kafka={"message_max_bytes": 20_000}))
    try:
        assert len(fitting.publish(make_batch(dataset, 2))) == 2
    finally:
        fitting.close()
