"""Kafka publisher (confluent-kafka / librdkafka): idempotent, acks=all, every delivery checked.

A message counts as published only when its delivery report says so; ``flush`` must leave
nothing in the queue. Topic per dataset (``KafkaSettings.topic``), created on first use with
``KafkaSettings.replication_factor`` replicas and ``min.insync.replicas`` (default: 3 and 2, or
the broker count and 1 on a cluster of fewer than 3 brokers; ``replication``). With ``acks=all``
a delivery report then means every in-sync replica, at least ``min.insync.replicas`` of them,
has the message in its log (page cache: Kafka does not fsync per message).
Message key = variant key (Kafka's partitioner keeps a variant on one partition); headers carry
the message id, dataset and source. Sample lists (``OutgoingBatch.sample_list``) go to the
dataset's sample-list topic (``KafkaSettings.sample_list_topic``), created with
``cleanup.policy=compact``: Kafka keeps the last message of each key (``sample-list:<sha256>``)
for ever, so a sample list outlives the messages that refer to it whatever their topic's retention.

Size. The producer's ``message.max.bytes`` and the ``max.message.bytes`` of the topics it creates
are ``KafkaSettings.message_max_bytes``; an existing topic that takes less is refused on first use.
A batch holding a message over it is refused whole before anything is produced
(``PublishUnavailable``, ``FailureKind.INVALID``): nothing is in doubt and nothing stays queued. The pipeline never hands over such a message (``vcfstream.publish.limits``).

All brokers down. librdkafka keeps retrying until ``message.timeout.ms``, so a plain ``flush``
would wait the whole call timeout when Kafka is gone. Instead the producer's ``error_cb`` watches
for ``_ALL_BROKERS_DOWN`` (emitted once, when the last broker connection goes down; nothing is
emitted on recovery) and the publisher tracks whether a broker is known to answer:

- unknown (a new producer) or down (``_ALL_BROKERS_DOWN`` served since the last sign of life):
  before anything is produced, a metadata request (``list_topics``, no topic named) must be
  answered, within ``probe_timeout_s`` once all brokers are known down. A new producer waits
  until librdkafka reports all its bootstrap brokers down (a refused connection: at once), then
  ``probe_timeout_s``, and at most ``min(timeout_s, 5 s)``. No answer: ``PublishUnavailable``.
  Nothing of the batch was handed to librdkafka, so nothing is in doubt.
- up (an answered probe or a successful delivery report since the last ``_ALL_BROKERS_DOWN``):
  produce, then flush in short slices. If ``_ALL_BROKERS_DOWN`` arrives meanwhile and a probe gets
  no answer either, the rest of the batch is purged from the producer (so it cannot be sent later)
  and the call ends at once with ``PublishInDoubt``, even if no message was acknowledged: the
  brokers went away while the batch was in flight, and a request written before the connection
  dropped may have been appended without its acknowledgement coming back.

The "down" mark is cleared only by evidence that a broker answers (a probe or a delivery report),
never by time: a stale mark costs one short probe, a wrongly cleared one would cost a full
timeout. ``reconnect.backoff.max.ms`` is lowered to 1 s so that librdkafka retries a returned
broker soon enough for the probe to find it.

Errors: every librdkafka error becomes a ``PublishError`` where it arises, its ``kind`` looked up
by error code in ``_KIND_BY_CODE`` (a message over the size limit, an invalid topic name, refused
credentials or permissions are ``FailureKind.INVALID``: the data or configuration, not the
platform); codes not listed are platform faults (``UNAVAILABLE``). Whether anything may be
stored is decided where the error arises too: a ``produce()`` that raises before any message of
the batch was queued stored nothing, whatever the code; a failed delivery report stored nothing
only when every message failed with a code of ``_CLEAN_FAILURES``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any, cast

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from vcfstream.errors import FailureKind, PublishError, PublishInDoubt, PublishUnavailable
from vcfstream.publish.base import Acks, OutgoingBatch, StoredMessage
from vcfstream.settings import Settings

_log = logging.getLogger(__name__)

PLATFORM = "kafka"

PROBE_TIMEOUT_S = 0.1  # metadata probe once all brokers are known down
_SLICE_S = 0.02  # flush slice (and first probe slice): how soon _ALL_BROKERS_DOWN is acted on
_FIRST_CONTACT_MAX_S = 5.0  # a new producer waits at most this long for its first broker

# Why a librdkafka error code failed a publish; codes not listed are platform faults (UNAVAILABLE).
_KIND_BY_CODE: dict[int, FailureKind] = {
    # no broker can be reached
    KafkaError._TRANSPORT: FailureKind.REFUSED,
    KafkaError._ALL_BROKERS_DOWN: FailureKind.REFUSED,
    KafkaError._RESOLVE: FailureKind.REFUSED,
    KafkaError.BROKER_NOT_AVAILABLE: FailureKind.REFUSED,
    KafkaError.NETWORK_EXCEPTION: FailureKind.DISCONNECTED,
    # no answer in time
    KafkaError._MSG_TIMED_OUT: FailureKind.TIMEOUT,
    KafkaError._TIMED_OUT: FailureKind.TIMEOUT,
    KafkaError._TIMED_OUT_QUEUE: FailureKind.TIMEOUT,
    KafkaError.REQUEST_TIMED_OUT: FailureKind.TIMEOUT,
    # the message: too large or malformed for this cluster
    KafkaError.MSG_SIZE_TOO_LARGE: FailureKind.INVALID,
    KafkaError.RECORD_LIST_TOO_LARGE: FailureKind.INVALID,
    KafkaError.INVALID_MSG_SIZE: FailureKind.INVALID,
    KafkaError.INVALID_MSG: FailureKind.INVALID,
    KafkaError.INVALID_RECORD: FailureKind.INVALID,
    KafkaError.INVALID_TIMESTAMP: FailureKind.INVALID,
    KafkaError.UNSUPPORTED_FOR_MESSAGE_FORMAT: FailureKind.INVALID,
    KafkaError._INVALID_ARG: FailureKind.INVALID,
    KafkaError._INVALID_TYPE: FailureKind.INVALID,
    # the topic: a name or layout the cluster refuses
    KafkaError.TOPIC_EXCEPTION: FailureKind.INVALID,
    KafkaError.INVALID_PARTITIONS: FailureKind.INVALID,
    KafkaError.INVALID_REPLICATION_FACTOR: FailureKind.INVALID,
    KafkaError.INVALID_REPLICA_ASSIGNMENT: FailureKind.INVALID,
    KafkaError.INVALID_CONFIG: FailureKind.INVALID,
    KafkaError.POLICY_VIOLATION: FailureKind.INVALID,
    # the client configuration: credentials, permissions, settings the cluster refuses
    KafkaError.TOPIC_AUTHORIZATION_FAILED: FailureKind.INVALID,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED: FailureKind.INVALID,
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED: FailureKind.INVALID,
    KafkaError.SASL_AUTHENTICATION_FAILED: FailureKind.INVALID,
    KafkaError.UNSUPPORTED_SASL_MECHANISM: FailureKind.INVALID,
    KafkaError.ILLEGAL_SASL_STATE: FailureKind.INVALID,
    KafkaError._AUTHENTICATION: FailureKind.INVALID,
    KafkaError.INVALID_REQUIRED_ACKS: FailureKind.INVALID,
    KafkaError.UNSUPPORTED_COMPRESSION_TYPE: FailureKind.INVALID,
    KafkaError.UNSUPPORTED_VERSION: FailureKind.INVALID,
    KafkaError._UNSUPPORTED_FEATURE: FailureKind.INVALID,
}


def failure_kind(err: KafkaError) -> FailureKind:
    """Why ``err`` failed a publish (``_KIND_BY_CODE``; a platform fault when the code is not listed)."""
    return _KIND_BY_CODE.get(err.code(), FailureKind.UNAVAILABLE)


# Delivery-report errors that mean "nothing was written": safe to send elsewhere.
_CLEAN_FAILURES = {
    KafkaError.MSG_SIZE_TOO_LARGE,  # the broker refused the request: nothing of it was appended
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._UNKNOWN_TOPIC,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._QUEUE_FULL,
}


def replication(brokers: int, replication_factor: int | None = None,
                min_insync_replicas: int | None = None) -> tuple[int, int]:
    """``(replication factor, min.insync.replicas)`` of a topic vcfstream creates on a cluster of
    ``brokers`` brokers: the settings where given, else 3 replicas (the broker count on a smaller
    cluster) and 2 in sync when there are 3 or more replicas, else 1.

    Example:
        >>> replication(1), replication(2), replication(3), replication(5)
        ((1, 1), (2, 1), (3, 2), (3, 2))
    """
    replicas = replication_factor or max(1, min(3, brokers))
    min_insync = min_insync_replicas or (2 if replicas >= 3 else 1)
    return replicas, min(min_insync, replicas)


class KafkaPublisher:
    """Publishes batches to ``<prefix><dataset>``; one librdkafka producer per instance."""

    platform = PLATFORM

    def __init__(self, settings: Settings, *, platform: str = PLATFORM, timeout_s: float = 30.0,
                 probe_timeout_s: float = PROBE_TIMEOUT_S) -> None:
        self.settings = settings
        self.platform = platform  # a second instance may play another role in fault tests
        self.timeout_s = timeout_s
        self.probe_timeout_s = probe_timeout_s
        self._client_config = settings.kafka.client_config()
        self._producer: Producer | None = None
        self._topics_ready: set[str] = set()
        self._lock = threading.Lock()
        # Broker reachability as this producer last saw it: None = never confirmed (new producer),
        # True = a broker answered since the last _ALL_BROKERS_DOWN, False = all brokers down.
        self._reachable: bool | None = None
        self._ever_reached = False  # this producer has had an answer from a broker at least once
        self._down_events = 0  # _ALL_BROKERS_DOWN events served so far
        self._down_text = ""  # the last _ALL_BROKERS_DOWN text, e.g. "1/1 brokers are down"
        self._transport_text = ""  # the last _TRANSPORT error, e.g. "... Connection refused ..."
        self._config_refused: KafkaError | None = None  # the last connection error that is the configuration's

    # -- Publisher protocol -------------------------------------------------------------
    def publish(self, batch: OutgoingBatch) -> Acks:
        if not batch.message_ids:
            return Acks(self.platform, [], [], [])
        kafka = self.settings.kafka
        topic = kafka.sample_list_topic(batch.dataset) if batch.sample_list else kafka.topic(batch.dataset)
        self._check_sizes(batch, topic)
        with self._lock:  # one batch at a time per producer keeps delivery bookkeeping simple
            producer = self._get_producer()
            producer.poll(0)  # serve pending events: an _ALL_BROKERS_DOWN since the last batch
            if self._reachable is not True:
                self._require_broker(producer)  # PublishUnavailable before anything is produced
            self._ensure_topic(topic, compacted=batch.sample_list)
            down_events = self._down_events
            n = len(batch)
            partitions = [-1] * n
            offsets = [-1] * n
            errors: list[KafkaError] = []
            acked = 0

            ids, keys, values = batch.message_ids, batch.keys, batch.values
            # A report finds its message by key when keys are distinct (a claimed batch: one
            # variant, one id): one callback for all instead of a closure per message.
            index = {key: i for i, key in enumerate(keys)}
            by_key = len(index) == n

            def delivered(err: KafkaError | None, msg: Any, i: int | None = None) -> None:
                nonlocal acked
                if err is not None:
                    errors.append(err)
                else:
                    if i is None:
                        i = index[msg.key()]
                    partitions[i] = msg.partition()
                    offsets[i] = msg.offset()
                    acked += 1
                    self._reachable = True  # a broker acknowledged: it is up

            dataset_h = ("dataset", batch.dataset.encode())
            source_h = ("source", batch.source.encode())
            produce = producer.produce
            sent = 0
            try:
                for i in range(n):
                    headers: list[tuple[str, str | bytes | None]] = [("message_id", ids[i]), dataset_h, source_h]
                    callback = delivered if by_key else lambda err, msg, i=i: delivered(err, msg, i)
                    while True:
                        try:
                            produce(topic, values[i], keys[i], headers=headers, on_delivery=callback)
                            break
                        except BufferError:  # local queue full: serve delivery reports, retry
                            producer.poll(0.05)
                    sent += 1
                    if sent % 10_000 == 0:
                        producer.poll(0)
                deadline = time.monotonic() + self.timeout_s
                while True:
                    remaining = producer.flush(min(_SLICE_S, max(0.0, deadline - time.monotonic())))
                    if remaining == 0 or time.monotonic() >= deadline:
                        break
                    if self._down_events != down_events:  # all brokers went down during this batch
                        down_events = self._down_events
                        if not self._probe(producer, time.monotonic() + self.probe_timeout_s):
                            self._purge(producer)
                            raise PublishInDoubt(self.platform, (
                                f"broker {self.settings.kafka.bootstrap_servers} unreachable: all brokers down while "
                                f"the batch was in flight ({self._down_detail()}): {acked} of {n} "
                                f"acknowledged; the other {n - acked} were purged from the producer "
                                f"unacknowledged and may have been written to {topic}"), kind=FailureKind.DISCONNECTED)
            except KafkaException as exc:  # produce() refused message ``sent``: it was never queued
                raise self._error(exc.args[0], stored_nothing=sent == 0,
                                  detail=f"message {sent} of {n} refused by the producer") from None
            if remaining:
                raise PublishInDoubt(self.platform, f"{remaining} of {n} messages undelivered after "
                                     f"{self.timeout_s:.0f}s flush to {topic}", kind=FailureKind.TIMEOUT)
            if errors:
                raise self._error(errors[0], stored_nothing=len(errors) == n and errors[0].code() in _CLEAN_FAILURES,
                                  detail=f"{len(errors)} of {n} deliveries failed")
            return Acks(self.platform, list(ids), partitions, offsets)

    def healthy(self) -> bool:
        try:
            AdminClient(self._admin_config()).list_topics(timeout=2)
            return True
        except KafkaException:
            return False

    def read_back(self, dataset: str) -> Iterator[StoredMessage]:
        """Every message of the dataset's topic and its sample-list topic, from the start to the current end."""
        yield from self._read_topic(self.settings.kafka.topic(dataset))
        yield from self._read_topic(self.settings.kafka.sample_list_topic(dataset))

    def _read_topic(self, topic: str) -> Iterator[StoredMessage]:
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
                    error = msg.error()
                    if error is not None:
                        raise PublishError(self.platform, f"reading {topic}: {error}", kind=failure_kind(error))
                    p, off = cast(int, msg.partition()), cast(int, msg.offset())  # set on every message
                    raw = msg.headers() or []  # a consumer returns a list of (key, value)
                    pairs = raw.items() if isinstance(raw, dict) else raw
                    headers = {k: v for k, v in pairs if isinstance(v, bytes)}
                    yield StoredMessage(self.platform, headers.get("message_id", b""), p, off, headers)
                    if p in ends and off + 1 >= ends[p]:
                        del ends[p]
            if ends:
                raise PublishError(self.platform, f"timed out reading {topic}; partitions left: {sorted(ends)}",
                                   kind=FailureKind.TIMEOUT)
        finally:
            consumer.close()

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(self.timeout_s)
            self._producer = None

    # -- internals ----------------------------------------------------------------------
    def _admin_config(self) -> dict[str, Any]:
        return {**self._client_config, "socket.timeout.ms": 2000}

    def producer_config(self) -> dict[str, Any]:
        """The librdkafka producer settings: idempotent, ``acks=all`` (every in-sync replica)."""
        return {
            **self._client_config,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 20,
            "batch.size": 1_000_000,
            "message.max.bytes": self.settings.kafka.message_max_bytes,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 500_000,
            "message.timeout.ms": int(self.timeout_s * 1000),
            "partitioner": "murmur2_random",  # Java client's partitioner: same key, same partition
            # Default 10 s: after an outage a probe would find the broker still in backoff.
            "reconnect.backoff.max.ms": 1000,
            "error_cb": self._on_error,
        }

    def _get_producer(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(self.producer_config())
            self._reachable = None
            self._ever_reached = False
        return self._producer

    def _on_error(self, err: KafkaError) -> None:
        """librdkafka's error_cb, served on the thread calling poll/flush (under ``_lock``)."""
        code = err.code()
        if code == KafkaError._ALL_BROKERS_DOWN:
            self._down_events += 1
            self._reachable = False
            self._down_text = err.str()
            _log.info("%s: all brokers down (%s; bootstrap %s)", self.platform, err.str(),
                      self.settings.kafka.bootstrap_servers)
        elif code == KafkaError._TRANSPORT:
            self._transport_text = err.str()
        elif failure_kind(err) is FailureKind.INVALID:  # e.g. _AUTHENTICATION: credentials the broker refuses
            self._config_refused = err
            _log.warning("%s: %s (bootstrap %s)", self.platform, err.str(), self.settings.kafka.bootstrap_servers)
        else:
            _log.debug("%s: librdkafka error %s", self.platform, err)

    def _probe(self, producer: Producer, deadline: float, *, first_contact: bool = False) -> bool:
        """Whether a broker answers a metadata request before ``deadline``; marks it reachable.

        Normally one request with the whole time left. With ``first_contact`` (a producer that
        has never reached a broker) the request is repeated with growing timeouts (20, 40, 80 ms..,
        so a slow link still gets an answer) and error_cb is served in between: once librdkafka
        reports every bootstrap broker down, the deadline is cut to ``probe_timeout_s`` from then.
        """
        down_events = self._down_events
        slice_s = _SLICE_S if first_contact else float("inf")
        while True:
            try:
                # No topic named: a metadata request for one may auto-create it with broker defaults.
                producer.list_topics(timeout=max(0.001, min(slice_s, deadline - time.monotonic())))
            except KafkaException:
                pass
            else:
                self._reachable = self._ever_reached = True
                self._transport_text = ""
                self._config_refused = None
                return True
            producer.poll(0)  # serve error_cb
            if first_contact and self._down_events != down_events:
                down_events = self._down_events
                deadline = min(deadline, time.monotonic() + self.probe_timeout_s)
            if time.monotonic() >= deadline:
                return False
            slice_s *= 2

    def _require_broker(self, producer: Producer) -> None:
        """Return once a broker answers; raise ``PublishUnavailable`` (nothing produced) if none does."""
        first_contact = self._reachable is None  # new producer, no _ALL_BROKERS_DOWN served yet
        now = time.monotonic()
        wait = min(self.timeout_s, _FIRST_CONTACT_MAX_S) if first_contact else self.probe_timeout_s
        if self._probe(producer, now + wait, first_contact=first_contact):
            return
        waited_ms = (time.monotonic() - now) * 1000
        where = f"broker {self.settings.kafka.bootstrap_servers} unreachable"
        if self._config_refused is not None:  # the brokers answer, but not to this configuration
            raise PublishUnavailable(self.platform, f"broker {self.settings.kafka.bootstrap_servers} refused the "
                                     f"client: {self._config_refused.str()}; nothing sent",
                                     kind=failure_kind(self._config_refused))
        if self._reachable is None:  # no _ALL_BROKERS_DOWN either: brokers not answering in time
            raise PublishUnavailable(self.platform, f"{where}: no metadata answer in {waited_ms:.0f} ms "
                                     f"({self._transport_text or 'no error reported'}); nothing sent",
                                     kind=FailureKind.TIMEOUT)
        how = "still down" if self._ever_reached else "never reached by this producer"
        raise PublishUnavailable(self.platform, f"{where}: all brokers down, {how} ({self._down_detail()}; "
                                 f"no metadata answer in {waited_ms:.0f} ms); nothing sent",
                                 kind=FailureKind.REFUSED)

    def _down_detail(self) -> str:
        return "; ".join(p for p in (self._down_text or "all brokers down", self._transport_text) if p)

    @staticmethod
    def _purge(producer: Producer) -> None:
        """Drop every queued or in-flight message so none is sent after we gave up, and serve
        their delivery reports (errors: _PURGE_QUEUE / _PURGE_INFLIGHT)."""
        producer.purge(in_queue=True, in_flight=True, blocking=True)
        deadline = time.monotonic() + 1.0
        while len(producer) and time.monotonic() < deadline:
            producer.poll(0.01)

    def _check_sizes(self, batch: OutgoingBatch, topic: str) -> None:
        """Refuse the batch, before anything is produced, if a message is over ``message.max.bytes``
        (value, key and headers, as librdkafka counts it)."""
        limit = self.settings.kafka.message_max_bytes
        headers = len(batch.dataset.encode()) + len(batch.source.encode()) + 16 + 64
        for i, (key, value) in enumerate(zip(batch.keys, batch.values)):
            size = len(value) + len(key) + headers
            if size > limit:
                raise PublishUnavailable(self.platform, f"message {i} of {len(batch)} for {topic} is {size:,} bytes "
                                         f"with its key and headers, over message.max.bytes {limit:,} "
                                         f"(VCFSTREAM_KAFKA_MESSAGE_MAX_BYTES); nothing sent", kind=FailureKind.INVALID)

    def _ensure_topic(self, topic: str, *, compacted: bool = False) -> None:
        """Create ``topic`` when absent, with the replication ``replication`` chooses from the
        broker count and ``max.message.bytes`` of the setting (with ``compacted``, as a compacted
        topic); warn once about an existing topic with fewer replicas than that, or not compacted
        when it should be. An existing topic that takes smaller messages than the setting is
        refused (``FailureKind.INVALID``, nothing sent): the pipeline sizes messages by the setting."""
        if topic in self._topics_ready:
            return
        admin = AdminClient(self._admin_config())
        try:
            metadata = admin.list_topics(timeout=5)
        except KafkaException as exc:
            raise PublishUnavailable(self.platform, f"broker {self.settings.kafka.bootstrap_servers} "
                                     f"unreachable: {exc.args[0].str()}", kind=failure_kind(exc.args[0])) from None
        replicas, min_insync = replication(len(metadata.brokers), self.settings.kafka.replication_factor,
                                           self.settings.kafka.min_insync_replicas)
        existing = metadata.topics.get(topic)
        if existing is None:
            config = {"min.insync.replicas": str(min_insync),
                      "max.message.bytes": str(self.settings.kafka.message_max_bytes)}
            if compacted:
                config["cleanup.policy"] = "compact"
            new = NewTopic(topic, num_partitions=self.settings.kafka.partitions, replication_factor=replicas,
                           config=config)
            try:
                admin.create_topics([new])[topic].result(timeout=30)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise PublishUnavailable(self.platform, f"cannot create topic {topic} (replication factor "
                                             f"{replicas}, min.insync.replicas {min_insync}): "
                                             f"{exc.args[0].str()}", kind=failure_kind(exc.args[0])) from None
        else:
            fewest = min((len(p.replicas) for p in existing.partitions.values()), default=replicas)
            if fewest < replicas:
                _log.warning("%s: topic %s has %d replica(s) per partition, fewer than the %d vcfstream would "
                             "create it with: an acknowledged message survives fewer broker losses", self.platform,
                             topic, fewest, replicas)
            self._check_topic_config(admin, topic, compacted)
        self._topics_ready.add(topic)

    def _check_topic_config(self, admin: AdminClient, topic: str, compacted: bool) -> None:
        """Refuse an existing topic whose ``max.message.bytes`` is below the setting; warn when a
        sample-list topic is not compacted (its sample lists would expire). A configuration the
        client may not read is left unchecked."""
        resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
        try:
            config = admin.describe_configs([resource])[resource].result(timeout=10)
        except KafkaException as exc:
            _log.warning("%s: cannot read the configuration of topic %s (%s): its message size limit is not "
                         "checked", self.platform, topic, exc.args[0].str())
            return
        entry = config.get("max.message.bytes")
        takes = int(entry.value) if entry is not None and entry.value is not None else None
        wanted = self.settings.kafka.message_max_bytes
        if takes is not None and takes < wanted:
            raise PublishUnavailable(self.platform, (
                f"topic {topic} takes messages of up to {takes:,} bytes (max.message.bytes), fewer than "
                f"VCFSTREAM_KAFKA_MESSAGE_MAX_BYTES {wanted:,}: lower the setting or raise the topic's limit; "
                f"nothing sent"), kind=FailureKind.INVALID)
        policy = config.get("cleanup.policy")
        if compacted and (policy is None or "compact" not in str(policy.value)):
            _log.warning("%s: sample-list topic %s is not compacted (cleanup.policy %s): its sample lists expire "
                         "with its retention, before the messages that refer to them", self.platform, topic,
                         policy.value if policy is not None else "unknown")

    def _error(self, err: KafkaError, *, stored_nothing: bool, detail: str = "") -> PublishError:
        """``err`` as a ``PublishError`` of its kind; in doubt unless the caller knows nothing was stored.

        A delivery that timed out may still have been written (idempotence hides retries, not a
        lost acknowledgement): the outcome is unknown.
        """
        text = f"{detail + ': ' if detail else ''}{err.str()} (bootstrap {self.settings.kafka.bootstrap_servers})"
        if stored_nothing:
            return PublishUnavailable(self.platform, text, kind=failure_kind(err))
        return PublishInDoubt(self.platform, text, kind=failure_kind(err))
