"""How a cohort's files are grouped into runs (``vcfstream.cohort.group_files``) and how each
file's outcome is read from the run that took it (``run_outcomes``): plain Python, no Prefect."""

from __future__ import annotations

from collections import Counter

from vcfstream.cohort import FileCheck, group_files, run_outcomes
from vcfstream.model import ChunkSummary
from vcfstream.summary import FileOutcome, RunSummary

MB = 1 << 20


def check(name: str, size: int, digest: str | None = None) -> FileCheck:
    return FileCheck(f"/cohort/{name}.vcf.gz", digest or name.ljust(64, "0"), "new", size=size)


def names(runs: list[list[FileCheck]]) -> list[list[str]]:
    return [[c.path.rsplit("/", 1)[1].split(".")[0] for c in run] for run in runs]


def test_small_files_share_runs_of_at_most_files_per_run_in_the_cohorts_order() -> None:
    files = [check(f"s{n}", MB) for n in range(7)]
    assert names(group_files(files, files_per_run=3, bytes_per_run=64 * MB)) == [
        ["s0", "s1", "s2"], ["s3", "s4", "s5"], ["s6"]]


def test_a_run_of_small_files_holds_at_most_bytes_per_run() -> None:
    files = [check(f"s{n}", 30 * MB) for n in range(5)]
    assert names(group_files(files, files_per_run=100, bytes_per_run=64 * MB)) == [
        ["s0", "s1"], ["s2", "s3"], ["s4"]]


def test_a_large_file_runs_alone_and_the_small_ones_around_it_share_a_run() -> None:
    files = [check("s0", MB), check("big", 64 * MB), check("s1", MB), check("s2", MB)]
    assert names(group_files(files, files_per_run=100, bytes_per_run=64 * MB)) == [["s0", "s1", "s2"], ["big"]]


def test_small_files_are_spread_so_that_runs_at_once_runs_can_go_at_once() -> None:
    files = [check(f"s{n}", MB) for n in range(10)]
    runs = group_files(files, files_per_run=100, bytes_per_run=64 * MB, runs_at_once=3)
    assert [len(run) for run in runs] == [4, 4, 2]
    assert [c for run in runs for c in run] == files  # every file once, in order


def test_two_files_of_the_same_content_never_share_a_run() -> None:
    files = [check("a", MB, "d" * 64), check("b", MB), check("a-copy", MB, "d" * 64), check("c", MB)]
    runs = group_files(files, files_per_run=100, bytes_per_run=64 * MB)
    assert names(runs) == [["a", "b", "c"], ["a-copy"]]


def test_files_per_run_1_is_a_run_per_file_and_no_files_no_runs() -> None:
    files = [check(f"s{n}", MB) for n in range(3)]
    assert names(group_files(files, files_per_run=1, bytes_per_run=64 * MB)) == [["s0"], ["s1"], ["s2"]]
    assert group_files([], files_per_run=100, bytes_per_run=64 * MB) == []


def test_each_file_of_a_run_gets_its_own_outcome_so_a_bad_file_fails_alone() -> None:
    good, bad = check("good", MB), check("bad", MB)
    error = f"{bad.path}: line 3: [meta.type] ##INFO: Type='Intgr' is not one of Character, Flag, Float, Integer, String"
    run = RunSummary.of(ChunkSummary(records=5, alleles=5, new=5, published=Counter(kafka=5)), "run-7", [error], files=[
        FileOutcome.at(good.path, "ingested", digest=good.digest or "",
                       counts=ChunkSummary(records=5, alleles=5, new=5, published=Counter(kafka=5))),
        FileOutcome.at(bad.path, "failed", error=error)])

    outcomes = run_outcomes([good, bad], RunSummary.from_json(run.to_json()))  # as a deployment run returns it

    assert [(o.file, o.status, o.counts.new, o.flow_run, o.error) for o in outcomes] == [
        ("good.vcf.gz", "ingested", 5, "run-7", ""), ("bad.vcf.gz", "failed", 0, "run-7", error)]
    assert outcomes[0].digest == good.digest


def test_files_of_a_run_that_ended_before_summarizing_fail_with_its_error() -> None:
    files = [check("a", MB), check("b", MB)]
    outcomes = run_outcomes(files, RunSummary.failed("flow run crashed: SIGKILL", "run-8"))
    assert [(o.status, o.error, o.flow_run) for o in outcomes] == [("failed", "flow run crashed: SIGKILL", "run-8")] * 2
