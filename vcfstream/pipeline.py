"""One chunk, end to end, in plain Python: read -> dead letters -> (the file's sample list, before
the first compact message) -> claim -> route/publish -> mark -> stage for the stores. The Prefect
task (tasks/chunk.py) only wraps this.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import psycopg
import pyarrow as pa
import pyarrow.compute as pc

from vcfstream.errors import ConfigurationError, LedgerError, PublishError
from vcfstream.ledger.claims import LedgerSession
from vcfstream.model import Chunk, ChunkSummary
from vcfstream.publish.base import Acks, OutgoingBatch
from vcfstream.publish.routing import in_doubt_on
from vcfstream.runtime.readpool import AheadJob, ReadPool
from vcfstream.runtime.staging import stage_batch
from vcfstream.runtime.telemetry import Telemetry, setup_telemetry
from vcfstream.settings import Settings
from vcfstream.stores.annotations import csq_fields_from_header
from vcfstream.vcf.encode import COMPACT_SCHEMA, message_sizes, sample_list_message
from vcfstream.vcf.keys import message_id_bytes
from vcfstream.vcf.reader import ReadContext, read_chunk
from vcfstream.vcf.source import iter_chunk_lines


class RouteResultLike(Protocol):
    """What the pipeline reads of a routed batch (``publish.routing.RouteResult``)."""

    @property
    def acks(self) -> Acks: ...
    @property
    def platform(self) -> str: ...
    @property
    def failover(self) -> str | None: ...
    @property
    def failover_from(self) -> str | None: ...
    @property
    def failover_reason(self) -> str | None: ...
    @property
    def in_doubt_platforms(self) -> list[str]: ...


_COMPACT_HEAD = pa.scalar(('{"schema":"' + COMPACT_SCHEMA + '"').encode(), pa.binary())  # how a compact message begins


def has_compact_messages(values: pa.ChunkedArray | pa.Array) -> bool:
    """Whether any of the messages is in the compact form (which refers to a sample list)."""
    if not len(values):
        return False
    heads = pc.binary_slice(values, 0, len(_COMPACT_HEAD.as_py()))
    return bool(pc.any(pc.equal(heads, _COMPACT_HEAD)).as_py())


class RouterLike(Protocol):
    def route(self, batch: OutgoingBatch, *, before_send: Callable[[list[str]], None] | None = None
              ) -> RouteResultLike: ...


@dataclass(slots=True)
class ChunkOutcome:
    summary: ChunkSummary
    staged: str | None  # Arrow IPC file of the chunk's alleles, for the store tasks
    failover_messages: list[str] = field(default_factory=list)
    carrier: dict[str, str] = field(default_factory=dict)  # the chunk span, for the store spans

    @property
    def state_message(self) -> str:
        published = ", ".join(f"{n:,} to {p}" for p, n in sorted(self.summary.published.items()))
        text = published or "nothing new to publish"
        if self.failover_messages:
            text += " after " + "; ".join(dict.fromkeys(self.failover_messages))
        return text


def route_claimed(ledger: LedgerSession, router: RouterLike, outgoing: OutgoingBatch) -> RouteResultLike:
    """Route a batch this attempt claimed, if it still holds the claim; a batch published nowhere
    is marked failed (in doubt where it may be) and its ``PublishError`` raised."""
    ledger.check_claim()
    try:
        return router.route(outgoing, before_send=ledger.sending)
    except PublishError as exc:
        ledger.mark_failed(outgoing.message_ids, str(exc), in_doubt_platforms=in_doubt_on(exc))
        raise


def publish_sample_list(ctx: ReadContext, ledger: LedgerSession, router: RouterLike) -> str | None:
    """Publish the sample list of ``ctx``'s dataset and source file unless the ledger holds it
    published already; returns the platform it went to, or None.

    Called before a chunk publishes compact messages, which refer to it. The chunks of a file that
    run at once take turns (a PostgreSQL advisory lock on its id, in a key space of its own), so
    whichever chunk publishes it, no compact message is sent before its sample list is acknowledged.
    """
    message = sample_list_message(ctx.dataset, ctx.source)
    limit = ctx.options.max_bytes
    size = int(message_sizes(pa.array([message.value]), pa.array([message.key]), ctx.dataset, ctx.source.path)[0])
    if limit is not None and size > limit:
        raise ConfigurationError(
            f"{ctx.source.path}: its sample list ({len(ctx.source.samples):,} names) is a message of {size:,} bytes, "
            f"over the limit of {limit:,} (the smallest message size limit of the configured platforms): raise "
            f"VCFSTREAM_KAFKA_MESSAGE_MAX_BYTES (and the topics' max.message.bytes) to publish its compact messages")
    lock = struct.unpack(">ii", message.message_id[:8])
    try:
        ledger.conn.execute("SELECT pg_advisory_lock(%s, %s)", lock)
    except psycopg.Error as exc:
        raise LedgerError(f"waiting for the sample list of {ctx.source.path}: {exc}") from None
    try:
        claim = ledger.claim([message.message_id], [message.key])
        if not claim.to_publish:  # published already (or being published: we held the lock after it)
            return None
        outgoing = OutgoingBatch(dataset=ctx.dataset, source=ctx.source.path, message_ids=[message.message_id],
                                 keys=[message.key.encode()], values=[message.value], sample_list=True)
        result = route_claimed(ledger, router, outgoing)
        ledger.mark_published(result.acks, in_doubt_platforms=result.in_doubt_platforms)
        return result.platform
    finally:
        with contextlib.suppress(psycopg.Error):  # a broken connection released it
            ledger.conn.execute("SELECT pg_advisory_unlock(%s, %s)", lock)


def process_chunk(settings: Settings, ctx: ReadContext, chunk: Chunk, *, run_id: str,
                  router: RouterLike, stage_dir: Path | None, telemetry: Telemetry | None = None,
                  carrier: Mapping[str, str] | None = None, reader: ReadPool | None = None) -> ChunkOutcome:
    """Ingest one chunk; raises ``PublishError``/``LedgerError`` with the ledger updated.

    Before each batch and before marking it, the attempt checks it still holds its claim (its
    lock in PostgreSQL): one that lost it stops with ``ClaimLost`` rather than publish rows another
    attempt may be taking over. A batch published nowhere in doubt keeps its in-doubt marks.

    Traced as a ``chunk`` span (child of ``carrier``, the flow's span) with one span per stage:
    ``read`` (raw lines; with ``reader``, a pool of reader processes, the wait for a free reader
    too, and the lines are read there), ``validate`` (validate, normalize, key, dead letters),
    then ``claim`` and ``publish`` per publish batch, and ``stage`` (the Arrow file for the store
    tasks).
    """
    tel = telemetry or setup_telemetry(settings)
    summary = ChunkSummary()
    failovers: list[str] = []
    with tel.chunk_span(carrier, dataset=ctx.dataset, file=ctx.source.path, chunk=chunk.label,
                        chunk_id=chunk.chunk_id, run_id=run_id), \
            LedgerSession(settings, dataset=ctx.dataset, source_digest=ctx.source.digest,
                          source_path=ctx.source.path, chunk_id=chunk.chunk_id, run_id=run_id) as ledger:
        ledger.chunk_started()
        with contextlib.ExitStack() as scope:
            with tel.stage("read") as span:
                # Lines are read whole (at most chunk_size) before parsing, so the two are timed apart.
                if reader is not None:  # a reader process reads them from the file and parses them
                    job = reader.submit(ctx, chunk)
                    scope.enter_context(job)  # both kinds of job enter as themselves
                    # A chunk read ahead was read (maybe parsed) before this span began.
                    tel.annotate(span, records=job.lines_read(), read_ahead=isinstance(job, AheadJob))
                else:
                    lines = list(iter_chunk_lines(ctx.source, chunk))
                    tel.annotate(span, records=len(lines))
            with tel.stage("validate") as span:
                if reader is not None:
                    read = job.result()
                else:
                    read = read_chunk(ctx, chunk, lines)
                    del lines
                batch = read.batch
                summary.records, summary.reference_blocks = read.records, read.reference_blocks
                summary.read_digest = read.digest
                summary.alleles = len(batch)
                summary.quarantined = len(read.quarantined)
                for q in read.quarantined:
                    summary.rules[q.rule] += 1
                ledger.record_dead_letters(read.quarantined)
                tel.annotate(span, records=summary.records, alleles=summary.alleles, quarantined=summary.quarantined,
                             reference_blocks=summary.reference_blocks, rules=dict(summary.rules))

        table = batch.table
        step = max(1, settings.ingest.publish_batch_size)
        try:
            if has_compact_messages(table.column("value")):
                with tel.stage("sample_list") as span:
                    tel.annotate(span, platform=publish_sample_list(ctx, ledger, router) or "published before")
            for number, start in enumerate(range(0, table.num_rows, step)):
                part = table.slice(start, step)
                with tel.stage("claim", batch=number) as span:
                    ids = message_id_bytes(part.column("message_id"))
                    keys = part.column("variant_key").to_pylist()
                    claim = ledger.claim(ids, keys)
                    summary.duplicates += claim.duplicates
                    summary.new += len(claim.to_publish)
                    tel.annotate(span, alleles=len(ids), new=len(claim.to_publish), duplicates=claim.duplicates)
                if not claim.to_publish:
                    continue
                values = part.column("value")
                if len(claim.to_publish) < len(ids):  # some were duplicates (else no copy of the values)
                    values = values.take(pa.array(claim.to_publish, type=pa.int64()))
                outgoing = OutgoingBatch(
                    dataset=ctx.dataset,
                    source=ctx.source.path,
                    message_ids=[ids[i] for i in claim.to_publish],
                    keys=[keys[i].encode() for i in claim.to_publish],
                    values=values.to_pylist(),
                )
                with tel.stage("publish", batch=number, messages=len(outgoing.message_ids)) as span:
                    result = route_claimed(ledger, router, outgoing)
                    tel.annotate(span, platform=result.platform, acked=len(result.acks),
                                 in_doubt_platforms=result.in_doubt_platforms or None)
                    if result.failover:
                        tel.record_failover(span, result.failover_from or "unknown", result.platform,
                                            result.failover_reason or "unknown")
                    ledger.mark_published(result.acks, in_doubt_platforms=result.in_doubt_platforms)
                summary.published[result.platform] += len(result.acks)
                if result.in_doubt_platforms:
                    summary.in_doubt += len(result.acks)
                if result.failover:
                    summary.failovers += 1
                    failovers.append(result.failover)
        except Exception as exc:
            with contextlib.suppress(LedgerError):  # the ledger itself may be what failed
                ledger.chunk_failed(f"{type(exc).__name__}: {exc}", summary)
            raise
        staged = None
        if stage_dir is not None and len(batch):
            with tel.stage("stage", alleles=len(batch)):
                staged = stage_batch(batch, stage_dir, chunk,
                                     csq_fields=csq_fields_from_header(ctx.source.header_text))
        ledger.chunk_finished(summary)
        tel.record_chunk(summary, {"dataset": ctx.dataset})
        carrier_out = tel.inject()  # the store tasks' spans join this chunk
    return ChunkOutcome(summary, staged, failovers, carrier_out)
