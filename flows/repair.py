"""The ``repair_dataset`` flow: ``vcfstream verify --repair`` as a Prefect run, e.g. after the
nightly cohort (deployment ``repair-dataset`` in prefect.yaml, no schedule of its own).

It reconciles the dataset's platforms with the ledger, republishes every missing id (every
expired one too with ``include_expired``) from its source file, and verifies again
(``vcfstream.verify.repair_dataset``). The run ends Failed when ids stay missing, a duplicate
remains unexplained, or a source file is gone or changed (named in the message and the artifact).
Repairs of one dataset take turns and run safely beside ingests.

Example:
    >>> repair_dataset(dataset="cohort-2024")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.states import Completed, Failed

from blocks import BlockNames, resolve
from vcfstream.ledger import db
from vcfstream.names import artifact_key, check_dataset
from vcfstream.settings import load_settings
from vcfstream.verify import repair_dataset as repair


@flow(name="repair_dataset", flow_run_name="repair {dataset}", log_prints=False)
def repair_dataset(dataset: str = "default", include_expired: bool = False, reference: str | None = None,
                   blocks: BlockNames | None = None) -> Any:
    """Republish what the platforms lost of ``dataset``, then verify it.

    Args:
        dataset: the dataset to repair (vcfstream.names).
        include_expired: also republish ids older than a platform retains (Kafka retention.ms).
        reference: the faidx-indexed FASTA the files were ingested with, if any.
        blocks: names of saved vcfstream blocks (blocks/); unnamed = the environment.
    """
    check_dataset(dataset)
    settings = resolve(blocks, load_settings())
    db.migrate(settings)
    logger = get_run_logger()
    outcome = repair(settings, dataset, include_expired=include_expired, reference=reference)
    before, after = outcome["before"], outcome["after"]
    problems = [f"{s['path'] or s['digest']}: {s['problem']}" for s in outcome["sources"] if s["problem"]]
    headline = (f"{dataset}: republished {outcome['repaired']:,} of {before['missing']:,} missing ids; now "
                f"missing {after['missing']:,}, expired {after['expired']:,}, unexplained duplicates "
                f"{after['duplicates']:,}, in-doubt copies {after['in_doubt_copies']:,}")
    logger.info(headline)
    for problem in problems:
        logger.error(problem)
    lines = [f"# Repair of {dataset}", "", headline, "", "| category | before | after |", "| --- | --- | --- |"]
    lines += [f"| {key} | {before[key]} | {after[key]} |" for key in
              ("missing", "expired", "duplicates", "in_doubt_copies", "unknown", "unpublished", "ledger_published")]
    lines += ["", *(f"- {problem}" for problem in problems)]
    create_markdown_artifact("\n".join(lines), key=artifact_key("vcfstream-repair", dataset),
                             description=f"vcfstream verify --repair of {dataset}")
    if after["missing"] or after["duplicates"] or problems:
        return Failed(message="; ".join([headline, *problems])[:2000])
    return Completed(message=headline, data=outcome)
