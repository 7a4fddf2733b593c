"""`ingest_cohort`: finds a cohort's files, skips the ones the ledger holds complete, re-runs the
incomplete ones, and ends with one summary table artifact."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from paths import REAL

from flows.cohort import ingest_cohort
from vcfstream.cohort import CohortFailed, check_file, cohort_files
from vcfstream.ledger import db
from vcfstream.names import artifact_key
from vcfstream.settings import Settings
from vcfstream.vcf.confinement import InputPolicy
from vcfstream.verify import verify_dataset

COHORT = [REAL / "sample.vcf.gz", REAL / "chr22.vcf.gz", REAL / "mixed_ploidy.vcf.gz"]
ALLELES = {"sample.vcf.gz": 11, "chr22.vcf.gz": 104, "mixed_ploidy.vcf.gz": 8}


@pytest.fixture
def prefect_server(services: Settings) -> Iterator[Settings]:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: services.services.prefect_api_url}):
        yield services


def write_manifest(folder: Path, paths: list[Path | str]) -> str:
    manifest = folder / "cohort.txt"
    manifest.write_text("# cohort under test\n\n" + "\n".join(str(p) for p in paths) + "\n")
    return str(manifest)


def run_cohort(manifest: str, dataset: str, **parameters: Any) -> tuple[Any, dict[str, Any]]:
    state = ingest_cohort(manifest=manifest, dataset=dataset, stores=[], dispatch="subflow", return_state=True,
                          **parameters)
    data = state.result(raise_on_failure=False)
    return state, data.summary if isinstance(data, CohortFailed) else data


def statuses(summary: dict[str, Any]) -> dict[str, str]:
    return {row["file"]: row["status"] for row in summary["outcomes"]}


# -- finding files ----------------------------------------------------------------------------


def test_a_manifest_lists_files_in_order_once_with_paths_relative_to_it(tmp_path: Path) -> None:
    (tmp_path / "batch").mkdir()
    (tmp_path / "batch" / "a.vcf.gz").write_bytes(b"x")
    manifest = write_manifest(tmp_path, [REAL / "chr22.vcf.gz", "batch/a.vcf.gz  # second", REAL / "chr22.vcf.gz"])

    cohort = cohort_files(manifest, None, "*", InputPolicy(roots=(REAL, tmp_path)))
    assert cohort.files == [str(REAL / "chr22.vcf.gz"), str(tmp_path / "batch" / "a.vcf.gz")]


def test_a_directory_is_searched_with_each_comma_separated_pattern(tmp_path: Path) -> None:
    for name in ("a.vcf.gz", "b.bcf", "c.txt", "sub/d.vcf.gz"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")

    policy = InputPolicy(roots=(tmp_path,))
    assert [Path(p).name for p in cohort_files(None, str(tmp_path), "*.vcf.gz,*.bcf", policy).files] == [
        "a.vcf.gz", "b.bcf"]
    assert [Path(p).name for p in cohort_files(None, str(tmp_path), "**/*.vcf.gz", policy).files] == [
        "a.vcf.gz", "d.vcf.gz"]


def test_exactly_one_of_manifest_or_directory_is_accepted(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        cohort_files(None, None, "*.vcf.gz", InputPolicy(roots=(tmp_path,)))
    with pytest.raises(ValueError, match="exactly one"):
        cohort_files(write_manifest(tmp_path, []), str(tmp_path), "*.vcf.gz", InputPolicy(roots=(tmp_path,)))


# -- runs -------------------------------------------------------------------------------------


def test_a_second_run_skips_every_complete_file_even_under_another_name(prefect_server: Settings, dataset: str,
                                                                      tmp_path: Path) -> None:
    first_state, first = run_cohort(write_manifest(tmp_path, COHORT), dataset)

    assert first_state.is_completed(), first_state.message
    assert statuses(first) == dict.fromkeys(ALLELES, "ingested")
    assert (first["variants"], first["new"], first["failed_files"]) == (sum(ALLELES.values()),) * 2 + (0,)

    alias = tmp_path / "renamed.vcf.gz"  # a link, not a copy: same content, same digest
    alias.symlink_to(REAL / "chr22.vcf.gz")
    second_state, second = run_cohort(write_manifest(tmp_path, [*COHORT, alias]), dataset)

    assert second_state.is_completed(), second_state.message
    assert set(statuses(second).values()) == {"skipped"} and second["new"] == 0
    assert _cohort_artifact(dataset)[-1]["status"] == "0 ingested, 4 skipped, 0 failed"
    report = verify_dataset(prefect_server, dataset)
    assert (report["ledger_published"], report["duplicates"], report["missing"]) == (sum(ALLELES.values()), 0, 0)


def test_a_file_with_a_failed_chunk_runs_again_and_publishes_nothing_twice(prefect_server: Settings,
                                                                          dataset: str, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path, COHORT)
    run_cohort(manifest, dataset)
    digest = check_file(prefect_server, dataset, str(REAL / "chr22.vcf.gz")).digest
    with db.connect(prefect_server) as conn:  # as a chunk attempt that died after the claim would
        conn.execute("UPDATE ledger_chunks SET state = 'failed' WHERE dataset = %s AND source_digest = %s",
                     (dataset, digest))
    assert check_file(prefect_server, dataset, str(REAL / "chr22.vcf.gz")).state == "incomplete"

    state, summary = run_cohort(manifest, dataset)

    assert state.is_completed(), state.message
    assert statuses(summary) == {"sample.vcf.gz": "skipped", "chr22.vcf.gz": "ingested",
                                 "mixed_ploidy.vcf.gz": "skipped"}
    assert (summary["new"], summary["duplicates"]) == (0, ALLELES["chr22.vcf.gz"])
    assert check_file(prefect_server, dataset, str(REAL / "chr22.vcf.gz")).state == "complete"
    report = verify_dataset(prefect_server, dataset)
    assert (report["duplicates"], report["missing"]) == (0, 0)


def test_an_unreadable_file_fails_the_cohort_by_name_while_the_others_are_ingested(
        prefect_server: Settings, dataset: str, tmp_path: Path) -> None:
    (tmp_path / "notvcf.vcf.gz").write_text("hello, this is not a VCF\n")
    manifest = write_manifest(tmp_path, [REAL / "sample.vcf.gz", tmp_path / "notvcf.vcf.gz", "missing.vcf.gz"])
    state, summary = run_cohort(manifest, dataset)

    assert state.is_failed()
    # A file that exists is named; a line naming no file is named by its line (a manifest line is never shown).
    assert "2 of 3 file(s) failed: notvcf.vcf.gz" in (state.message or "") and "not a VCF" in state.message
    assert "cohort.txt:5: [input.missing] no such file" in state.message and "missing.vcf.gz" not in state.message
    assert statuses(summary) == {"sample.vcf.gz": "ingested", "notvcf.vcf.gz": "failed", "cohort.txt:5": "failed"}
    assert summary["published"] == {"kafka": ALLELES["sample.vcf.gz"]}


def single_sample_vcf(folder: Path, number: int, broken_header: bool = False) -> Path:
    """Four records of one sample, at positions of their own; ``broken_header``: an INFO Type
    the specification does not have (line 3), so planning rejects the file."""
    info_type = "Intgr" if broken_header else "Integer"
    lines = ["##fileformat=VCFv4.2", "##contig=<ID=chr1,length=10000000>",
             f'##INFO=<ID=DP,Number=1,Type={info_type},Description="depth">',
             '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
             f"#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS{number:02d}"]
    lines += [f"chr1\t{1000 * number + 10 * k + 1}\t.\tA\tG\t50\tPASS\tDP={k + 3}\tGT\t0/1" for k in range(4)]
    path = folder / f"sample{number:02d}.vcf"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_small_files_share_runs_and_a_broken_one_fails_alone_while_the_others_are_ingested(
        prefect_server: Settings, dataset: str, tmp_path: Path) -> None:
    files = [single_sample_vcf(tmp_path, n, broken_header=n == 6) for n in range(1, 13)]
    manifest = write_manifest(tmp_path, files)

    state, summary = run_cohort(manifest, dataset, files_per_run=5)

    assert state.is_failed()
    assert state.message.startswith("1 of 12 file(s) failed: sample06.vcf: ")
    assert "sample06.vcf:3: [meta.type] ##INFO: Type='Intgr' is not one of" in state.message
    outcomes = {row["file"]: row for row in summary["outcomes"]}
    assert {name for name, row in outcomes.items() if row["status"] != "ingested"} == {"sample06.vcf"}
    assert all(row["new"] == 4 and row["error"] == "" for name, row in outcomes.items() if name != "sample06.vcf")
    assert (summary["new"], summary["ingested_files"], summary["failed_files"]) == (44, 11, 1)
    runs = Counter(row["flow_run"] for row in outcomes.values())
    assert sorted(runs.values()) == [2, 5, 5]  # 12 files in three runs, the broken one's among them
    report = verify_dataset(prefect_server, dataset)
    assert (report["ledger_published"], report["duplicates"], report["missing"]) == (44, 0, 0)

    again_state, again = run_cohort(manifest, dataset, files_per_run=5)

    assert again_state.is_failed() and "sample06.vcf" in (again_state.message or "")
    assert {row["file"]: row["status"] for row in again["outcomes"]} == {
        path.name: "failed" if path.name == "sample06.vcf" else "skipped" for path in files}
    assert (again["new"], again["published"]) == (0, {})
    assert verify_dataset(prefect_server, dataset)["ledger_published"] == 44


def test_a_dataset_name_a_platform_refuses_fails_the_cohort_before_any_file_is_checked(
        prefect_server: Settings, tmp_path: Path) -> None:
    state, _ = run_cohort(write_manifest(tmp_path, COHORT), "cohort.2024")
    assert state.is_failed() and "dataset name 'cohort.2024' contains '.'" in (state.message or "")


def _cohort_artifact(dataset: str) -> list[dict[str, Any]]:
    import json

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    key = artifact_key("vcfstream-cohort", dataset)
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                                          sort=ArtifactSort.CREATED_DESC, limit=1)
    data = artifacts[0].data
    return json.loads(data) if isinstance(data, str) else data
