"""Joint-called cohorts: chunks sized by genotype cells, the graph written in bounded parts, and
a wide file end to end through the flow."""

from __future__ import annotations

import gzip
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pysam
import pytest
from paths import REPO

from vcfstream.errors import StoreError
from vcfstream.model import AlleleBatch
from vcfstream.settings import Settings
from vcfstream.stores.genotypes import carrying
from vcfstream.stores.graph import GraphStore, carriers, graph_counts
from vcfstream.vcf.chunks import NARROW_SAMPLES, _plan_by_scan, _plan_from_index, plan_chunks, records_per_chunk
from vcfstream.vcf.reader import ReadContext, read_chunk
from vcfstream.vcf.source import iter_chunk_lines, open_source
from vcfstream.verify import verify_dataset

sys.path.insert(0, str(REPO / "bench"))

from synth_vcf import generate


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 samples, 2,000 records: rare-heavy, multi-allelic sites, ./., ./1, haploid chrX."""
    return generate(tmp_path_factory.mktemp("cohort") / "cohort.vcf.gz", 2_000, 300, seed=11, shape="realistic")


@pytest.fixture(scope="module")
def narrow(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("narrow") / "narrow.vcf.gz", 2_000, 3, seed=11)


def _unindexed(path: Path, folder: Path) -> Path:
    """The same records as plain text without an index: planned by a scan."""
    plain = folder / path.name.removesuffix(".gz")
    with gzip.open(path, "rb") as source, open(plain, "wb") as out:
        shutil.copyfileobj(source, out)
    return plain


def _records_per_chunk(path: Path, chunk_size: int) -> tuple[int, list[int]]:
    source = open_source(str(path))
    return len(source.samples), [sum(1 for _ in iter_chunk_lines(source, chunk))
                                 for chunk in plan_chunks(source, chunk_size)]


def test_chunk_size_is_records_of_a_narrow_file_and_fewer_of_a_wide_one() -> None:
    assert records_per_chunk(50_000, NARROW_SAMPLES) == records_per_chunk(50_000, 0) == 50_000
    assert records_per_chunk(50_000, 1_000) == 150
    assert records_per_chunk(50_000, 2_504) == 59
    assert records_per_chunk(10, 2_504) == 1  # a chunk holds at least one record


@pytest.mark.parametrize("indexed", [True, False], ids=["index", "scan"])
def test_chunks_of_narrow_and_wide_files_hold_a_bounded_number_of_genotype_cells(
        cohort: Path, narrow: Path, tmp_path: Path, indexed: bool) -> None:
    chunk_size = 1_000
    budget = chunk_size * NARROW_SAMPLES  # genotype cells: 1,000 records of 3 samples, 10 of 300
    for path in (cohort, narrow):
        path = path if indexed else _unindexed(path, tmp_path)
        samples, records = _records_per_chunk(path, chunk_size)
        assert sum(records) == 2_000
        cells = [n * max(samples, NARROW_SAMPLES) for n in records]
        assert len(cells) == pytest.approx(2_000 * max(samples, NARROW_SAMPLES) / budget, rel=0.05), path.name
        if indexed:  # regions cut by compressed bytes (within index bins), so about the budget
            assert max(cells) <= 2.5 * budget and np.mean(cells) <= 1.05 * budget, (path.name, records)
        else:
            assert max(cells) <= budget, (path.name, records)


def test_a_narrow_file_is_planned_by_its_record_count_as_before(narrow: Path, tmp_path: Path) -> None:
    indexed, plain = open_source(str(narrow)), open_source(str(_unindexed(narrow, tmp_path)))
    assert plan_chunks(indexed, 500) == _plan_from_index(indexed, 500)
    assert plan_chunks(plain, 500) == _plan_by_scan(plain, 500)
    assert [chunk.n_records for chunk in plan_chunks(plain, 500)] == [500] * 4


def _whole_file(path: Path, dataset: str) -> AlleleBatch:
    source = open_source(str(path))
    return read_chunk(ReadContext.open(dataset, "GRCh38", source), _plan_by_scan(source, 10_000)[0]).batch


@pytest.fixture(scope="module")
def cohort_batch(cohort: Path) -> AlleleBatch:
    return _whole_file(cohort, "cohort")


def test_the_graph_writes_a_wide_batch_in_parts_its_buffer_pool_holds(tmp_path: Path) -> None:
    dense = _whole_file(generate(tmp_path / "dense.vcf.gz", 1_000, 300, seed=3), "dense")  # half carry each
    settings = Settings().with_groups(kuzu={"path": str(tmp_path / "graph.kuzu"), "buffer_pool_mb": 16})
    store = GraphStore(settings)
    carrier_calls = int(carrying(dense.gt).sum())
    assert carrier_calls > 5 * store.most_edges  # several parts

    unbounded = GraphStore(settings)
    unbounded.most_edges = carrier_calls
    with pytest.raises(StoreError, match="buffer pool is full"):
        unbounded.write(dense)  # what one COPY of every edge did

    assert store.write(dense) == len(dense)
    assert store.last_write["carried_by"] == carrier_calls  # non-reference calls only
    counts = graph_counts(settings)
    assert (counts["Variant"], counts["CARRIED_BY"], counts["Sample"]) == (len(dense), carrier_calls, 300)

    assert store.write(dense) == 0  # a rerun adds nothing
    assert store.last_write["carried_by"] == 0
    assert graph_counts(settings)["CARRIED_BY"] == carrier_calls


def test_a_part_that_fails_leaves_the_parts_before_it_and_a_retry_writes_the_rest(
        cohort_batch: AlleleBatch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings().with_groups(kuzu={"path": str(tmp_path / "graph.kuzu")})
    store = GraphStore(settings)
    store.most_edges = int(carrying(cohort_batch.gt).sum()) // 3
    write = GraphStore._write
    parts: list[int] = []

    def third_part_fails(self: GraphStore, conn: object, work: tuple[Any, Any]) -> dict[str, int]:
        parts.append(work[0].table.num_rows)
        if len(parts) == 3:
            raise RuntimeError("Buffer manager exception: Unable to allocate memory! The buffer pool is full")
        return write(self, conn, work)  # type: ignore[arg-type]

    monkeypatch.setattr(GraphStore, "_write", third_part_fails)
    with pytest.raises(StoreError, match="buffer pool is full") as failed:
        store.write(cohort_batch)
    assert f"the first {parts[0] + parts[1]} are stored, a retry writes the rest" in str(failed.value)
    monkeypatch.setattr(GraphStore, "_write", write)
    assert graph_counts(settings)["Variant"] == parts[0] + parts[1]
    assert store.write(cohort_batch) == len(cohort_batch) - parts[0] - parts[1]
    assert graph_counts(settings)["CARRIED_BY"] == int(carrying(cohort_batch.gt).sum())


def test_half_missing_and_haploid_carriers_are_edges_with_their_call(cohort_batch: AlleleBatch, tmp_path: Path) -> None:
    settings = Settings().with_groups(kuzu={"path": str(tmp_path / "graph.kuzu")})
    GraphStore(settings).write(cohort_batch)
    keys = cohort_batch.table.column("variant_key").to_pylist()
    gt, samples = cohort_batch.gt, cohort_batch.samples
    half = np.argwhere((gt[:, :, 0] == -1) & (gt[:, :, 1] == 1))[0]
    haploid = np.argwhere((gt[:, :, 0] == 1) & (gt[:, :, 1] == -2))[0]
    for (row, column), call in ((half, "./1"), (haploid, "1")):
        found = {c["sample"]: c["gt"] for c in carriers(settings, keys[row], dataset="cohort")}
        assert found[samples[column]] == call
        assert len(found) == int(carrying(gt[row:row + 1]).sum())


def test_a_multi_allelic_call_carries_only_the_alleles_it_holds(cohort_batch: AlleleBatch) -> None:
    table = cohort_batch.table
    n_alts = table.column("n_alts").to_numpy()
    rows = np.flatnonzero(n_alts > 1)
    assert rows.size
    with pysam.VariantFile(cohort_batch.source_path) as vcf:
        by_pos = {(rec.chrom, rec.pos): rec for rec in vcf if len(rec.alts or ()) > 1}
    for row in rows[:20]:
        rec = by_pos[(table.column("contig")[row].as_py(), table.column("pos")[row].as_py())]
        index = table.column("allele_index")[row].as_py()
        expected = [index in (s["GT"] or ()) for s in rec.samples.values()]
        assert carrying(cohort_batch.gt[row:row + 1])[0].tolist() == expected


@pytest.fixture(scope="module")
def prefect_server(services: Settings) -> Iterator[Settings]:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: services.services.prefect_api_url}):
        yield services


def test_a_wide_cohort_ingests_end_to_end_verifies_clean_and_a_rerun_stores_nothing_new(
        prefect_server: Settings, dataset: str, cohort: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        make_name: Callable[[str], str]) -> None:
    from vcfstream.cli.run import run_ingest

    monkeypatch.setenv("VCFSTREAM_KUZU_PATH", str(tmp_path / "graph.kuzu"))
    monkeypatch.setenv("VCFSTREAM_LANCEDB_URI", str(tmp_path / "lancedb"))
    settings = prefect_server.with_groups(ingest={"assembly": make_name("asm"), "chunk_size": 10_000})  # 100 records
    stores = ["catalog", "lancedb", "kuzu"]
    with pysam.VariantFile(str(cohort)) as vcf:
        alleles = sum(len(rec.alts or ()) for rec in vcf)

    first = run_ingest([str(cohort)], settings=settings, dataset=dataset, stores=stores).to_json()
    assert first["state"] == "Completed", first
    assert first["records"] == 2_000 and first["quarantined"] == 0
    assert first["published"] == {"kafka": alleles}
    assert first["stored"] == dict.fromkeys(stores, alleles)
    report = verify_dataset(prefect_server, dataset)
    # 300 samples: compact messages, and the file's sample list published once before them
    assert (report["ledger_published"], report["duplicates"], report["missing"], report["unknown"]) == (
        alleles + 1, 0, 0, 0)
    assert (report["sample_lists"], report["sample_lists_missing"]) == (1, 0)

    second = run_ingest([str(cohort)], settings=settings, dataset=dataset, stores=stores).to_json()
    assert second["state"] == "Completed", second
    assert (second["new"], second["published"]) == (0, {})
    assert not any(second.get("stored", {}).values()), second
    assert verify_dataset(prefect_server, dataset)["duplicates"] == 0
