"""The ingest flow's per-file and per-chunk tasks: plan a file, ingest a chunk (read, validate,
claim, publish: ``vcfstream.pipeline``), write a group of chunks to a store (``vcfstream.stores``).

Tasks receive small descriptions (paths, chunk extents, names) and return summaries; records
never pass through Prefect. What lives longer than a task (routers, reader pool, telemetry) is
the process's ``vcfstream.runtime.process.ProcessRuntime``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NONE as NO_CACHE_POLICY
from prefect.context import TaskRunContext
from prefect.states import Completed
from prefect.tasks import exponential_backoff

from vcfstream.errors import InputError, VcfFormatError
from vcfstream.model import Chunk, ChunkSummary
from vcfstream.pipeline import process_chunk
from vcfstream.publish.limits import message_options
from vcfstream.runtime.process import process_runtime
from vcfstream.settings import IngestSettings, Settings
from vcfstream.vcf.chunks import plan_chunks
from vcfstream.vcf.confinement import input_policy
from vcfstream.vcf.reader import ReadContext, kept_context
from vcfstream.vcf.source import SourceFile, open_source


@dataclass(frozen=True, slots=True)
class FilePlan:
    source: SourceFile
    chunks: list[Chunk]


@dataclass(frozen=True, slots=True)
class ChunkResult:
    """What a chunk task returns (persisted, so a retried flow run gets it back as Cached)."""

    chunk: Chunk
    summary: ChunkSummary
    staged: str | None
    message: str
    carrier: dict[str, str] | None = None  # the chunk's span, parent of its store spans


def _not_a_data_error(task: Any, task_run: Any, state: Any) -> bool:
    """Retry transient failures only: a malformed file stays malformed."""
    try:
        state.result()
    except (VcfFormatError, InputError):
        return False
    except Exception:
        return True
    return False


# -- tasks --------------------------------------------------------------------------------
# Every task has a timeout: these defaults when a task is called as it is; the flows set the run's
# settings (``IngestSettings.*_timeout_s``) with ``with_options``.
_DEFAULT = IngestSettings()


@task(name="plan-file", cache_policy=NO_CACHE_POLICY, timeout_seconds=_DEFAULT.plan_timeout_s)
def plan_file(path: str, settings: Settings) -> FilePlan:
    """Open, check the header of, and chunk one file. Header errors reject the file here."""
    from vcfstream.vcf.validation import check_header

    source = open_source(path, input_policy(settings), settings.ingest.read_limits)
    header = check_header(source.path, source.header_lines)
    if header.errors:
        first = header.errors[0]
        more = f" (and {len(header.errors) - 1} more header errors)" if len(header.errors) > 1 else ""
        raise VcfFormatError(source.path, first.line, first.rule, first.message + more)
    chunks = plan_chunks(source, settings.ingest.chunk_size)
    logger = get_run_logger()
    for note in source.notes:
        logger.warning(note)
    logger.info("%s: %s, %d chunks (%s)", source.path, source.format, len(chunks),
                "index regions" if source.index else "sequential ranges")
    return FilePlan(source, chunks)


def _chunk_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """Same flow run + same chunk = same result: a retried run skips completed chunks."""
    chunk: Chunk = parameters["chunk"]
    return f"ingest-chunk:{parameters['run_id']}:{parameters['dataset']}:{chunk.chunk_id}"


@task(name="ingest-chunk", retries=3, retry_delay_seconds=exponential_backoff(2),
      retry_condition_fn=_not_a_data_error, cache_key_fn=_chunk_cache_key, persist_result=True,
      timeout_seconds=_DEFAULT.chunk_timeout_s)
def ingest_chunk(chunk: Chunk, source: SourceFile, dataset: str, run_id: str, settings: Settings,
                 reference: str | None = None, carrier: dict[str, str] | None = None) -> Any:
    """Read, validate, claim and publish one chunk; final state names any failover.

    ``carrier`` is the flow's span (W3C trace context) so the chunk's span joins the run's trace.
    """
    logger = get_run_logger()
    reader = process_runtime().read_pool(settings.ingest.read_processes)
    if reader is not None:  # a hung reader is killed after this long, failing the chunk (retried)
        reader.reply_timeout_s = settings.ingest.read_timeout_s
    # With reader processes this process never parses, so chunk tasks (threads) can share a kept
    # context; reading here, each chunk gets its own (a context's caches are not thread-safe).
    ctx = (kept_context if reader is not None else ReadContext.open)(dataset, settings.ingest.assembly, source, reference,
                                                                     message_options(settings))
    stage_dir = settings.home_dir / "staging" / run_id
    outcome = process_chunk(settings, ctx, chunk, run_id=run_id, router=process_runtime().router(settings),
                            stage_dir=stage_dir, telemetry=process_runtime().telemetry(settings), carrier=carrier,
                            reader=reader)
    result = ChunkResult(chunk, outcome.summary, outcome.staged, outcome.state_message, outcome.carrier)
    logger.info("chunk %s: %s", chunk.label, outcome.state_message)
    name = "CompletedWithFailover" if outcome.failover_messages else "Completed"
    return Completed(data=result, name=name, message=outcome.state_message)


@task(name="store-chunks", task_run_name="store-{store}", retries=3, retry_delay_seconds=exponential_backoff(2),
      cache_policy=NO_CACHE_POLICY, timeout_seconds=_DEFAULT.store_timeout_s)
def store_chunks(store: str, staged: list[str], run_id: str, settings: Settings,
                 carriers: list[dict[str, str] | None] | None = None) -> int:
    """Write a group of staged chunks (of one or more files) to one store; idempotent, so retries are
    safe (a retried flow run skips groups the flow recorded as done: ``vcfstream.runtime.staging``). Traced
    as a ``store.<name>`` span under the first chunk's span, linked to the other chunks' spans
    (``carriers``, one per chunk). Kuzu and LanceDB are written in a store-writer process
    (``vcfstream.stores.writer``): a crash of their native code fails this write, not the run."""
    from vcfstream.runtime.resources import give_back_memory
    from vcfstream.runtime.staging import load_group
    from vcfstream.stores.base import describe, write_group
    from vcfstream.stores.registry import open_store
    from vcfstream.stores.writer import ISOLATED_STORES, write_staged

    telemetry = process_runtime().telemetry(settings)
    first, *others = carriers or [None]
    with telemetry.stage(f"store.{store}", parent=first, links=others, run_id=run_id) as span:
        if store in ISOLATED_STORES:
            done = write_staged(store, staged, settings)
            written, alleles, dataset, source_path = done.written, done.alleles, done.dataset, done.source_path
        else:
            batches = load_group(staged)
            with open_store(store, settings) as backend:
                written = write_group(backend, batches)
            alleles, dataset, source_path = sum(len(batch) for batch in batches), batches[0].dataset, describe(batches)
            del batches
            give_back_memory()  # the group's peak, else kept by the allocators for the run's life
        telemetry.annotate(span, alleles=alleles, chunks=len(staged), written=written, dataset=dataset)
    telemetry.record_chunk(ChunkSummary(stored=Counter({store: written})), {"dataset": dataset})
    get_run_logger().info("%s: %d new rows from %d chunk(s) of %s", store, written, len(staged), source_path)
    return written
