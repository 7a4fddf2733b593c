"""The ``ingest_cohort`` flow: find a cohort's VCF/BCF files, skip those already ingested, run
``ingest_vcf`` for the rest (bounded concurrency), summarize in one table artifact.

Which files are complete for a dataset is ``vcfstream.cohort``'s question (``check-file`` task).

The files to run are grouped (``vcfstream.cohort.group_files``): a large file is a run of its
own, small files share runs of up to ``files_per_run`` files and ``mb_per_run`` MiB, so a folder
of single-sample files pays a run's fixed cost once per group, not once per file. Each run's
summary names the outcome of each of its files: a file that fails, fails alone.

Each group runs as ``ingest_vcf``: a subflow in this process, or (``dispatch="deployment"``, the
default when the cohort itself runs from a deployment) a run of the ``ingest-vcf`` deployment,
which any worker of the pool may pick up, so several workers share one cohort.

Example:
    >>> ingest_cohort(directory="/data/incoming", glob="*.vcf.gz,*.bcf", dataset="cohort-2024")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger, runtime, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NONE as NO_CACHE_POLICY
from prefect.states import Completed, Failed
from prefect.task_runners import ThreadPoolTaskRunner

from blocks import BlockNames, resolve
from flows.ingest import scheduled_run
from tasks.cohort import check_file_task
from vcfstream.cohort import CohortFailed, FileCheck, cohort_files, group_files, run_outcomes
from vcfstream.ledger import db
from vcfstream.names import artifact_key, check_dataset
from vcfstream.runtime.process import process_runtime
from vcfstream.settings import IngestSettings, load_settings
from vcfstream.summary import CohortSummary, FileOutcome, RunSummary
from vcfstream.vcf.confinement import input_policy

INGEST_DEPLOYMENT = "ingest_vcf/ingest-vcf"
Dispatch = Literal["auto", "subflow", "deployment"]


# -- tasks --------------------------------------------------------------------------------------


@task(name="ingest-files", cache_policy=NO_CACHE_POLICY, task_run_name="ingest {label}",
      timeout_seconds=IngestSettings().file_timeout_s)  # the flow sets the run's (with_options)
def ingest_files_task(paths: list[str], label: str, dataset: str, parameters: dict[str, Any], dispatch: str,
                      deployment: str = INGEST_DEPLOYMENT) -> RunSummary:
    """Run ``ingest_vcf`` for a group of files (subflow, or a run of ``deployment``) named
    ``label``; return its summary (state ``Completed`` only when the run completed; ``files``
    holds each file's outcome)."""
    run_name = f"{dataset}: {label}"
    if dispatch == "deployment":
        from prefect.client.schemas.objects import FlowRun
        from prefect.deployments import run_deployment

        flow_run = run_deployment(deployment, parameters={"paths": paths, "dataset": dataset, **parameters},
                                  flow_run_name=run_name, timeout=None, poll_interval=3)
        assert isinstance(flow_run, FlowRun)  # called outside an event loop, it runs synchronously
        state, flow_run_id = flow_run.state, str(flow_run.id)
    else:
        from flows.ingest import ingest_vcf

        state = ingest_vcf.with_options(flow_run_name=run_name)(paths=paths, dataset=dataset, return_state=True,
                                                                 **parameters)
        flow_run_id = str(state.state_details.flow_run_id or "")
    if state is None:
        return RunSummary(flow_run_id=flow_run_id, state="Unknown", errors=["no state"])
    try:
        data = state.result(raise_on_failure=False)
        error = state.message or state.name or "Failed"
    except Exception as exc:  # the result could not be read back (e.g. result storage not shared)
        data, error = None, f"summary unavailable: {exc}"
    summary = RunSummary.from_result(data, error)
    summary.state = "Completed" if state.is_completed() else state.name or "Failed"
    summary.flow_run_id = flow_run_id
    return summary


# -- flow ---------------------------------------------------------------------------------------


@flow(name="ingest_cohort", flow_run_name="cohort {dataset}", log_prints=False)
def ingest_cohort(manifest: str | None = None, directory: str | None = None, glob: str = "*.vcf.gz",
                  dataset: str = "default", max_concurrent: int = 2, dispatch: Dispatch = "auto",
                  assembly: str | None = None, chunk_size: int | None = None, strict: bool = False,
                  reference: str | None = None, routing: str | None = None, stores: list[str] | None = None,
                  blocks: BlockNames | None = None, ingest_deployment: str = INGEST_DEPLOYMENT,
                  files_per_run: int = 100, mb_per_run: int = 64) -> Any:
    """Ingest every new or incomplete VCF/BCF file of a cohort into one dataset.

    Args:
        manifest: text file listing the files (one path per line); or
        directory: folder searched with ``glob``.
        glob: comma-separated patterns (``*.vcf.gz,*.bcf``; ``**/*.vcf.gz`` for subfolders).
        dataset: the dataset every file goes to.
        max_concurrent: runs of ``ingest_vcf`` at once.
        dispatch: subflow (this process), deployment (runs of ingest-vcf on the work pool), or
            auto (deployment when this cohort runs from a deployment, else subflow).
        assembly, chunk_size, strict, reference, routing, stores: passed to ``ingest_vcf``.
        blocks: names of saved vcfstream blocks, passed to ``ingest_vcf`` (unnamed = environment).
        ingest_deployment: the deployment of ``ingest_vcf`` that dispatch=deployment runs.
        files_per_run, mb_per_run: files smaller than ``mb_per_run`` MiB share runs of up to
            ``files_per_run`` files and ``mb_per_run`` MiB (1 = a run per file).

    Returns:
        Completed with the cohort summary as data, or Failed naming the failed files (data: a
        ``CohortFailed`` whose ``summary`` is the cohort summary).
    """
    check_dataset(dataset)  # before anything is checked or claimed: InvalidName names the rule
    logger = get_run_logger()
    settings = resolve(blocks, load_settings()).with_groups(
        ingest={"assembly": assembly, "chunk_size": chunk_size}, routing={"strategy": routing})
    db.migrate(settings)
    mode = dispatch if dispatch != "auto" else ("deployment" if runtime.deployment.id else "subflow")
    policy = input_policy(settings)  # the manifest, folder, reference and each file: only inside the roots
    reference = policy.check_reference(reference) if reference else None
    cohort = cohort_files(manifest, directory, glob, policy)
    files = cohort.files
    for refused in cohort.refused:
        logger.error("%s: %s", refused.where, refused.reason)
    logger.info("cohort %s: %d file(s), dispatch %s, %d at once", dataset, len(files), mode, max_concurrent)
    parameters = {"assembly": assembly, "chunk_size": settings.ingest.chunk_size, "strict": strict,
                  "reference": reference, "routing": routing, "stores": stores,
                  "blocks": blocks.model_dump() if blocks is not None else None}
    telemetry = process_runtime().telemetry(settings)
    with telemetry.flow_span("ingest_cohort", flow_run_id=str(runtime.flow_run.id or "local"),
                             scheduled=scheduled_run(), dataset=dataset, files=len(files)):
        outcomes: dict[str, FileOutcome] = {}
        task_runner: ThreadPoolTaskRunner[Any] = ThreadPoolTaskRunner(max_workers=max(1, max_concurrent))
        with task_runner as runner:  # runs tasks of two result types (FileCheck, RunSummary)
            check_task = check_file_task.with_options(timeout_seconds=settings.ingest.plan_timeout_s)
            file_task = ingest_files_task.with_options(timeout_seconds=settings.ingest.file_timeout_s)
            checks = [runner.submit(check_task, {"path": p, "dataset": dataset, "settings": settings})
                      for p in files]
            to_run: list[FileCheck] = []
            for path, future in zip(files, checks):
                future.wait()
                if not future.state.is_completed():
                    outcomes[path] = FileOutcome.at(path, "failed", error=_reason(future.state))
                    continue
                check: FileCheck = future.result()
                if check.state == "complete":
                    outcomes[path] = FileOutcome.at(path, "skipped", digest=check.digest or "")
                elif check.state == "unreadable":
                    outcomes[path] = FileOutcome.at(path, "failed", error=check.reason)
                else:
                    to_run.append(check)
            groups = group_files(to_run, files_per_run=files_per_run, bytes_per_run=mb_per_run << 20,
                                 runs_at_once=max_concurrent)
            logger.info("%d file(s) to run in %d run(s)", len(to_run), len(groups))
            runs = [(group, runner.submit(file_task, {"paths": [check.path for check in group],
                                                      "label": _label(group), "dataset": dataset,
                                                      "parameters": parameters, "dispatch": mode,
                                                      "deployment": ingest_deployment}))
                    for group in groups]
            for group, future in runs:
                future.wait()
                outcomes.update((outcome.path, outcome) for outcome in _outcomes(group, future))
    summary = CohortSummary(dataset, [*(outcomes[path] for path in files),
                                      *(FileOutcome.at(r.where, "failed", error=r.reason) for r in cohort.refused)])
    create_table_artifact(summary.table(), key=artifact_key("vcfstream-cohort", dataset), description=summary.headline())
    logger.info(summary.headline())
    data = summary.to_json()
    if summary.failed:
        message = summary.failure_message()
        return Failed(data=CohortFailed(message, data), message=message)
    return Completed(data=data, message=summary.headline())


def _outcomes(group: list[FileCheck], future: Any) -> list[FileOutcome]:
    if not future.state.is_completed():  # the task itself failed (e.g. timed out): so did its files
        error = _reason(future.state)
        return [FileOutcome.at(check.path, "failed", digest=check.digest or "", error=error) for check in group]
    return run_outcomes(group, future.result())


def _label(group: list[FileCheck]) -> str:
    """``a.vcf.gz``, or ``a.vcf.gz and 49 more``: names a run and its task."""
    more = f" and {len(group) - 1} more" if len(group) > 1 else ""
    return f"{Path(group[0].path).name}{more}"


def _reason(state: Any) -> str:
    try:
        state.result()
    except Exception as exc:
        return str(exc)
    return state.message or state.name

