"""Flow runs started the way a deployment starts them (the UI, the API, a schedule: not inside the
CLI's ``owner_run``): every input a parameter names is refused outside the input roots, with an
error that names the file, line and rule and never shows what a file holds."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pysam
import pytest
from paths import REAL

from flows.cohort import ingest_cohort
from flows.ingest import ingest_vcf
from vcfstream.ledger import db
from vcfstream.names import artifact_key
from vcfstream.settings import Settings

SECRET = "kafka_password=Zq8-secret-9xK"


@pytest.fixture
def prefect_server(services: Settings) -> Iterator[Settings]:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: services.services.prefect_api_url}):
        yield services


@pytest.fixture
def outside() -> Iterator[Path]:
    """A folder outside the session's input roots (../shared and pytest's temporary folders),
    holding what would be accepted inside them: a VCF, an indexed FASTA, a manifest."""
    folder = Path(tempfile.mkdtemp(prefix="vcfstream-outside-", dir="/var/tmp"))
    shutil.copy(REAL / "sample.vcf.gz", folder / "sample.vcf.gz")
    (folder / "ref.fa").write_text(">20\n" + "ACGT" * 100 + "\n")
    pysam.faidx(str(folder / "ref.fa"))
    (folder / "cohort.txt").write_text(f"{REAL / 'sample.vcf.gz'}\n")
    yield folder
    shutil.rmtree(folder)


def run_logs(flow_run_id: Any) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)  # the run's logs reach the server
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    return "\n".join(log.message for log in logs)


def cohort_artifact(dataset: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=[artifact_key("vcfstream-cohort", dataset)])))
    return json.dumps([artifact.data for artifact in artifacts])


def test_a_deployment_style_run_reads_nothing_a_parameter_names_outside_the_roots(
        prefect_server: Settings, dataset: str, tmp_path: Path, outside: Path) -> None:
    refused = {
        "a file outside the roots": (
            ingest_vcf(paths=[str(outside / "sample.vcf.gz")], dataset=dataset, stores=[], return_state=True),
            f"{outside / 'sample.vcf.gz'}: [input.outside_roots] outside the input roots"),
        "a URL": (
            ingest_vcf(paths=["https://example.org/a.vcf.gz"], dataset=dataset, stores=[], return_state=True),
            "https://example.org/a.vcf.gz: [input.url] a URL (https:) is refused"),
        "a reference outside the roots": (
            ingest_vcf(paths=[str(REAL / "sample.vcf.gz")], dataset=dataset, stores=[],
                       reference=str(outside / "ref.fa"), return_state=True),
            f"{outside / 'ref.fa'}: [input.outside_roots] the reference is outside the input roots"),
        "a manifest outside the roots": (
            ingest_cohort(manifest=str(outside / "cohort.txt"), dataset=dataset, stores=[], dispatch="subflow",
                          return_state=True),
            f"{outside / 'cohort.txt'}: [input.outside_roots] the manifest is outside the input roots"),
        "a directory outside the roots": (
            ingest_cohort(directory=str(outside), glob="*", dataset=dataset, stores=[], dispatch="subflow",
                          return_state=True),
            f"{outside}: [input.outside_roots] the directory is outside the input roots"),
    }
    for label, (state, expected) in refused.items():
        assert state.is_failed(), label
        assert expected in (state.message or ""), (label, state.message)

    secret = tmp_path / "service.env"  # inside the roots, but no manifest
    secret.write_text(f"# logins\n{SECRET}\n../{SECRET}.vcf.gz\n")
    state = ingest_cohort(manifest=str(secret), dataset=dataset, stores=[], dispatch="subflow", return_state=True)

    assert state.is_failed()
    assert ("2 of 2 file(s) failed: service.env:2: [input.missing] no such file; "
            "service.env:3: [input.missing] no such file") in (state.message or "")
    summary = state.result(raise_on_failure=False).summary
    logs, artifact = run_logs(state.state_details.flow_run_id), cohort_artifact(dataset)
    assert f"{secret}:3: [input.missing] no such file" in logs and "service.env:3" in artifact
    for shown in (state.message or "", json.dumps(summary), artifact, logs):
        assert "Zq8" not in shown and "kafka_password" not in shown
    with db.connect(prefect_server) as conn:
        (claimed,) = conn.execute("SELECT count(*) FROM ledger WHERE dataset = %s", (dataset,)).fetchone()
    assert claimed == 0
