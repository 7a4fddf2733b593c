"""One chunk, end to end, in plain Python: read -> dead letters -> claim -> route/publish ->
mark -> stage for the stores. The Prefect task (tasks/chunk.py) only wraps this.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pyarrow as pa

from vcfstream.errors import LedgerError, PublishError
from vcfstream.ledger.claims import LedgerSession
from vcfstream.model import Chunk, ChunkSummary
from vcfstream.publish.base import Acks, OutgoingBatch
from vcfstream.publish.routing import in_doubt_on
from vcfstream.runtime.readpool import AheadJob, ReadPool
from vcfstream.runtime.staging import stage_batch
from vcfstream.runtime.telemetry import Telemetry, setup_telemetry
from vcfstream.settings import Settings
from vcfstream.stores.annotations import csq_fields_from_header
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
                    ledger.check_claim()
                    try:
                        result = router.route(outgoing, before_send=ledger.sending)
                    except PublishError as exc:
                        ledger.mark_failed(outgoing.message_ids, str(exc), in_doubt_platforms=in_doubt_on(exc))
                        raise
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
