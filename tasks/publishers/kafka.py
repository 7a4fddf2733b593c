"""Kafka publisher (confluent-kafka / librdkafka): idempotent, acks=all, every delivery checked.

A message counts as published only when its delivery report says so; ``flush`` must leave
nothing in the queue. Topic per dataset (``Settings.kafka_topic``), created on first use.
Message key = variant key (Kafka's partitioner keeps a variant on one partition); headers carry
the message id, dataset and source.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tasks.errors import PublishError, PublishInDoubt, PublishUnavailable
from tasks.publishers.base import Acks, OutgoingBatch, StoredMessage
from tasks.settings import Settings

PLATFORM = "kafka"

# librdkafka errors that mean "nothing was written": safe to send elsewhere.
_CLEAN_FAILURES = {
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._UNKNOWN_TOPIC,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._QUEUE_FULL,
}


class KafkaPublisher:
    """Publishes batches to ``<prefix><dataset>``; one librdkafka producer per instance."""

    platform = PLATFORM

    def __init__(self, settings: Settings, *, platform: str = PLATFORM, timeout_s: float = 30.0) -> None:
        self.settings = settings
        self.platform = platform  # a second instance may play another role in fault tests
        self.timeout_s = timeout_s
        self._client_config = settings.kafka_client_config()
        self._producer: Producer | None = None
        self._topics_ready: set[str] = set()
        self._lock = threading.Lock()

    # -- Publisher protocol -------------------------------------------------------------
    def publish(self, batch: OutgoingBatch) -> Acks:
        if not batch.message_ids:
            return Acks(self.platform, [], [], [])
        topic = self.settings.kafka_topic(batch.dataset)
        with self._lock:  # one batch at a time per producer keeps delivery bookkeeping simple
            self._ensure_topic(topic)
            producer = self._get_producer()
            n = len(batch)
            partitions = [-1] * n
            offsets = [-1] * n
            errors: list[KafkaError] = []

            def delivered(err: KafkaError | None, msg: Any, i: int) -> None:
                if err is not None:
                    errors.append(err)
                else:
                    partitions[i] = msg.partition()
                    offsets[i] = msg.offset()

            dataset_h = batch.dataset.encode()
            source_h = batch.source.encode()
            produce = producer.produce
            ids, keys, values = batch.message_ids, batch.keys, batch.values
            sent = 0
            try:
                for i in range(n):
                    headers = [("message_id", ids[i]), ("dataset", dataset_h), ("source", source_h)]
                    while True:
                        try:
                            produce(topic, values[i], keys[i], headers=headers,
                                    on_delivery=lambda err, msg, i=i: delivered(err, msg, i))
                            break
                        except BufferError:  # local queue full: serve delivery reports, retry
                            producer.poll(0.05)
                    sent += 1
                    if sent % 10_000 == 0:
                        producer.poll(0)
                remaining = producer.flush(self.timeout_s)
            except KafkaException as exc:
                raise self._classify(exc.args[0], sent_any=sent > 0) from None
            if remaining:
                raise PublishInDoubt(self.platform, f"{remaining} of {n} messages undelivered after "
                                     f"{self.timeout_s:.0f}s flush to {topic}")
            if errors:
                raise self._classify(errors[0], sent_any=len(errors) < n,
                                     detail=f"{len(errors)} of {n} deliveries failed")
            return Acks(self.platform, list(ids), partitions, offsets)

    def healthy(self) -> bool:
        try:
            AdminClient(self._admin_config()).list_topics(timeout=2)
            return True
        except KafkaException:
            return False

    def read_back(self, dataset: str) -> Iterator[StoredMessage]:
        """Every message of the dataset's topic, from the start to the current end."""
        topic = self.settings.kafka_topic(dataset)
        consumer = Consumer({**self._client_config, "group.id": f"vcfstream-verify-{time.time_ns()}",
                             "enable.auto.commit": False, "auto.offset.reset": "earliest",
                             "enable.partition.eof": False})
        try:
            meta = consumer.list_topics(topic, timeout=10)
            tmeta = meta.topics.get(topic)
            if tmeta is None or tmeta.error is not None:
                return
            ends: dict[int, int] = {}
            assignment = []
            for p in tmeta.partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                if high > low:
                    ends[p] = high
                    assignment.append(TopicPartition(topic, p, low))
            if not assignment:
                return
            consumer.assign(assignment)
            deadline = time.monotonic() + 300
            while ends and time.monotonic() < deadline:
                for msg in consumer.consume(10_000, timeout=1.0):
                    if msg.error():
                        raise PublishError(self.platform, f"reading {topic}: {msg.error()}")
                    p, off = msg.partition(), msg.offset()
                    headers = dict(msg.headers() or [])
                    yield StoredMessage(self.platform, headers.get("message_id", b""), p, off, headers)
                    if p in ends and off + 1 >= ends[p]:
                        del ends[p]
            if ends:
                raise PublishError(self.platform, f"timed out reading {topic}; partitions left: {sorted(ends)}")
        finally:
            consumer.close()

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(self.timeout_s)
            self._producer = None

    # -- internals ----------------------------------------------------------------------
    def _admin_config(self) -> dict[str, Any]:
        return {**self._client_config, "socket.timeout.ms": 2000}

    def _get_producer(self) -> Producer:
        if self._producer is None:
            self._producer = Producer({
                **self._client_config,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 20,
                "batch.size": 1_000_000,
                "compression.type": "lz4",
                "queue.buffering.max.messages": 500_000,
                "message.timeout.ms": int(self.timeout_s * 1000),
                "partitioner": "murmur2_random",  # Java client's partitioner: same key, same partition
            })
        return self._producer

    def _ensure_topic(self, topic: str) -> None:
        if topic in self._topics_ready:
            return
        admin = AdminClient(self._admin_config())
        try:
            existing = admin.list_topics(timeout=5).topics
        except KafkaException as exc:
            raise PublishUnavailable(self.platform, f"broker {self.settings.kafka_bootstrap} "
                                     f"unreachable: {exc.args[0].str()}") from None
        if topic not in existing:
            future = admin.create_topics([NewTopic(topic, num_partitions=self.settings.kafka_partitions,
                                                   replication_factor=1)])[topic]
            try:
                future.result(timeout=30)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise PublishUnavailable(self.platform, f"cannot create topic {topic}: "
                                             f"{exc.args[0].str()}") from None
        self._topics_ready.add(topic)

    def _classify(self, err: KafkaError, *, sent_any: bool, detail: str = "") -> PublishError:
        text = f"{detail + ': ' if detail else ''}{err.str()} (bootstrap {self.settings.kafka_bootstrap})"
        if err.code() in _CLEAN_FAILURES and not sent_any:
            return PublishUnavailable(self.platform, text)
        # A delivery that timed out may still have been written (idempotence hides retries,
        # not a lost acknowledgement): the outcome is unknown.
        return PublishInDoubt(self.platform, text)
