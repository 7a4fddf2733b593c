"""``vcfstream verify``: read every message of a dataset back from the brokers and reconcile
with the ledger by message id; ``--repair`` republishes what is lost from its source file.

Each copy on a broker, and each id the ledger says is published, falls in one category:

- ``missing``: published (the ledger holds an acknowledgement) and on no platform, while its
  platform still retains messages that old. Lost: ``repair_dataset`` republishes it.
- ``expired``: published and on no platform, acknowledged longer ago than its platform keeps
  messages (Kafka: the topic's ``retention.ms``; Iggy: the topic's message expiry). Not lost,
  aged out; republished only when asked.
- ``in_doubt_copies``: copies beyond the first that in-doubt marks explain: at most the row's
  ``in_doubt_copies`` extra copies, each on its acknowledging platform or one of its
  ``in_doubt_platforms`` (an attempt that timed out after sending, or died between a broker's
  acknowledgement and its mark). Expected after faults, harmless to idempotent consumers.
- ``duplicates``: every other extra copy: ones the ledger cannot explain.
- ``unknown``: copies of ids the ledger has no row for, or whose row is not published and not in
  doubt (an attempt still publishing, or one that died and was not retried yet).
- ``unpublished``: ledger rows claimed or failed and not published yet (the next ingest of the
  file publishes them).

Sample lists (what compact messages refer to: one per dataset and source file, ledger key
``sample-list:<sha256>``) never expire: one the ledger holds as published and no platform holds
is ``missing`` whatever the retention, and ``sample_lists_missing`` counts those among them.
``oversized`` counts the records quarantined because a message of theirs fits no configured
platform even in the compact form (rule ``message.size``): never claimed, so never missing.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from vcfstream.errors import FailureKind, InputError, PublishError, VcfFormatError
from vcfstream.ledger.claims import LedgerEntry, RepairSession, ledger_entries, sources_of
from vcfstream.ledger.quarantine import count_quarantined
from vcfstream.model import Acks
from vcfstream.publish.base import OutgoingBatch, Publisher
from vcfstream.publish.limits import message_options
from vcfstream.publish.routing import in_doubt_on
from vcfstream.settings import Settings
from vcfstream.vcf.chunks import plan_chunks
from vcfstream.vcf.confinement import input_policy
from vcfstream.vcf.encode import sample_list_key, sample_list_message
from vcfstream.vcf.keys import message_id_bytes, message_ids
from vcfstream.vcf.reader import ReadContext, read_chunk
from vcfstream.vcf.source import iter_chunk_lines, open_source


def configured_publishers(settings: Settings) -> dict[str, Publisher]:
    """The publishers this deployment writes to: Kafka always, Iggy when configured."""
    from vcfstream.publish.kafka import KafkaPublisher

    publishers: dict[str, Publisher] = {"kafka": KafkaPublisher(settings)}
    if settings.iggy.url() is not None:
        from vcfstream.publish.iggy import IggyPublisher

        publishers["iggy"] = IggyPublisher(settings)
    return publishers


def kafka_retention_s(settings: Settings, dataset: str) -> float | None:
    """The dataset topic's ``retention.ms`` in seconds, None when unlimited (-1) or no such topic."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, ConfigResource

    topic = settings.kafka.topic(dataset)
    admin = AdminClient({**settings.kafka.client_config(), "socket.timeout.ms": 5000})
    try:
        if topic not in admin.list_topics(timeout=10).topics:
            return None
        resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
        config = admin.describe_configs([resource])[resource].result(timeout=10)
    except KafkaException as exc:
        raise PublishError("kafka", f"reading the configuration of topic {topic}: {exc.args[0].str()}",
                           kind=FailureKind.UNAVAILABLE) from None
    entry = config.get("retention.ms")
    value = int(entry.value) if entry is not None and entry.value is not None else -1
    return value / 1000 if value >= 0 else None


def iggy_retention_s(publisher: Publisher, dataset: str) -> float | None:
    """The message expiry of the dataset's Iggy topic in seconds (``IggyPublisher.retention_s``);
    None when it has none, or ``publisher`` is not an Iggy client (a stand-in keeps everything)."""
    from vcfstream.publish.iggy import IggyPublisher

    return publisher.retention_s(dataset) if isinstance(publisher, IggyPublisher) else None


def retention_of(settings: Settings, dataset: str, publishers: Mapping[str, Publisher]) -> dict[str, float | None]:
    """How long each platform keeps the dataset's messages (seconds; None: for ever, or not known)."""
    retention: dict[str, float | None] = {}
    for name, publisher in publishers.items():
        if name == "kafka":
            retention[name] = kafka_retention_s(settings, dataset)
        elif name == "iggy":
            retention[name] = iggy_retention_s(publisher, dataset)
        else:
            retention[name] = None
    return retention


