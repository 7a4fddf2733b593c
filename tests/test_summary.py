"""The typed run and cohort summaries: their ``to_json()`` is the public ``--json`` / flow state
contract, key for key."""

from __future__ import annotations

from collections import Counter

from vcfstream.model import Chunk, ChunkSummary
from vcfstream.summary import ChunkRow, CohortSummary, FileOutcome, RunSummary

RUN_KEYS = ["records", "alleles", "reference_blocks", "new", "duplicates", "quarantined", "in_doubt", "failovers",
            "published", "stored", "rules", "notes", "flow_run_id", "state", "errors", "seconds", "files"]
COHORT_KEYS = ["files", "ingested_files", "skipped_files", "failed_files", "records", "variants", "new",
               "duplicates", "quarantined", "failovers", "published", "outcomes"]
OUTCOME_KEYS = ["file", "status", "digest", "records", "alleles", "new", "duplicates", "quarantined", "failovers",
                "published", "flow_run", "error"]
CHUNK_ROW_KEYS = ["file", "chunk", "extent", "records", "alleles", "new", "duplicates", "quarantined", "platforms",
                  "failovers", "in_doubt", "state", "message"]
TABLE_KEYS = ["file", "status", "digest", "records", "variants", "new", "duplicates", "quarantined", "failovers",
              "published", "flow_run", "error"]


def some_counts() -> ChunkSummary:
    return ChunkSummary(records=12, alleles=13, reference_blocks=1, new=10, duplicates=3, quarantined=2, in_doubt=1,
                        failovers=1, published=Counter(kafka=6, iggy=4), stored=Counter(catalog=10),
                        rules=Counter({"alt.duplicate": 2}), notes=["lowered concurrency"])


def test_a_run_summary_has_the_contract_keys_in_order_with_plain_values() -> None:
    summary = RunSummary.of(some_counts(), "run-1", ["a.vcf: boom", "a.vcf: boom"])
    summary.seconds = 1.5
    data = summary.to_json()

    assert list(data) == RUN_KEYS
    assert data == {"records": 12, "alleles": 13, "reference_blocks": 1, "new": 10, "duplicates": 3,
                    "quarantined": 2, "in_doubt": 1, "failovers": 1, "published": {"kafka": 6, "iggy": 4},
                    "stored": {"catalog": 10}, "rules": {"alt.duplicate": 2}, "notes": ["lowered concurrency"],
                    "flow_run_id": "run-1", "state": "Failed", "errors": ["a.vcf: boom"], "seconds": 1.5, "files": []}
    assert type(data["published"]) is dict and type(data["stored"]) is dict and type(data["rules"]) is dict
    assert RunSummary.from_json(data).to_json() == data
    assert RunSummary.of(ChunkSummary(), None, []).to_json()["state"] == "Completed"


def test_a_run_that_ended_before_summarizing_has_every_key() -> None:
    data = RunSummary.failed("the flow crashed").to_json()
    assert list(data) == RUN_KEYS
    assert (data["state"], data["errors"], data["records"], data["flow_run_id"]) == ("Failed", ["the flow crashed"],
                                                                                      0, None)


def test_chunks_stay_out_of_the_json_and_fill_the_table() -> None:
    counts = ChunkSummary(records=3, alleles=4, new=4, published=Counter(kafka=4))
    rows = [ChunkRow.of(Chunk("/d/b.vcf", 1, "ab" * 32, first_record=3, n_records=3), counts, "Cached", "ok"),
            ChunkRow.of(Chunk("/d/b.vcf", 0, "ab" * 32, first_record=0, n_records=3), counts, "Completed", "ok")]
    summary = RunSummary.of(counts + counts, "run-1", [], rows, [FileOutcome.at("/d/b.vcf", "ingested")])

    assert list(summary.to_json()) == RUN_KEYS
    assert [(r["file"], r["chunk"], r["extent"], r["platforms"], r["state"]) for r in summary.table()] == [
        ("b.vcf", 0, "records 0-2", "kafka: 4", "Completed"), ("b.vcf", 1, "records 3-5", "kafka: 4", "Cached")]
    assert list(summary.table()[0]) == CHUNK_ROW_KEYS


def test_a_run_of_many_files_says_in_its_json_what_became_of_each_and_reads_it_back() -> None:
    ok = FileOutcome.at("/d/a.vcf", "ingested", digest="ab" * 32, flow_run="run-1",
                        counts=ChunkSummary(records=3, alleles=4, new=4, published=Counter(kafka=4)))
    bad = FileOutcome.at("/d/b.vcf", "failed", flow_run="run-1", error="/d/b.vcf: line 9: [alt.missing] no ALT")
    data = RunSummary.of(ok.counts, "run-1", [bad.error], files=[ok, bad]).to_json()

    assert [row["path"] for row in data["files"]] == ["/d/a.vcf", "/d/b.vcf"]
    assert data["files"][1] == {"path": "/d/b.vcf", **bad.to_json()}
    back = RunSummary.from_json(data).files
    assert [(f.path, f.file, f.status, f.digest, f.counts.new, f.counts.published, f.error) for f in back] == [
        ("/d/a.vcf", "a.vcf", "ingested", "ab" * 32, 4, Counter(kafka=4), ""),
        ("/d/b.vcf", "b.vcf", "failed", "", 0, Counter(), bad.error)]


