"""The catalog's packed genotypes: ``carriers`` and ``shared_variants`` answered from them equal
the answers of the row-per-call table and of the file itself (pysam), on a wide synthetic cohort
(multi-allelic sites, ./., ./1, haploid chrX) and on real multi-sample files."""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pysam
import pytest
from paths import REAL, REPO
from test_stores import Allele, fresh_database, make_batch, read_file, sql, trio_batch

from vcfstream.errors import StoreError
from vcfstream.model import AlleleBatch
from vcfstream.settings import Settings
from vcfstream.stores import catalog
from vcfstream.stores.registry import open_store

sys.path.insert(0, str(REPO / "bench"))

from synth_vcf import generate

ALL_ROWS = 1_000_000  # call_rows_max_samples: every file also gets its row-per-call table


@pytest.fixture(scope="module")
def wide_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 samples, 1,500 records, realistic: rare-heavy, multi-allelic, ./., ./1, haploid chrX."""
    return generate(tmp_path_factory.mktemp("wide") / "wide.vcf.gz", 1_500, 300, seed=5, shape="realistic")


@pytest.fixture
def both_forms(services: Settings, tmp_path: Path) -> Iterator[Settings]:
    """A fresh catalog whose writes keep packed genotypes and the row-per-call table."""
    with fresh_database(services, Settings(home=tmp_path)) as settings:
        yield settings.with_groups(stores={"call_rows_max_samples": ALL_ROWS})


def write(settings: Settings, batches: list[AlleleBatch]) -> None:
    with open_store("catalog", settings) as store:
        for batch in batches:
            store.write(batch)


def row_carriers(settings: Settings) -> dict[str, list[dict[str, Any]]]:
    """What ``carriers`` answers, per variant key, from the row-per-call table: calls whose GT
    holds a 1."""
    names = ("sample", "dataset", "gt", "phased", "dp", "gq")
    found: dict[str, list[dict[str, Any]]] = {}
    for key, *row in sql(settings, f"SELECT variant_key, {', '.join(names)} FROM catalog.genotype_calls "
                                   "WHERE gt LIKE '%%1%%'"):
        found.setdefault(key, []).append(dict(zip(names, row)))
    return {key: sorted(rows, key=lambda r: (r["dataset"], r["sample"])) for key, rows in found.items()}


def row_shared(settings: Settings, sample_a: str, sample_b: str) -> list[str]:
    rows = sql(settings, "SELECT DISTINCT a.variant_key FROM catalog.genotype_calls a JOIN catalog.genotype_calls b "
               "USING (dataset, variant_key) WHERE a.sample = %s AND b.sample = %s "
               "AND a.gt LIKE '%%1%%' AND b.gt LIKE '%%1%%'", sample_a, sample_b)  # fmt: skip
    return sorted(key for (key,) in rows)


def file_carriers(path: Path) -> tuple[dict[tuple[Any, ...], set[str]], list[str]]:
    """Straight from the file (pysam): the samples whose GT holds each allele index, by record
    (chrom, pos, ref, alts) and index, and the sample names."""
    found: dict[tuple[Any, ...], set[str]] = {}
    with pysam.VariantFile(str(path)) as vcf:
        samples = list(vcf.header.samples)
        for record in vcf:
            for index in range(1, len(record.alts or ()) + 1):
                carrying = {name for name, call in record.samples.items() if index in (call.get("GT") or ())}
                found.setdefault((record.chrom, record.pos, record.ref, record.alts, index), carrying)
    return found, samples


def record_of(message: bytes, index: int) -> tuple[Any, ...]:
    """The (chrom, pos, ref, alts, index) of an allele's record, from its message."""
    record = orjson.loads(message)["record"]
    return record["chrom"], record["pos"], record["ref"], tuple(record["alts"]), index