@dataclass(slots=True)
class Reconciliation:
    """Ids by category (``report()`` gives the counts)."""

    dataset: str
    ledger: dict[bytes, LedgerEntry]
    retention: dict[str, float | None]
    messages: int = 0
    distinct_ids: int = 0
    by_platform: Counter[str] = field(default_factory=Counter)
    missing: list[bytes] = field(default_factory=list)
    expired: list[bytes] = field(default_factory=list)
    in_doubt_copies: int = 0
    duplicates: int = 0
    duplicate_ids: list[bytes] = field(default_factory=list)
    unknown: int = 0
    sample_lists: set[bytes] = field(default_factory=set)  # the ids of the dataset's sample lists
    oversized: int = 0

    def report(self) -> dict[str, Any]:
        published = sum(1 for entry in self.ledger.values() if entry.published)
        return {
            "dataset": self.dataset,
            "ledger_published": published,
            "messages": self.messages,
            "distinct_ids": self.distinct_ids,
            "duplicates": self.duplicates,
            "missing": len(self.missing),
            "expired": len(self.expired),
            "in_doubt_copies": self.in_doubt_copies,
            "in_doubt": sum(1 for entry in self.ledger.values() if entry.in_doubt_copies or entry.in_doubt_platforms),
            "unknown": self.unknown,
            "unpublished": len(self.ledger) - published,
            "by_platform": dict(self.by_platform),
            "retention_s": dict(self.retention),
            "sample_lists": len(self.sample_lists),
            "sample_lists_missing": sum(1 for message_id in self.missing if message_id in self.sample_lists),
            "oversized": self.oversized,
        }


def reconcile(settings: Settings, dataset: str, publishers: dict[str, Publisher] | None = None) -> Reconciliation:
    """Read every platform back and sort every copy and every published id into its category."""
    ledger = ledger_entries(settings, dataset)
    owned = publishers is None
    publishers = publishers or configured_publishers(settings)
    copies: dict[str, Counter[bytes]] = {}
    try:
        retention = retention_of(settings, dataset, publishers)
        for name, publisher in publishers.items():
            copies[name] = Counter(message.message_id for message in publisher.read_back(dataset))
    finally:
        if owned:
            for publisher in publishers.values():
                publisher.close()
    result = Reconciliation(dataset, ledger, retention, oversized=count_quarantined(settings, dataset, "message.size"))
    result.sample_lists = sample_list_ids(dataset, {entry.source_digest for entry in ledger.values()}) & ledger.keys()
    result.by_platform.update({name: sum(counts.values()) for name, counts in copies.items()})
    result.messages = sum(result.by_platform.values())
    seen = set().union(*copies.values()) if copies else set()
    result.distinct_ids = len(seen)
    now = time.time()
    for message_id, entry in ledger.items():
        if entry.published and message_id not in seen:
            keeps = retention.get(entry.platform or "")
            aged_out = (keeps is not None and entry.published_at is not None and entry.published_at < now - keeps
                        and message_id not in result.sample_lists)
            (result.expired if aged_out else result.missing).append(message_id)
    for message_id in seen:
        on = {name: counts[message_id] for name, counts in copies.items() if message_id in counts}
        row = ledger.get(message_id)
        if row is None or (not row.published and not row.in_doubt_copies):
            result.unknown += sum(on.values())
            continue
        explainable = {*row.in_doubt_platforms, *([row.platform] if row.published else [])}
        outside = sum(n for name, n in on.items() if name not in explainable)
        inside = sum(on.values()) - outside
        expected = 1 if row.published else 0  # the acknowledged copy
        allowed = expected + row.in_doubt_copies
        explained = min(max(0, inside - expected), row.in_doubt_copies)
        unexplained = outside + max(0, inside - allowed)
        result.in_doubt_copies += explained
        result.duplicates += unexplained
        if unexplained:
            result.duplicate_ids.append(message_id)
    return result


def sample_list_ids(dataset: str, source_digests: Iterable[str]) -> set[bytes]:
    """The message ids the sample lists of these source files have in ``dataset``."""
    return {message_ids(dataset, digest)(sample_list_key(digest)) for digest in source_digests}


def verify_dataset(settings: Settings, dataset: str,
                   publishers: dict[str, Publisher] | None = None) -> dict[str, Any]:
    """Counts of each category (module docstring) for ``dataset``."""
    return reconcile(settings, dataset, publishers).report()


# -- repair ------------------------------------------------------------------------------------
@dataclass(slots=True)
class SourceRepair:
    """What repair did for the lost ids of one source file."""

    path: str
    digest: str
    wanted: int
    republished: int = 0
    problem: str | None = None  # the file is gone or changed, or the ids are not in it

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "digest": self.digest, "wanted": self.wanted,
                "republished": self.republished, "problem": self.problem}