def test_a_file_outcome_sums_its_chunks() -> None:
    outcome = FileOutcome.at("/d/a.vcf", "ingesting", digest="ab" * 32, chunks=2)
    for published in (Counter(kafka=2), Counter(kafka=1, iggy=3)):
        outcome.add(ChunkRow("/d/a.vcf", 0, "x", ChunkSummary(records=2, alleles=4, new=4, published=published,
                                                             failovers=1)))
    outcome.fail("chunk 1: boom")

    assert (outcome.file, outcome.status, outcome.counts.alleles, outcome.counts.failovers, outcome.error) == (
        "a.vcf", "failed", 8, 2, "chunk 1: boom")
    assert outcome.to_json()["published"] == {"kafka": 3, "iggy": 3}
    assert list(outcome.to_json()) == OUTCOME_KEYS


def test_a_cohort_summary_has_the_contract_keys_and_a_total_row() -> None:
    run = RunSummary.of(some_counts(), "run-1", [])
    files = [FileOutcome.of_run("/d/a.vcf", "ab" * 32, run), FileOutcome.at("/d/b.vcf", "skipped", digest="cd" * 32),
             FileOutcome.at("/d/c.vcf", "failed", error="no such file")]
    summary = CohortSummary("cohort-x", files)
    data = summary.to_json()

    assert list(data) == COHORT_KEYS
    assert [list(row) for row in data["outcomes"]] == [OUTCOME_KEYS] * 3
    assert (data["files"], data["ingested_files"], data["skipped_files"], data["failed_files"]) == (3, 1, 1, 1)
    assert (data["variants"], data["new"], data["published"]) == (13, 10, {"kafka": 6, "iggy": 4})
    assert data["outcomes"][0] == {"file": "a.vcf", "status": "ingested", "digest": "ab" * 32, "records": 12,
                                   "alleles": 13, "new": 10, "duplicates": 3, "quarantined": 2, "failovers": 1,
                                   "published": {"kafka": 6, "iggy": 4}, "flow_run": "run-1", "error": ""}
    assert data["outcomes"][1] == {**dict.fromkeys(OUTCOME_KEYS[3:-3], 0), "file": "b.vcf", "status": "skipped",
                                   "digest": "cd" * 32, "published": {}, "flow_run": "", "error": ""}
    table = summary.table()
    assert [list(row) for row in table] == [TABLE_KEYS] * 4
    assert table[0]["digest"] == "ab" * 6 and table[0]["published"] == "iggy: 4, kafka: 6"
    assert table[-1] == {"file": "TOTAL (3 files)", "status": "1 ingested, 1 skipped, 1 failed", "digest": "",
                         "records": 12, "variants": 13, "new": 10, "duplicates": 3, "quarantined": 2, "failovers": 1,
                         "published": "iggy: 4, kafka: 6", "flow_run": "", "error": ""}
    assert summary.headline() == ("cohort cohort-x: 3 files (1 ingested, 1 skipped, 1 failed); 13 variants, "
                                  "10 new, 1 failovers, 2 quarantined")
    assert summary.failure_message() == "1 of 3 file(s) failed: c.vcf: no such file"


def test_a_failed_run_makes_a_failed_cohort_file_naming_its_errors() -> None:
    outcome = FileOutcome.of_run("/d/a.vcf", "", RunSummary.of(ChunkSummary(), "run-2", ["store kuzu: locked"]))
    assert (outcome.status, outcome.error, outcome.flow_run) == ("failed", "store kuzu: locked", "run-2")


def test_the_headline_names_what_each_platform_and_store_took() -> None:
    counts = ChunkSummary(records=1200, alleles=1250, new=1000, duplicates=250, quarantined=3, failovers=1,
                          published=Counter(iggy=600, kafka=400), stored=Counter(kuzu=1000, catalog=0))
    assert RunSummary(counts).headline() == (
        "1,200 records, 1,250 alleles: 1,000 new, 250 duplicates, 3 quarantined; "
        "published 600 to iggy, 400 to kafka; new variants stored: kuzu 1,000; 1 batch failed over")
    counts.new, counts.published, counts.stored, counts.failovers, counts.in_doubt = (
        0, Counter(), Counter(catalog=0), 0, 5)
    assert RunSummary(counts).headline().endswith(
        "published nothing new; no variant new to the stores; 5 alleles in doubt (sent to more than one platform)")
    counts.stored = Counter()
    assert "stores" not in RunSummary(counts).headline()