def bcftools_shared(path: Path, sample_a: str, sample_b: str) -> int:
    """Alleles both samples carry, by bcftools: split to one allele per record (``norm -m-``,
    which re-codes GT per allele), then records where both GTs hold the ALT."""
    both = "GT[0]=\"alt\" && GT[1]=\"alt\""
    command = (f"bcftools view -s {sample_a},{sample_b} -Ou {path} | bcftools norm -m- -Ou - "
               f"| bcftools query -i '{both}' -f '%CHROM\\n' -")
    return len(subprocess.run(command, shell=True, check=True, capture_output=True, text=True).stdout.splitlines())


def bcftools_carriers(path: Path) -> dict[tuple[str, int, str, str], set[str]]:
    """The samples carrying each ALT by bcftools, keyed (chrom, pos, ref, alt): split to one ALT
    per record (``norm -m-``, which re-codes GT per allele), then the samples whose GT holds it
    (``GT~"1"``: bcftools' ``GT="alt"`` takes a half-missing call such as ``./1`` for missing,
    though it carries the ALT)."""
    command = (f"bcftools norm -m- -Ou {path} 2>/dev/null | bcftools query -i 'GT~\"1\"' "
               "-f '[%CHROM\\t%POS\\t%REF\\t%ALT\\t%SAMPLE\\n]' -")
    found: dict[tuple[str, int, str, str], set[str]] = {}
    lines = subprocess.run(command, shell=True, check=True, capture_output=True, text=True).stdout.splitlines()
    for line in lines:
        chrom, pos, ref, alt, sample = line.split("\t")
        found.setdefault((chrom, int(pos), ref, alt), set()).add(sample)
    return found