def repair_dataset(settings: Settings, dataset: str, *, include_expired: bool = False,
                   reference: str | None = None, router: Any = None,
                   publishers: dict[str, Publisher] | None = None) -> dict[str, Any]:
    """Republish every missing id of ``dataset`` (and every expired one with ``include_expired``)
    from its source file, mark the ledger, and report ``verify``'s counts after.

    The ledger knows each lost id's source (digest) and chunk; the file must still be at its
    recorded path with the same sha256, else it is reported (``problem``), not guessed. Repairs
    of one dataset take turns (a lock in PostgreSQL), and each reconciles after taking it, so a
    second repair finds nothing left to do. Ingests never touch a published row: a repair runs
    beside them. A republish that fails in doubt marks its ids in doubt and is reported.
    ``router`` and ``publishers`` (read back) default to the configured platforms.
    """
    from vcfstream.publish.routing import build_router

    if reference:  # read as the run's input policy allows (a flow parameter of the repair flow)
        reference = input_policy(settings).check_reference(reference)
    with RepairSession(settings, dataset) as session:
        before = reconcile(settings, dataset, publishers)
        lost = before.missing + (before.expired if include_expired else [])
        by_source: dict[str, set[bytes]] = defaultdict(set)
        for message_id in lost:
            by_source[before.ledger[message_id].source_digest].add(message_id)
        repairs: list[SourceRepair] = []
        if by_source:
            owned = router is None
            router = router or build_router(settings)
            try:
                sources = sources_of(settings, dataset, list(by_source))
                for digest, wanted in sorted(by_source.items()):
                    source = sources.get(digest)
                    repair = SourceRepair(source.source_path if source else "", digest, len(wanted))
                    repairs.append(repair)
                    if source is None:
                        repair.problem = "the ledger records no source file for these ids"
                        continue
                    _republish(settings, dataset, source.source_path, digest, wanted, source.chunk_ids,
                               reference, router, session, repair)
            finally:
                if owned:
                    router.close()
    after = verify_dataset(settings, dataset, publishers)
    return {
        "dataset": dataset,
        "before": before.report(),
        "repaired": sum(r.republished for r in repairs),
        "sources": [r.to_dict() for r in repairs],
        "after": after,
    }


def _republish(settings: Settings, dataset: str, path: str, digest: str, wanted: set[bytes],
               chunk_ids: frozenset[str], reference: str | None, router: Any, session: RepairSession,
               repair: SourceRepair) -> None:
    """Read the chunks of ``path`` holding ``wanted`` (the ledger's chunks first), publish those
    messages again and mark them; its sample list first when it is lost too."""
    try:
        source = open_source(path, input_policy(settings))
    except (InputError, VcfFormatError) as exc:
        repair.problem = f"source file unreadable: {exc}"
        return
    if source.digest != digest:
        repair.problem = (f"source file changed since it was ingested (sha256 {source.digest[:16]}..., "
                          f"the ledger's {digest[:16]}...): not republished")
        return
    ctx = ReadContext.open(dataset, settings.ingest.assembly, source, reference, message_options(settings))
    chunks = plan_chunks(source, settings.ingest.chunk_size)
    # The chunks the ingest recorded first: with the same chunk size they hold every lost id.
    chunks.sort(key=lambda chunk: chunk.chunk_id not in chunk_ids)
    left = set(wanted)

    def send(batch: OutgoingBatch) -> bool:
        try:
            result = router.route(batch)
        except PublishError as exc:
            if exc.in_doubt:
                session.mark_repair_in_doubt(digest, batch.message_ids, in_doubt_on(exc))
            repair.problem = f"republishing failed: {exc}"
            return False
        acks: Acks = result.acks
        repair.republished += session.mark_repaired(digest, acks, in_doubt_platforms=result.in_doubt_platforms)
        return True

    sample_list = sample_list_message(dataset, source)
    if sample_list.message_id in left:  # first: the messages republished after it may refer to it
        left.discard(sample_list.message_id)
        if not send(OutgoingBatch(dataset=dataset, source=source.path, message_ids=[sample_list.message_id],
                                  keys=[sample_list.key.encode()], values=[sample_list.value], sample_list=True)):
            return
    wanted_ids = pa.array(list(left), pa.binary(16))
    for chunk in chunks:
        if not left:
            break
        table = read_chunk(ctx, chunk, list(iter_chunk_lines(source, chunk))).batch.table
        table = table.filter(pc.is_in(table.column("message_id"), value_set=wanted_ids))
        if not table.num_rows:
            continue
        ids = message_id_bytes(table.column("message_id"))
        fresh = [i for i, message_id in enumerate(ids) if message_id in left]
        table = table.take(pa.array(fresh, pa.int64()))
        ids = [ids[i] for i in fresh]
        left.difference_update(ids)
        step = max(1, settings.ingest.publish_batch_size)
        for start in range(0, len(ids), step):
            part = table.slice(start, step)
            if not send(OutgoingBatch(dataset=dataset, source=source.path, message_ids=ids[start:start + step],
                                      keys=[k.encode() for k in part.column("variant_key").to_pylist()],
                                      values=part.column("value").to_pylist())):
                return
    if left:
        repair.problem = (f"{len(left):,} of the lost ids are not in the file as read now "
                          f"(another --reference than the ingest's?)")

