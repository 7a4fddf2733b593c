"""The ``ingest_vcf`` flow: plan each file, map chunk tasks, fan out store tasks, summarize.

The flow only plans, maps and merges. A file that cannot be read (missing, not a VCF, header
errors) fails on its own and is named in the final state; the other files still run.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter, deque
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger, runtime
from prefect.artifacts import create_table_artifact
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.futures import as_completed
from prefect.states import Completed, Failed, State
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from blocks import BlockNames, resolve
from flows.runners import chunk_task_runner, submit
from tasks.chunk import ChunkResult, ingest_chunk, plan_file, store_chunks
from vcfstream.errors import IngestFailed
from vcfstream.ledger.db import migrate
from vcfstream.model import Chunk, ChunkSummary
from vcfstream.names import artifact_key, check_dataset
from vcfstream.runtime.process import process_runtime
from vcfstream.runtime.readpool import process_rss
from vcfstream.runtime.resources import ResourceGuard, fewer_collections
from vcfstream.runtime.staging import Staged, StoreQueue
from vcfstream.settings import Settings, load_settings
from vcfstream.stores.registry import check_store_names, preload_stores
from vcfstream.stores.runs import RunRecord
from vcfstream.stores.writer import writer_pss
from vcfstream.summary import ChunkRow, FileOutcome, RunSummary
from vcfstream.vcf.confinement import input_policy
from vcfstream.vcf.source import SourceFile


# Prefect annotates task_runner as TaskRunner[PrefectFuture[Any]], which no concrete runner matches (its
# future type parameter is invariant): PrefectHQ/prefect#16938.
@flow(name="ingest_vcf", task_runner=ThreadPoolTaskRunner(max_workers=8), log_prints=False,  # type: ignore[arg-type]
      flow_run_name="{dataset}: {paths}")
def ingest_vcf(paths: list[str], dataset: str = "default", assembly: str | None = None,
               chunk_size: int | None = None, strict: bool = False, reference: str | None = None,
               routing: str | None = None, stores: list[str] | None = None,
               blocks: BlockNames | None = None) -> State[Any]:
    """Ingest VCF/BCF files into the ledger, the brokers and the stores.

    Args:
        paths: VCF/BCF files (plain, gzip, BGZF; .tbi/.csi indexes are used when present).
        dataset: the dataset the variants belong to (part of every message id); 1 to 100 of
            A-Z, a-z, 0-9, _ and -, a letter or digit first, not digits only (vcfstream.names).
        assembly: reference assembly named in variant keys (default from settings, GRCh38).
        chunk_size: records per chunk (default from settings).
        strict: any record-level error rejects the whole file.
        reference: faidx-indexed FASTA: left-align indels and check REF.
        routing: primary_only | fallback_only | health | round_robin.
        stores: which stores to write (default settings.stores.names: catalog, lancedb, kuzu; [] for none).
        blocks: names of saved vcfstream blocks (blocks/) that replace the environment's settings
            of their service, loaded inside the run; unnamed = the environment (VCFSTREAM_*).
            Explicit parameters above (assembly, chunk_size, routing) win over blocks.
    """
    started = time.monotonic()
    check_dataset(dataset)  # before anything is claimed: InvalidName names the rule
    settings = resolve(blocks, load_settings()).with_groups(
        ingest={"assembly": assembly, "chunk_size": chunk_size}, routing={"strategy": routing})
    # Read only as the run's input policy allows (its files: in their plan tasks).
    reference = input_policy(settings).check_reference(reference) if reference else None
    logger = get_run_logger()
    run_id = str(runtime.flow_run.id or "local")
    wanted_stores = check_store_names(settings.stores.names if stores is None else stores)
    preload_stores(wanted_stores)
    migrate(settings)
    record = RunRecord(settings, run_id, dataset, warn=logger.warning)
    record.start({"paths": list(paths), "dataset": dataset, "assembly": settings.ingest.assembly,
                  "chunk_size": settings.ingest.chunk_size, "strict": strict, "reference": reference,
                  "routing": settings.routing.strategy, "stores": wanted_stores,
                  "blocks": blocks.model_dump() if blocks is not None else None}, _parent_flow_run_id())
    telemetry = process_runtime().telemetry(settings)
    with telemetry.flow_span("ingest_vcf", flow_run_id=run_id, scheduled=scheduled_run(), dataset=dataset,
                             files=len(paths)) as span, fewer_collections():
        try:
            with chunk_task_runner(settings) as chunk_runner:
                summary = _ingest(paths, dataset, strict, reference, wanted_stores, settings, run_id,
                                  telemetry.inject(), logger, record, chunk_runner)
        except BaseException as exc:  # the run's record ends too, then the flow fails as it would
            record.finish(RunSummary.failed(str(exc) or type(exc).__name__, run_id))
            raise
        summary.seconds = round(time.monotonic() - started, 3)
        data = summary.to_json()
        telemetry.annotate(span, state=summary.state, **{
            key: data[key] for key in ("records", "alleles", "new", "duplicates", "quarantined",
                                       "failovers", "in_doubt", "published", "stored")})
    if summary.chunks:
        create_table_artifact(summary.table(), key=artifact_key("vcfstream-chunks", dataset),
                              description=f"vcfstream ingestion of {len(paths)} file(s) into {dataset}")
    record.finish(summary)
    if not summary.errors:
        shutil.rmtree(settings.home_dir / "staging" / run_id, ignore_errors=True)
        return Completed(data=data, message=summary.headline())
    logger.error("failed: %s", "; ".join(summary.errors))
    message = "; ".join(summary.errors)[:2000]
    # A Failed state's data must be an exception; it carries the summary for the CLI.
    return Failed(data=IngestFailed(message, data), message=message)


def _ingest(paths: list[str], dataset: str, strict: bool, reference: str | None, wanted_stores: list[str],
            settings: Settings, run_id: str, carrier: dict[str, str], logger: Any, record: RunRecord,
            chunk_runner: TaskRunner[Any] | None = None) -> RunSummary:
    """Plan the files, run their chunks (at most ``settings.ingest.chunk_workers`` at once, fewer when
    the resource guard says so; on ``chunk_runner`` if given) and each chunk's store tasks; the
    summary, without ``seconds``. ``record`` gets each file and chunk as it is planned or finishes."""
    total = ChunkSummary()
    rows: list[ChunkRow] = []
    files: list[FileOutcome] = []
    by_digest: dict[str, FileOutcome] = {}  # the outcome of each planned file, by content
    widths: dict[str, int] = {}  # samples of each planned file, by content
    file_errors: list[str] = []
    pending: deque[tuple[Chunk, SourceFile]] = deque()
    # Every task has a timeout: the run's settings (tasks/chunk.py has the defaults).
    plan_task = plan_file.with_options(timeout_seconds=settings.ingest.plan_timeout_s)
    chunk_task = ingest_chunk.with_options(timeout_seconds=settings.ingest.chunk_timeout_s)
    store_task = store_chunks.with_options(timeout_seconds=settings.ingest.store_timeout_s)
    for path in paths:
        plan_state = plan_task(path, settings, return_state=True)
        if plan_state.is_failed():
            file_errors.append(_reason(plan_state))
            files.append(FileOutcome.at(path, "failed", flow_run=run_id, error=file_errors[-1]))
            record.file(files[-1])
            continue
        plan = plan_state.result()
        outcome = FileOutcome.at(path, "ingesting", digest=plan.source.digest, flow_run=run_id,
                                 chunks=len(plan.chunks))
        files.append(outcome)
        if strict:
            rejection = _strict_rejection(plan.source.path, reference)
            if rejection:
                file_errors.append(rejection)
                outcome.status, outcome.error = "rejected", rejection
                record.file(outcome, plan.source)
                continue
        by_digest[plan.source.digest] = outcome
        widths[plan.source.digest] = len(plan.source.samples)
        record.file(outcome, plan.source)
        pending.extend((chunk, plan.source) for chunk in plan.chunks)

    guard = ResourceGuard(settings.ingest.rss_limit, rss=lambda: process_rss() + writer_pss())
    concurrency = max(1, settings.ingest.chunk_workers)
    planned, done = len(pending), 0
    in_flight: dict[Any, Chunk] = {}  # chunk task -> its chunk
    # Store writes: one task per store at a time (each store serializes its writers anyway), each
    # writing the chunks queued for it, of any of the run's files, once they reach the store batch's
    # alleles or cells or the run's last chunk finished (vcfstream.runtime.staging), so chunks go on
    # while the stores write. New chunks wait while a store has two groups queued, which bounds how
    # far chunks run ahead.
    stores = StoreQueue(wanted_stores, settings.home_dir / "staging" / run_id, settings.stores.batch_alleles,
                        settings.stores.batch_cells)
    for chunk, _ in pending:
        stores.expect(chunk.digest)
    writing: dict[Any, tuple[str, list[Staged]]] = {}  # store task -> (store, group)
    stored: Counter[str] = Counter(stores.earlier)
    staged: dict[str, list[str]] = {}  # per file (digest): its staged chunks
    abandoned: dict[str, str] = {}  # store -> why it gets no further writes in this run

    def start_store_writes() -> None:
        busy = {store for store, _ in writing.values()}
        for store in stores.stores_with_work():
            if store not in busy and (group := stores.take(store)):
                paths = [item.path for item in group]
                carriers = [item.carrier for item in group]
                writing[store_task.submit(store, paths, run_id, settings, carriers)] = (store, group)

    process_runtime().notify_progress(0, planned)
    chunk_finished = False
    while pending or in_flight or writing or stores:
        lagging = stores.lagging()
        if chunk_finished and pending and not lagging:  # once per finished chunk; the guard only lowers
            concurrency = guard.recommended_concurrency(concurrency)
            chunk_finished = False
        while pending and len(in_flight) < concurrency and not lagging:
            chunk, source = pending.popleft()
            in_flight[submit(chunk_task, chunk_runner, chunk=chunk, source=source, dataset=dataset, run_id=run_id,
                             settings=settings, reference=reference, carrier=carrier)] = chunk
        start_store_writes()
        future = next(as_completed([*in_flight, *writing]))
        future.wait()  # records the final state on the future (else .state asks the API)
        state = future.state
        if future in writing:
            store, group = writing.pop(future)
            if state.is_completed():
                written = future.result()
                stored[store] += written
                stores.finish(store, group, written)
            else:  # the store is down or refuses: later groups would only wait out their retries too
                skipped = stores.abandon(store)
                file_errors.append(f"store {store}: {_reason(state)}; no further writes to it in this run "
                                   f"(a retry of the run writes what it missed)")
                abandoned[store] = file_errors[-1]
                for digest in dict.fromkeys(item.source for item in group):
                    by_digest[digest].fail(file_errors[-1])
                logger.warning("store %s failed: skipping its later writes in this run (%d chunk(s) queued)",
                               store, skipped)
            continue
        chunk = in_flight.pop(future)
        chunk_finished = True
        done += 1
        process_runtime().notify_progress(done, planned)
        if not state.is_completed():
            stores.drop(chunk.digest)
            file_errors.append(_reason(state))
            by_digest[chunk.digest].failed_chunks += 1
            by_digest[chunk.digest].fail(file_errors[-1])
            record.chunk(chunk, ChunkSummary(), state.name or "Failed", file_errors[-1])
            continue
        result: ChunkResult = future.result()
        total = total + result.summary
        rows.append(ChunkRow.of(chunk, result.summary, state.name or "Completed", result.message))
        by_digest[chunk.digest].add(rows[-1])
        record.chunk(chunk, result.summary, rows[-1].state, result.message)
        if result.staged:
            stores.add(Staged(result.staged, result.summary.alleles, chunk.digest, result.carrier,
                              cells=result.summary.alleles * max(1, widths[chunk.digest])))
            staged.setdefault(chunk.digest, []).append(result.staged)
        else:
            stores.drop(chunk.digest)
    # A file of a run of many whose staged chunks a failed store did not write fails too.
    for store, error in abandoned.items():
        for digest, paths in staged.items():
            if by_digest[digest].status != "failed" and not all(stores.wrote(store, path) for path in paths):
                by_digest[digest].fail(f"not written to {store}: {error}")
    total.stored.update(stored)
    total.notes.extend(guard.notes)
    for note in guard.notes:
        logger.warning(note)
    for outcome in files:
        if outcome.status == "ingesting":
            outcome.status = "ingested"
    return RunSummary.of(total, run_id, file_errors, rows, files)


def scheduled_run() -> bool:
    """Whether this flow run, or the root of the runs it is a subflow of, came from a schedule
    (the ``scheduled`` label of ``vcfstream_run_active``, which the silent-night alert reads)."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return False
    run = context.flow_run
    root_id = str(runtime.flow_run.root_flow_run_id or run.id)
    if root_id != str(run.id):
        try:
            with get_client(sync_client=True) as client:
                run = client.read_flow_run(UUID(root_id))
        except Exception:  # an unreadable root is reported as not scheduled, never a failure
            return False
    return bool(run.auto_scheduled)


def _parent_flow_run_id() -> str | None:
    """The flow run this one runs for (a cohort's, as a subflow or a deployment run), if any."""
    try:
        return runtime.flow_run.parent_flow_run_id
    except Exception:  # an unreadable parent is left out of the run record, never a failure
        return None


def _strict_rejection(path: str, reference: str | None) -> str | None:
    """--strict: any record error rejects the file before anything is claimed."""
    from vcfstream.vcf.validation.files import validate_paths

    report = validate_paths([path], reference=reference)["files"][0]
    if report["ok"]:
        return None
    rules = ", ".join(report.get("rules", [])) or "record errors"
    return f"{path}: rejected (--strict): {report['record_errors']} record error(s) [{rules}]"


def _reason(state: Any) -> str:
    try:
        state.result()
    except Exception as exc:  # the task's own exception carries the file/line/rule
        return str(exc)
    return state.message or state.name

