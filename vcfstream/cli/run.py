"""Running ``ingest_vcf`` from the CLI: against the Prefect server when one answers, otherwise
in Prefect's ephemeral mode; a rich progress bar on a terminal."""

from __future__ import annotations

import os
from contextlib import nullcontext
from typing import Any

import httpx

from vcfstream.runtime.process import process_runtime
from vcfstream.settings import Settings
from vcfstream.summary import RunSummary


def prefect_server_up(settings: Settings) -> bool:
    try:
        return httpx.get(f"{settings.services.prefect_api_url}/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def configure_prefect(settings: Settings) -> None:
    """Point Prefect at our server, or at ephemeral mode, before Prefect reads its settings."""
    if "PREFECT_API_URL" not in os.environ and prefect_server_up(settings):
        os.environ["PREFECT_API_URL"] = settings.services.prefect_api_url
    local_auth = settings.services.prefect_auth_string
    if local_auth is not None and os.environ.get("PREFECT_API_URL", "").rstrip("/") == settings.services.prefect_api_url:
        os.environ["PREFECT_API_AUTH_STRING"] = local_auth.get_secret_value()  # the local server's login
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_RESULTS_PERSIST_BY_DEFAULT", "true")
    os.environ.setdefault("PREFECT_LOCAL_STORAGE_PATH", str(settings.home_dir / "results"))


def run_ingest(paths: list[str], *, settings: Settings, dataset: str, strict: bool = False,
               reference: str | None = None, show_progress: bool = False,
               stores: list[str] | None = None) -> RunSummary:
    """Run the flow to completion and return its summary (also when the run failed)."""
    runtime = process_runtime()
    runtime.telemetry(settings)  # the CLI's telemetry settings (e.g. --trace-console) are the process's
    if settings.ingest.task_runner == "default":  # on Dask the cluster's workers read the chunks
        _read_ahead(paths, settings, dataset, reference)
    try:
        configure_prefect(settings)
        from flows import ingest
    except BaseException:
        runtime.close()  # the readers reading ahead; once the flow runs, its finally below does it
        raise

    progress_cm: Any = nullcontext()
    if show_progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        progress_cm = Progress("[progress.description]{task.description}", BarColumn(),
                               MofNCompleteColumn(), TimeElapsedColumn(), transient=True)
    with progress_cm as progress:
        if progress is not None:
            bar = progress.add_task(f"ingesting into {dataset}", total=None)
            hook = lambda done, total: progress.update(bar, completed=done, total=total)  # noqa: E731
            runtime.progress_hooks.append(hook)
        try:
            state = ingest.ingest_vcf(paths, dataset=dataset, assembly=settings.ingest.assembly,
                                      chunk_size=settings.ingest.chunk_size, strict=strict, reference=reference,
                                      routing=settings.routing.strategy, stores=stores, return_state=True)
        finally:
            if progress is not None:
                runtime.progress_hooks.remove(hook)
            runtime.close()
    try:
        data = state.result(raise_on_failure=False)
    except Exception as exc:  # the flow itself crashed before producing a summary
        return RunSummary.failed(str(exc))
    summary = RunSummary.from_result(data, state.message or str(data))
    if state.is_failed():
        summary.state = "Failed"
    return summary


def _read_ahead(paths: list[str], settings: Settings, dataset: str, reference: str | None) -> None:
    """Start the reader processes on the first file's first chunks now, so they parse while this
    process imports Prefect and creates the flow run (one to two seconds on one core); those
    chunks' tasks then take the answers (``ReadPool.read_ahead``). Only a head start: a file
    that cannot be opened or planned, or whose header fails, is left for the flow to report."""
    from vcfstream.errors import VcfstreamError
    from vcfstream.publish.limits import message_options
    from vcfstream.vcf.chunks import plan_chunks
    from vcfstream.vcf.confinement import input_policy
    from vcfstream.vcf.reader import kept_context
    from vcfstream.vcf.source import open_source

    pool = process_runtime().read_pool(settings.ingest.read_processes)
    if pool is None or not paths:
        return
    try:
        source = open_source(paths[0], input_policy(settings))
        ctx = kept_context(dataset, settings.ingest.assembly, source, reference, message_options(settings))
        chunks = plan_chunks(source, settings.ingest.chunk_size)
    except (VcfstreamError, OSError, ValueError):
        return
    if not ctx.header.errors:
        for chunk in chunks[:settings.ingest.chunk_workers]:  # the chunks the flow's first tasks take
            pool.read_ahead(ctx, chunk)
