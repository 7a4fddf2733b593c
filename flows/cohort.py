"""The ``ingest_cohort`` flow: find a cohort's VCF/BCF files, skip those already ingested, run
``ingest_vcf`` for the rest (bounded concurrency), summarize in one table artifact.

A file is *complete* for a dataset when every chunk its plan has (at the chunk size in force) is
``completed`` in the ledger's ``ledger_chunks`` table under the file's content digest: a renamed
or copied file is still recognized, a file with a failed, running or never-started chunk is run
again (the ledger makes that a no-op for what was already published).

Each file runs as ``ingest_vcf``: a subflow in this process, or (``dispatch="deployment"``, the
default when the cohort itself runs from a deployment) a run of the ``ingest-vcf`` deployment,
which any worker of the pool may pick up, so several workers share one cohort.

Example:
    >>> ingest_cohort(directory="/data/incoming", glob="*.vcf.gz,*.bcf", dataset="cohort-2024")  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger, runtime, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NONE as NO_CACHE_POLICY
from prefect.states import Completed, Failed
from prefect.task_runners import ThreadPoolTaskRunner

from blocks import BlockNames, resolve
from flows.ingest import scheduled_run
from vcfstream.ledger import db
from vcfstream.vcf.chunks import plan_chunks
from vcfstream.errors import VcfstreamError
from vcfstream.settings import Settings, load_settings
from vcfstream.runtime.telemetry import setup_telemetry
from vcfstream.vcf.source import open_source

INGEST_DEPLOYMENT = "ingest_vcf/ingest-vcf"
Dispatch = Literal["auto", "subflow", "deployment"]
FileState = Literal["new", "incomplete", "complete", "unreadable"]


class CohortFailed(VcfstreamError):
    """Some files of a cohort failed; ``summary`` is the cohort summary (the Failed state's data).

    Prefect expects a Failed state's data to be an exception: returning the summary dict there
    makes a deployment run's engine log a TypeError after the state is already set.
    """

    def __init__(self, message: str, summary: dict[str, Any]) -> None:
        super().__init__(message)
        self.summary = summary


@dataclass(frozen=True, slots=True)
class FileCheck:
    """What the ledger knows about one cohort file in one dataset."""

    path: str
    digest: str | None
    state: FileState
    chunks: int = 0  # planned (complete/incomplete files)
    completed: int = 0  # of those, completed in the ledger
    reason: str = ""


@dataclass(slots=True)
class FileOutcome:
    """One row of the cohort summary."""

    file: str
    status: str  # skipped | ingested | failed
    digest: str = ""
    records: int = 0
    alleles: int = 0
    new: int = 0
    duplicates: int = 0
    quarantined: int = 0
    failovers: int = 0
    published: dict[str, int] = field(default_factory=dict)
    flow_run: str = ""
    error: str = ""


# -- finding files ------------------------------------------------------------------------------


def cohort_files(manifest: str | None, directory: str | None, glob: str) -> list[str]:
    """The cohort's files, in order, each once (absolute paths).

    Args:
        manifest: a text file with one path per line (``#`` comments, blank lines ignored;
            relative paths are relative to the manifest's folder).
        directory: a folder searched with ``glob``.
        glob: comma-separated patterns, e.g. ``*.vcf.gz,*.bcf``; ``**/`` searches subfolders.
    """
    if (manifest is None) == (directory is None):
        raise ValueError("give exactly one of manifest or directory")
    found: list[Path] = []
    if manifest is not None:
        manifest_path = Path(manifest).expanduser().resolve()
        try:
            lines = manifest_path.read_text().splitlines()
        except OSError as exc:
            raise VcfstreamError(f"{manifest}: cannot read the manifest: {exc.strerror}") from None
        for line in lines:
            entry = line.split("#", 1)[0].strip()
            if entry:
                found.append(manifest_path.parent / Path(entry).expanduser())
    else:
        root = Path(directory).expanduser().resolve()  # type: ignore[arg-type]
        if not root.is_dir():
            raise VcfstreamError(f"{directory}: not a directory")
        for pattern in (p.strip() for p in glob.split(",")):
            if pattern:
                found.extend(sorted(p for p in root.glob(pattern) if p.is_file()))
    return list(dict.fromkeys(str(path.absolute()) for path in found))


def check_file(settings: Settings, dataset: str, path: str) -> FileCheck:
    """Is every planned chunk of this file's content ``completed`` in the ledger for ``dataset``?"""
    try:
        source = open_source(path, settings.ingest.input_roots)
    except VcfstreamError as exc:
        return FileCheck(path, None, "unreadable", reason=str(exc))
    with db.connect(settings) as conn:
        rows = conn.execute("SELECT chunk_id, state FROM ledger_chunks WHERE dataset = %s AND source_digest = %s",
                            (dataset, source.digest)).fetchall()
    if not rows:
        return FileCheck(path, source.digest, "new")
    done = {chunk_id for chunk_id, state in rows if state == "completed"}
    planned = [chunk.chunk_id for chunk in plan_chunks(source, settings.ingest.chunk_size)]
    completed = sum(1 for chunk_id in planned if chunk_id in done)
    state: FileState = "complete" if completed == len(planned) else "incomplete"
    reason = "" if state == "complete" else f"{completed} of {len(planned)} chunks completed"
    return FileCheck(path, source.digest, state, len(planned), completed, reason)


# -- tasks --------------------------------------------------------------------------------------


@task(name="check-file", cache_policy=NO_CACHE_POLICY, task_run_name="check {path}")
def check_file_task(path: str, dataset: str, settings: Settings) -> FileCheck:
    """Ledger check of one file; logs why it is skipped or run."""
    result = check_file(settings, dataset, path)
    get_run_logger().info("%s: %s%s", path, result.state, f" ({result.reason})" if result.reason else "")
    return result


@task(name="ingest-file", cache_policy=NO_CACHE_POLICY, task_run_name="ingest {path}")
def ingest_file_task(path: str, dataset: str, parameters: dict[str, Any], dispatch: str,
                     deployment: str = INGEST_DEPLOYMENT) -> dict[str, Any]:
    """Run ``ingest_vcf`` for one file (subflow, or a run of ``deployment``); return its summary."""
    if dispatch == "deployment":
        from prefect.deployments import run_deployment

        flow_run = run_deployment(deployment, parameters={"paths": [path], "dataset": dataset, **parameters},
                                  flow_run_name=f"{dataset}: {Path(path).name}", timeout=None, poll_interval=3)
        state, flow_run_id = flow_run.state, str(flow_run.id)
    else:
        from flows.ingest import ingest_vcf

        state = ingest_vcf(paths=[path], dataset=dataset, return_state=True, **parameters)
        flow_run_id = str(state.state_details.flow_run_id or "")
    try:
        summary = state.result(raise_on_failure=False) if state is not None else None
    except Exception as exc:  # the result could not be read back (e.g. result storage not shared)
        summary = {"state": "Failed", "errors": [f"summary unavailable: {exc}"]}
    if not isinstance(summary, dict):
        summary = {"errors": [state.message if state is not None else "no state"]}
    summary["state"] = state.name if state is not None else "Unknown"
    summary["failed"] = state is None or not state.is_completed()
    summary["flow_run_id"] = flow_run_id
    return summary


# -- flow ---------------------------------------------------------------------------------------


@flow(name="ingest_cohort", flow_run_name="cohort {dataset}", log_prints=False)
def ingest_cohort(manifest: str | None = None, directory: str | None = None, glob: str = "*.vcf.gz",
                  dataset: str = "default", max_concurrent: int = 2, dispatch: Dispatch = "auto",
                  assembly: str | None = None, chunk_size: int | None = None, strict: bool = False,
                  reference: str | None = None, routing: str | None = None, stores: list[str] | None = None,
                  blocks: BlockNames | None = None, ingest_deployment: str = INGEST_DEPLOYMENT) -> Any:
    """Ingest every new or incomplete VCF/BCF file of a cohort into one dataset.

    Args:
        manifest: text file listing the files (one path per line); or
        directory: folder searched with ``glob``.
        glob: comma-separated patterns (``*.vcf.gz,*.bcf``; ``**/*.vcf.gz`` for subfolders).
        dataset: the dataset every file goes to.
        max_concurrent: files ingested at once.
        dispatch: subflow (this process), deployment (runs of ingest-vcf on the work pool), or
            auto (deployment when this cohort runs from a deployment, else subflow).
        assembly, chunk_size, strict, reference, routing, stores: passed to ``ingest_vcf``.
        blocks: names of saved vcfstream blocks, passed to ``ingest_vcf`` (unnamed = environment).
        ingest_deployment: the deployment of ``ingest_vcf`` that dispatch=deployment runs.

    Returns:
        Completed with the cohort summary as data, or Failed naming the failed files (data: a
        ``CohortFailed`` whose ``summary`` is the cohort summary).
    """
    logger = get_run_logger()
    settings = resolve(blocks, load_settings()).with_groups(
        ingest={"assembly": assembly, "chunk_size": chunk_size}, routing={"strategy": routing})
    db.migrate(settings)
    mode = dispatch if dispatch != "auto" else ("deployment" if runtime.deployment.id else "subflow")
    files = cohort_files(manifest, directory, glob)
    logger.info("cohort %s: %d file(s), dispatch %s, %d at once", dataset, len(files), mode, max_concurrent)
    parameters = {"assembly": assembly, "chunk_size": settings.ingest.chunk_size, "strict": strict,
                  "reference": reference, "routing": routing, "stores": stores,
                  "blocks": blocks.model_dump() if blocks is not None else None}
    telemetry = setup_telemetry(settings)
    with telemetry.flow_span("ingest_cohort", flow_run_id=str(runtime.flow_run.id or "local"),
                             scheduled=scheduled_run(), dataset=dataset, files=len(files)):
        outcomes: dict[str, FileOutcome] = {}
        with ThreadPoolTaskRunner(max_workers=max(1, max_concurrent)) as runner:
            checks = [runner.submit(check_file_task, {"path": p, "dataset": dataset, "settings": settings})
                      for p in files]
            to_run: list[FileCheck] = []
            for path, future in zip(files, checks):
                future.wait()
                if not future.state.is_completed():
                    outcomes[path] = FileOutcome(Path(path).name, "failed", error=_reason(future.state))
                    continue
                check: FileCheck = future.result()
                if check.state == "complete":
                    outcomes[path] = FileOutcome(Path(path).name, "skipped", digest=check.digest or "")
                elif check.state == "unreadable":
                    outcomes[path] = FileOutcome(Path(path).name, "failed", error=check.reason)
                else:
                    to_run.append(check)
            runs = [(check, runner.submit(ingest_file_task, {"path": check.path, "dataset": dataset,
                                                             "parameters": parameters, "dispatch": mode,
                                                             "deployment": ingest_deployment}))
                    for check in to_run]
            for check, future in runs:
                future.wait()
                outcomes[check.path] = _outcome(check, future)
    rows = [outcomes[path] for path in files]
    summary = _cohort_summary(rows)
    create_table_artifact(_table(rows, summary), key=_artifact_key(dataset),
                          description=_headline(dataset, summary))
    logger.info(_headline(dataset, summary))
    if summary["failed_files"]:
        failed = "; ".join(f"{r.file}: {r.error}" for r in rows if r.status == "failed")
        message = f"{summary['failed_files']} of {len(rows)} file(s) failed: {failed}"[:2000]
        return Failed(data=CohortFailed(message, summary), message=message)
    return Completed(data=summary, message=_headline(dataset, summary))


def _outcome(check: FileCheck, future: Any) -> FileOutcome:
    name = Path(check.path).name
    if not future.state.is_completed():
        return FileOutcome(name, "failed", digest=check.digest or "", error=_reason(future.state))
    result: dict[str, Any] = future.result()
    outcome = FileOutcome(
        name, "failed" if result.get("failed") else "ingested", digest=check.digest or "",
        records=result.get("records", 0), alleles=result.get("alleles", 0), new=result.get("new", 0),
        duplicates=result.get("duplicates", 0), quarantined=result.get("quarantined", 0),
        failovers=result.get("failovers", 0), published=dict(result.get("published") or {}),
        flow_run=result.get("flow_run_id") or "",
    )
    if result.get("failed"):
        outcome.error = "; ".join(result.get("errors") or []) or result.get("state", "Failed")
    return outcome


def _reason(state: Any) -> str:
    try:
        state.result()
    except Exception as exc:
        return str(exc)
    return state.message or state.name


def _cohort_summary(rows: list[FileOutcome]) -> dict[str, Any]:
    published: dict[str, int] = {}
    for row in rows:
        for platform, count in row.published.items():
            published[platform] = published.get(platform, 0) + count
    return {
        "files": len(rows),
        "ingested_files": sum(r.status == "ingested" for r in rows),
        "skipped_files": sum(r.status == "skipped" for r in rows),
        "failed_files": sum(r.status == "failed" for r in rows),
        "records": sum(r.records for r in rows),
        "variants": sum(r.alleles for r in rows),
        "new": sum(r.new for r in rows),
        "duplicates": sum(r.duplicates for r in rows),
        "quarantined": sum(r.quarantined for r in rows),
        "failovers": sum(r.failovers for r in rows),
        "published": published,
        "outcomes": [asdict(r) for r in rows],
    }


def _table(rows: list[FileOutcome], summary: dict[str, Any]) -> list[dict[str, Any]]:
    table = [{
        "file": r.file, "status": r.status, "digest": r.digest[:12], "records": r.records,
        "variants": r.alleles, "new": r.new, "duplicates": r.duplicates, "quarantined": r.quarantined,
        "failovers": r.failovers,
        "published": ", ".join(f"{p}: {n}" for p, n in sorted(r.published.items())) or "-",
        "flow_run": r.flow_run, "error": r.error[:300],
    } for r in rows]
    table.append({
        "file": f"TOTAL ({summary['files']} files)",
        "status": f"{summary['ingested_files']} ingested, {summary['skipped_files']} skipped, "
                  f"{summary['failed_files']} failed",
        "digest": "", "records": summary["records"], "variants": summary["variants"], "new": summary["new"],
        "duplicates": summary["duplicates"], "quarantined": summary["quarantined"],
        "failovers": summary["failovers"],
        "published": ", ".join(f"{p}: {n}" for p, n in sorted(summary["published"].items())) or "-",
        "flow_run": "", "error": "",
    })
    return table


def _headline(dataset: str, summary: dict[str, Any]) -> str:
    return (f"cohort {dataset}: {summary['files']} files ({summary['ingested_files']} ingested, "
            f"{summary['skipped_files']} skipped, {summary['failed_files']} failed); "
            f"{summary['variants']:,} variants, {summary['new']:,} new, {summary['failovers']} failovers, "
            f"{summary['quarantined']:,} quarantined")


def _artifact_key(dataset: str) -> str:
    cleaned = "".join(c if c.isalnum() else "-" for c in dataset.lower()).strip("-")
    return f"vcfstream-cohort-{cleaned or 'default'}"