def check_against_rows_and_file(settings: Settings, path: Path, batches: list[AlleleBatch],
                                pairs: int, every: int = 1) -> Counter[str]:
    """The carriers of every allele of a multi-allelic site and of every ``every``-th other,
    and the shared variants of ``pairs`` sample pairs (the pairs sharing most first), from the
    packed form equal the row-per-call answers and the file's (pysam, and bcftools for the
    carriers and for the shared counts of the first three pairs); returns how many multi-allelic alleles and ./1 and
    haploid carriers and shared variants were compared."""
    expected, samples = file_carriers(path)
    by_bcftools = bcftools_carriers(path)
    shared_by_pair: Counter[tuple[str, str]] = Counter()
    kinds: Counter[str] = Counter()
    from_rows = row_carriers(settings)
    counter = itertools.count()
    for batch in batches:
        table = batch.table
        for key, message, index, n_alts in zip(*(table.column(c).to_pylist() for c in
                                                   ("variant_key", "value", "allele_index", "n_alts")), strict=True):
            if n_alts == 1 and next(counter) % every:
                continue
            packed = catalog.carriers(settings, key)
            assert packed == from_rows.get(key, []), key
            chrom, pos, ref, alts, _ = record = record_of(message, index)
            assert {row["sample"] for row in packed} == expected[record] == by_bcftools.get(
                (chrom, pos, ref, alts[index - 1]), set()), key
            kinds.update(["multi-allelic"] * (n_alts > 1) + [row["gt"] for row in packed if row["gt"] in ("./1", "1")])
    for carried in expected.values():  # from the file
        shared_by_pair.update(itertools.combinations(sorted(carried), 2))
    chosen = [pair for pair, _ in shared_by_pair.most_common(pairs // 2)]
    chosen += [(a, b) for a, b in itertools.islice(itertools.combinations(samples, 2), 0, None, 97)][: pairs - len(chosen)]
    for a, b in chosen:
        keys = [row["variant_key"] for row in catalog.shared_variants(settings, a, b)]
        assert sorted(keys) == row_shared(settings, a, b), (a, b)
        assert len(keys) == shared_by_pair[tuple(sorted((a, b)))], (a, b)
        kinds["shared"] += len(keys)
    for a, b in chosen[:3]:  # the pairs sharing most, by pysam
        assert len(catalog.shared_variants(settings, a, b)) == bcftools_shared(path, a, b), (a, b)
        assert bcftools_shared(path, a, b) == shared_by_pair[tuple(sorted((a, b)))], (a, b)
    return kinds


def test_carriers_and_shared_from_packed_genotypes_equal_the_call_rows_on_a_wide_cohort(
        both_forms: Settings, wide_cohort: Path) -> None:
    batches = read_file(wide_cohort, dataset="wide", chunk_size=5_000)  # 50 records of 300 samples per chunk
    write(both_forms, batches)
    kinds = check_against_rows_and_file(both_forms, wide_cohort, batches, pairs=12, every=10)
    assert kinds["multi-allelic"] and kinds["./1"] and kinds["1"] and kinds["shared"], kinds  # each kind compared

    counts = catalog.catalog_counts(both_forms, "wide")
    assert counts["genotype_calls"] == counts["call_rows"] == sum(int((b.gt >= 0).any(axis=2).sum()) for b in batches)


@pytest.mark.parametrize("name", ["chr22.vcf.gz", "1kg_2020_chrM.vcf.gz", "mixed_ploidy.vcf.gz", "sample.vcf.gz"])
def test_carriers_and_shared_from_packed_genotypes_equal_the_call_rows_on_real_files(
        both_forms: Settings, name: str) -> None:
    batches = read_file(REAL / name, dataset="real", chunk_size=10)
    write(both_forms, batches)
    check_against_rows_and_file(both_forms, REAL / name, batches, pairs=6)


def test_every_packed_call_reads_back_as_its_row(both_forms: Settings) -> None:
    """The view ``genotype_call_rows`` unpacks the arrays to the rows genotype_calls holds."""
    batches = read_file(REAL / "chr22.vcf.gz", dataset="real", chunk_size=10)
    big = make_batch([Allele("chr1", 10, "A", "G", ["0/1", "1|1", "./1", "1"], dp=[40_000, 7, -1, 0],
                             gq=[99, -1, 70_000, 1])], samples=["a", "b", "c", "d"])
    write(both_forms, [*batches, big])
    columns = "dataset, variant_key, sample, gt, phased, dp, gq"
    rows = sql(both_forms, f"SELECT {columns} FROM catalog.genotype_calls ORDER BY 1, 2, 3")
    assert len(rows) > 3_000
    assert sql(both_forms, f"SELECT {columns} FROM catalog.genotype_call_rows ORDER BY 1, 2, 3") == rows
    assert [(r["sample"], r["gt"], r["dp"], r["gq"]) for r in catalog.carriers(both_forms, "GRCh38:chr1:10:A:G")] == [
        ("a", "0/1", 40_000, 99), ("b", "1|1", 7, None), ("c", "./1", None, 70_000), ("d", "1", 0, 1)]


def test_only_files_up_to_the_width_threshold_also_get_call_rows(both_forms: Settings) -> None:
    settings = both_forms.with_groups(stores={"call_rows_max_samples": 3})
    narrow = read_file(REAL / "sample.vcf.gz", dataset="narrow", chunk_size=10)
    wide = read_file(REAL / "chr22.vcf.gz", dataset="wide", chunk_size=10)
    write(settings, narrow + wide)
    narrow_counts, wide_counts = catalog.catalog_counts(settings, "narrow"), catalog.catalog_counts(settings, "wide")
    assert narrow_counts["call_rows"] == narrow_counts["genotype_calls"] > 0
    assert wide_counts["call_rows"] == 0 and wide_counts["genotype_calls"] > 0
    keys = [key for batch in wide for key in batch.table.column("variant_key").to_pylist()]
    key, carried = next((key, rows) for key in keys if len(rows := catalog.carriers(settings, key)) > 1)
    first, second = carried[0]["sample"], carried[1]["sample"]
    assert key in [row["variant_key"] for row in catalog.shared_variants(settings, first, second)]  # packed alone


def test_a_sample_list_is_stored_once_per_dataset_and_file(both_forms: Settings) -> None:
    write(both_forms, [trio_batch(), trio_batch(assembly="again"), trio_batch(dataset="other")])
    assert sql(both_forms, "SELECT dataset, samples FROM catalog.sample_lists ORDER BY 1") == [
        ("other", ["mother", "father", "child"]), ("trio", ["mother", "father", "child"])]
    renamed = trio_batch(assembly="renamed")
    renamed.samples = ["mother", "father", "son"]
    with open_store("catalog", both_forms) as store, pytest.raises(StoreError, match="another list of 3"):
        store.write(renamed)


def test_a_batch_without_samples_stores_its_variants_and_no_genotypes(both_forms: Settings) -> None:
    sites = make_batch([Allele("chr1", 5, "C", "T")], samples=[])
    write(both_forms, [sites])
    assert catalog.catalog_counts(both_forms) == {"variants": 1, "genotype_calls": 0, "call_rows": 0}
    assert catalog.carriers(both_forms, "GRCh38:chr1:5:C:T") == []
    assert sql(both_forms, "SELECT count(*) FROM catalog.genotype_arrays") == [(0,)]


def test_a_write_that_failed_after_storing_its_sample_list_is_written_whole_by_its_retry(
        both_forms: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    copy_calls = catalog.CatalogStore._copy_calls
    failures = iter([True])

    def fails_once(self: catalog.CatalogStore, *args: Any) -> int:
        if next(failures, False):
            raise psycopg.errors.QueryCanceled("canceling statement due to statement timeout")
        return copy_calls(self, *args)

    monkeypatch.setattr(catalog.CatalogStore, "_copy_calls", fails_once)
    with open_store("catalog", both_forms) as store:
        with pytest.raises(StoreError, match="statement timeout"):
            store.write(trio_batch())  # the sample list, variants and packed rows are taken back
        assert sql(both_forms, "SELECT count(*) FROM catalog.sample_lists") == [(0,)]
        assert store.write(trio_batch()) == 5  # the same store, again
    assert [row["sample"] for row in catalog.carriers(both_forms, "GRCh38:chr1:100:A:G")] == ["child", "mother"]
    assert catalog.catalog_counts(both_forms, "trio") == {"variants": 5, "genotype_calls": 14, "call_rows": 14}


def test_the_carriers_and_shared_commands_answer_from_the_catalog(
        both_forms: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from vcfstream.cli.main import main

    write(both_forms, [trio_batch()])
    monkeypatch.setenv("VCFSTREAM_HOME", str(both_forms.home))
    monkeypatch.setenv("VCFSTREAM_PG_DSN", both_forms.postgres_dsn())
    assert main(["carriers", "GRCh38:chr1:100:A:G", "--json"]) == 0
    rows = orjson.loads(capsys.readouterr().out)
    assert rows == catalog.carriers(both_forms, "GRCh38:chr1:100:A:G")
    assert [row["sample"] for row in rows] == ["child", "mother"]
    assert main(["shared", "father", "child", "--dataset", "trio", "--json"]) == 0
    assert [row["pos"] for row in orjson.loads(capsys.readouterr().out)] == [200, 300]  # as trio_batch spells out


def single_sample_batch(sample: str, alleles: list[tuple[int, str]], dataset: str = "twofiles") -> AlleleBatch:
    """A one-sample file ``{sample}.vcf`` of chr1 SNVs A>G: (position, that sample's GT) each."""
    return make_batch([Allele("chr1", pos, "A", "G", [gt], dp=[20]) for pos, gt in alleles], samples=[sample],
                      dataset=dataset, source=f"{sample}.vcf")


def packed_rows(settings: Settings) -> list[tuple[str, str]]:
    """(variant key, first sample of its list) of every packed row."""
    return sorted(sql(settings, "SELECT g.variant_key, l.samples[1] FROM catalog.genotype_arrays g "
                                "JOIN catalog.sample_lists l ON l.id = g.sample_list_id"))


def test_every_file_of_a_dataset_keeps_its_calls_of_a_variant_they_share(both_forms: Settings) -> None:
    shared_key = "GRCh38:chr1:100:A:G"
    sa = single_sample_batch("SA", [(100, "0/1"), (200, "1/1")])
    sb = single_sample_batch("SB", [(100, "1/1"), (300, "0/1")])
    elsewhere = single_sample_batch("SC", [(100, "0/1")], dataset="elsewhere")
    write(both_forms, [sa, sb, elsewhere])

    assert [(r["sample"], r["gt"]) for r in catalog.carriers(both_forms, shared_key, "twofiles")] == [
        ("SA", "0/1"), ("SB", "1/1")]
    assert [r["sample"] for r in catalog.carriers(both_forms, shared_key)] == ["SC", "SA", "SB"]  # by dataset
    assert [r["variant_key"] for r in catalog.shared_variants(both_forms, "SA", "SB", "twofiles")] == [shared_key]
    assert [r["variant_key"] for r in catalog.shared_variants(both_forms, "SB", "SA")] == [shared_key]
    assert catalog.shared_variants(both_forms, "SA", "SC") == []  # two datasets: not compared
    assert row_carriers(both_forms)[shared_key] == catalog.carriers(both_forms, shared_key)  # call rows too
    assert catalog.catalog_counts(both_forms, "twofiles") == {"variants": 3, "genotype_calls": 4, "call_rows": 4}


def test_writing_a_file_again_adds_no_packed_row_or_call_row(both_forms: Settings) -> None:
    batch = single_sample_batch("SA", [(100, "0/1"), (200, "1/1")])
    with open_store("catalog", both_forms) as store:
        store.write(batch)
        store.write(batch)  # a retried write
        assert store.last_write == {"variants": 0, "genotype_calls": 0, "call_rows": 0}
    with open_store("catalog", both_forms) as store:  # the file ingested again
        store.write(batch)
        assert store.last_write == {"variants": 0, "genotype_calls": 0, "call_rows": 0}
    assert packed_rows(both_forms) == [("GRCh38:chr1:100:A:G", "SA"), ("GRCh38:chr1:200:A:G", "SA")]
    assert catalog.catalog_counts(both_forms) == {"variants": 2, "genotype_calls": 2, "call_rows": 2}


def test_a_batch_whose_file_has_some_of_its_keys_writes_the_calls_of_the_rest_only(both_forms: Settings) -> None:
    def part(rows: slice, assembly: str = "GRCh38") -> AlleleBatch:
        full = trio_batch(assembly=assembly)
        return AlleleBatch(full.dataset, full.source_path, full.source_digest, full.samples, full.table[rows],
                           full.gt[rows], full.phased[rows], full.dp[rows], full.gq[rows])

    written = []
    with open_store("catalog", both_forms) as store:
        for batch in (part(slice(0, 2)), part(slice(None)),  # the second's packed COPY meets stored keys
                      part(slice(None)),  # looked up first: nothing left
                      part(slice(0, 2), "again"), part(slice(None), "again")):  # all new, then some stored
            store.write(batch)
            written.append((store.last_write["genotype_calls"], store.last_write["call_rows"]))
    assert written == [(6, 6), (8, 8), (0, 0), (6, 6), (8, 8)]  # rows 0-1 hold 6 called cells, rows 2-4 hold 8
    once = sql(both_forms, "SELECT count(*), count(DISTINCT (variant_key, sample)) FROM catalog.genotype_calls")
    assert once == [(28, 28)]
    assert len(packed_rows(both_forms)) == 10
    for assembly in ("GRCh38", "again"):  # what one write of the whole batch stores
        assert [r["sample"] for r in catalog.carriers(both_forms, f"{assembly}:chr1:300:G:GA")] == ["child", "father"]
