"""The three stores (PostgreSQL catalog, LanceDB, Kuzu) against real embedded backends.

Batches are built by hand (``make_batch``) so every expected count and answer can be checked
on paper; ``test_real_files_*`` then runs real VCFs through the reader.
"""

from __future__ import annotations

import hashlib
import importlib.util
import threading
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kuzu
import lancedb
import numpy as np
import orjson
import psycopg
import pyarrow as pa
import pytest
from paths import REAL, REPO
from psycopg.conninfo import make_conninfo
from pydantic import SecretStr

from vcfstream.errors import StoreError
from vcfstream.ledger import db
from vcfstream.model import ALLELE_SCHEMA, AlleleBatch, Chunk, ChunkSummary
from vcfstream.runtime import staging
from vcfstream.settings import Settings, load_settings
from vcfstream.stores import catalog, graph, lance
from vcfstream.stores.annotations import csq_fields_from_header, gene_links
from vcfstream.stores.base import file_lock, write_group
from vcfstream.stores.genotypes import called, carrying, gt_text, homozygous_alt
from vcfstream.stores.registry import open_store

# --- building batches by hand -----------------------------------------------------------------


@dataclass
class Allele:
    """One ALT allele row; ``gts`` are per-allele coded GT strings, one per sample."""

    contig: str
    pos: int
    ref: str
    alt: str
    gts: Sequence[str] = ()
    dp: Sequence[int] | None = None
    gq: Sequence[int] | None = None
    qual: float | None = 50.0
    af: float | None = None
    info: dict[str, Any] = field(default_factory=dict)
    allele_index: int = 1
    n_alts: int = 1


def variant_type(ref: str, alt: str) -> str:
    if alt.startswith("<"):
        return "symbolic"
    if len(ref) == len(alt):
        return "SNV" if len(ref) == 1 else "MNV"
    if len(ref) == 1:
        return "insertion"
    return "deletion" if len(alt) == 1 else "indel"


def parse_gt(text: str) -> tuple[list[int], bool]:
    phased = "|" in text
    slots = [-1 if part == "." else int(part) for part in text.replace("|", "/").split("/")]
    return slots + [-2] * (2 - len(slots)), phased


def make_batch(
    alleles: Sequence[Allele],
    samples: Sequence[str] = (),
    dataset: str = "cohort",
    assembly: str = "GRCh38",
    source: str = "cohort.vcf.gz",
) -> AlleleBatch:
    keys = [f"{assembly}:{a.contig}:{a.pos}:{a.ref}:{a.alt}" for a in alleles]
    table = pa.Table.from_pylist(
        [
            {
                "message_id": hashlib.md5(key.encode()).digest(), "variant_key": key, "assembly": assembly,
                "contig": a.contig, "pos": a.pos, "ref": a.ref, "alt": a.alt,
                "end": a.pos + len(a.ref) - 1, "variant_type": variant_type(a.ref, a.alt),
                "allele_index": a.allele_index, "n_alts": a.n_alts, "vcf_id": None, "qual": a.qual,
                "filters": ["PASS"], "info": orjson.dumps(a.info).decode(), "af": a.af, "line": None,
                "value": b"{}",
            }
            for key, a in zip(keys, alleles, strict=True)
        ],
        schema=ALLELE_SCHEMA,
    )  # fmt: skip
    n, s = len(alleles), len(samples)
    gt = np.full((n, s, 2), -1, dtype=np.int8)
    phased = np.zeros((n, s), dtype=bool)
    dp = np.full((n, s), -1, dtype=np.int32)
    gq = np.full((n, s), -1, dtype=np.int32)
    for i, a in enumerate(alleles):
        for j, text in enumerate(a.gts):
            gt[i, j], phased[i, j] = parse_gt(text)
        if a.dp is not None:
            dp[i] = a.dp
        if a.gq is not None:
            gq[i] = a.gq
    digest = hashlib.sha256(source.encode()).hexdigest()
    return AlleleBatch(dataset, source, digest, list(samples), table, gt, phased, dp, gq)


TRIO = ("mother", "father", "child")


def trio_batch(dataset: str = "trio", **kwargs: Any) -> AlleleBatch:
    """Five alleles, hand-checked: who carries what is spelled out in each row."""
    return make_batch(
        [
            Allele("chr1", 100, "A", "G", ("0/1", "0/0", "0/1"), dp=(30, 25, 28), gq=(99, 99, 60)),  # mother, child
            Allele("chr1", 200, "C", "T", ("1/1", "0/1", "1/1"), dp=(20, 22, 24), gq=(90, 80, 70)),  # all three
            Allele("chr1", 300, "G", "GA", ("0/0", "0|1", "0|1"), dp=(10, 12, 14)),  # father, child
            Allele("chr1", 400, "TCC", "T", ("./.", "0/0", "0/0")),  # nobody; mother not called
            Allele("chr2", 500, "A", "C", ("1/2", "2/2", "0/0"), allele_index=1, n_alts=2),  # mother only
        ],
        samples=TRIO,
        dataset=dataset,
        **kwargs,
    )


# --- settings and backends ----------------------------------------------------------------------


@pytest.fixture
def store_settings(tmp_path: Path) -> Settings:
    """LanceDB and Kuzu under this test's own directory."""
    return load_settings(home=tmp_path, lancedb={"uri": str(tmp_path / "lancedb")}, kuzu={"path": tmp_path / "graph.kuzu"})


@pytest.fixture
def pg_settings(services: Settings, store_settings: Settings) -> Iterator[Settings]:
    """A fresh, migrated database on the test services' server, so catalog counts are absolute."""
    with fresh_database(services, store_settings) as settings:
        yield settings


@contextmanager
def fresh_database(services: Settings, settings: Settings) -> Iterator[Settings]:
    """``settings`` with a new, migrated database of the services' PostgreSQL, dropped afterwards."""
    base = services.postgres_dsn()
    name = f"stores_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        fresh = settings.with_groups(postgres={"dsn": SecretStr(make_conninfo(base, dbname=name))})
        db.migrate(fresh)
        yield fresh
    finally:
        with psycopg.connect(base, autocommit=True) as admin:
            try:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except psycopg.errors.InsufficientPrivilege:
                # FORCE may not end an autovacuum worker (a superuser's process) in the new
                # database; a plain DROP cancels it and waits for it
                admin.execute(f'DROP DATABASE IF EXISTS "{name}"')


def sql(settings: Settings, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with db.connect(settings) as conn:
        return conn.execute(query, params).fetchall()


# --- genotype coding ------------------------------------------------------------------------------


def test_calls_and_carriers_follow_the_per_allele_coding() -> None:
    batch = trio_batch()
    assert called(batch.gt).tolist()[3] == [False, True, True]
    assert carrying(batch.gt).tolist() == [
        [True, False, True], [True, True, True], [False, True, True], [False, False, False], [True, False, False],
    ]  # fmt: skip
    assert homozygous_alt(batch.gt).tolist()[1] == [True, False, True]
    assert gt_text(batch.gt[2], batch.phased[2]).to_pylist() == ["0/0", "0|1", "0|1"]
    assert gt_text(np.array([[1, -2], [-1, 1]], np.int8), np.array([False, False])).to_pylist() == ["1", "./1"]


@pytest.mark.parametrize("ploidy", [0, 1, 2, 3])
def test_the_slot_loops_equal_numpys_reductions_over_the_ploidy_axis(ploidy: int) -> None:
    gt = np.random.default_rng(ploidy).integers(-2, 3, size=(400, 4, ploidy)).astype(np.int8)
    assert np.array_equal(called(gt), (gt >= 0).any(axis=2))
    assert np.array_equal(carrying(gt), (gt == 1).any(axis=2))
    assert np.array_equal(homozygous_alt(gt), (gt == 1).any(axis=2) & ((gt == 1) | (gt == -2)).all(axis=2))


# --- LanceDB ---------------------------------------------------------------------------------------


def test_lance_vector_holds_the_documented_features() -> None:
    vectors = lance.VariantFeatures().embed(trio_batch())
    assert vectors.shape == (5, 17) and vectors.dtype == np.float32
    snv, hom, insertion = vectors[0], vectors[1], vectors[2]
    named = dict(zip(lance.FEATURE_NAMES, snv, strict=True))
    assert named["class_SNV"] == 1 and named["transition"] == 1 and named["transversion"] == 0  # A>G
    assert named["allele_frequency"] == pytest.approx(2 / 6)  # two ALT alleles of six called
    assert named["carrier_fraction"] == pytest.approx(2 / 3)
    assert named["het_fraction"] == 1
    assert named["mean_dp"] == pytest.approx(np.log10(1 + 29) / 3)  # carriers' DP 30 and 28
    assert named["mean_gq"] == pytest.approx((99 + 60) / 2 / 99)
    assert dict(zip(lance.FEATURE_NAMES, hom, strict=True))["het_fraction"] == pytest.approx(1 / 3)
    assert dict(zip(lance.FEATURE_NAMES, insertion, strict=True))["class_insertion"] == 1
    assert dict(zip(lance.FEATURE_NAMES, vectors[3], strict=True))["missing_fraction"] == pytest.approx(1 / 3)
    assert dict(zip(lance.FEATURE_NAMES, vectors[4], strict=True))["transversion"] == 1  # A>C


def test_lance_rewriting_a_batch_adds_nothing(store_settings: Settings) -> None:
    store = lance.LanceStore(store_settings)
    assert store.write(trio_batch()) == 5
    assert store.write(trio_batch()) == 0
    assert store.write(trio_batch(dataset="another-cohort")) == 0  # keys are global
    assert lance.count_variants(store_settings) == 5


def test_lance_stores_a_key_repeated_within_a_batch_once(store_settings: Settings) -> None:
    twice = make_batch([Allele("chr1", 10, "A", "T"), Allele("chr1", 10, "A", "T"), Allele("chr1", 11, "C", "G")])
    assert lance.LanceStore(store_settings).write(twice) == 2
    assert lance.count_variants(store_settings) == 2


def test_similar_variants_ranks_by_feature_distance(store_settings: Settings) -> None:
    batch = make_batch(
        [
            Allele("chr1", 100, "A", "G", qual=60, af=0.5),
            Allele("chr1", 900, "C", "T", qual=61, af=0.5),  # transition, nearly the same: nearest
            Allele("chr1", 500, "A", "C", qual=60, af=0.5),  # transversion: next
            Allele("chr1", 700, "ATTT", "A", qual=60, af=0.5),  # deletion: farthest
        ]
    )
    lance.LanceStore(store_settings).write(batch)
    found = lance.similar_variants(store_settings, "GRCh38:chr1:100:A:G", k=3)
    assert [row["variant_key"] for row in found] == [
        "GRCh38:chr1:900:C:T", "GRCh38:chr1:500:A:C", "GRCh38:chr1:700:ATTT:A",
    ]  # fmt: skip
    assert found[0]["distance"] < found[1]["distance"] < found[2]["distance"]
    assert set(found[0]) == {"variant_key", "contig", "pos", "ref", "alt", "variant_type", "distance"}


def test_similar_variants_of_an_unknown_key_names_the_store(store_settings: Settings) -> None:
    lance.LanceStore(store_settings).write(trio_batch())
    with pytest.raises(StoreError, match=r"^lancedb: variant GRCh38:chrX:1:A:C is not stored"):
        lance.similar_variants(store_settings, "GRCh38:chrX:1:A:C")


def test_lance_builds_the_vector_index_once_past_the_threshold(store_settings: Settings) -> None:
    settings = store_settings.with_groups(lancedb={"index_min_rows": 600})
    rng = np.random.default_rng(7)
    store = lance.LanceStore(settings)
    for start in (0, 500):
        batch = make_batch(
            [Allele("chr3", start + i, "A", "G", qual=float(q)) for i, q in enumerate(rng.integers(1, 500, 500))]
        )
        store.write(batch)
        table = lancedb.connect(settings.lancedb_location).open_table(lance.TABLE)
        indexed = {index.columns[0] for index in table.list_indices()}
        assert ("vector" in indexed) == (start == 500)
    assert len(lance.similar_variants(settings, "GRCh38:chr3:10:A:G", k=5)) == 5


def test_lance_optimizes_once_new_rows_reach_a_quarter_of_the_indexed(
        store_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lance, "OPTIMIZE_MIN_ROWS", 50)
    store = lance.LanceStore(store_settings)

    def write_and_count_unindexed(start: int, n: int) -> int:
        store.write(make_batch([Allele("chr4", start + i, "A", "G") for i in range(n)]))
        table = lancedb.connect(store_settings.lancedb_location).open_table(lance.TABLE)
        return next(i for i in table.list_indices() if i.columns == ["variant_key"]).num_unindexed_rows

    assert write_and_count_unindexed(0, 400) == 0  # the key index is built on the first write
    assert write_and_count_unindexed(1000, 60) == 60  # 60 < 400 / 4: not yet
    assert write_and_count_unindexed(2000, 40) == 0  # 100 >= 400 / 4: optimized
    assert lance.count_variants(store_settings) == 500


def test_lance_adds_a_vector_index_delta_once_new_rows_reach_the_indexed(
        store_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lance, "OPTIMIZE_MIN_ROWS", 50)
    settings = store_settings.with_groups(lancedb={"index_min_rows": 400})
    store = lance.LanceStore(settings)
    rng = np.random.default_rng(3)

    def write_and_count_unindexed(start: int, n: int) -> dict[str, int]:
        quals = rng.integers(1, 500, n)
        store.write(make_batch([Allele("chr5", start + i, "A", "G", qual=float(q)) for i, q in enumerate(quals)]))
        table = lancedb.connect(settings.lancedb_location).open_table(lance.TABLE)
        return {index.columns[0]: index.num_unindexed_rows for index in table.list_indices()}

    assert write_and_count_unindexed(0, 400) == {"variant_key": 0, "vector": 0}  # both built
    assert write_and_count_unindexed(1000, 200) == {"variant_key": 0, "vector": 200}  # 200 < 400
    assert write_and_count_unindexed(2000, 250) == {"variant_key": 0, "vector": 0}  # 450 >= 400: a delta
    assert lance.count_variants(settings) == 850
    nearest = lance.similar_variants(settings, "GRCh38:chr5:2010:A:G", k=850)
    assert len(nearest) == 849  # every other row, the delta's included, is found


def test_lance_embedder_is_pluggable(store_settings: Settings) -> None:
    class Positions:
        dimension = 2

        def embed(self, batch: AlleleBatch) -> np.ndarray:
            pos = batch.table.column("pos").to_numpy().astype(np.float32)
            return np.stack([pos, np.zeros_like(pos)], axis=1)

    store = lance.LanceStore(store_settings, embedder=Positions())
    store.write(make_batch([Allele("chr1", p, "A", "G") for p in (10, 12, 50)]))
    assert [r["pos"] for r in lance.similar_variants(store_settings, "GRCh38:chr1:10:A:G", k=2)] == [12, 50]


def test_lance_embedder_of_the_wrong_shape_fails_naming_the_store(store_settings: Settings) -> None:
    class Broken:
        dimension = 4

        def embed(self, batch: AlleleBatch) -> np.ndarray:
            return np.zeros((len(batch), 3), np.float32)

    with pytest.raises(StoreError, match=r"^lancedb: embedder returned shape \(5, 3\)") as failure:
        lance.LanceStore(store_settings, embedder=Broken()).write(trio_batch())
    assert failure.value.store == "lancedb"


# --- Kuzu -----------------------------------------------------------------------------------------


def test_kuzu_rewriting_a_batch_adds_no_node_or_edge(store_settings: Settings) -> None:
    store = graph.GraphStore(store_settings)
    assert store.write(trio_batch()) == 5
    first = graph.graph_counts(store_settings)
    assert first == {
        "Dataset": 1, "Sample": 3, "Variant": 5, "Gene": 0, "CARRIED_BY": 8, "IN_DATASET": 3, "IN_GENE": 0,
    }  # fmt: skip
    assert store.write(trio_batch()) == 0
    assert store.last_write["carried_by"] == 0
    assert graph.graph_counts(store_settings) == first


def test_carriers_and_shared_variants_on_a_trio(store_settings: Settings) -> None:
    graph.GraphStore(store_settings).write(trio_batch())
    assert graph.carriers(store_settings, "GRCh38:chr1:100:A:G") == [
        {"sample": "child", "dataset": "trio", "gt": "0/1", "phased": False, "dp": 28, "gq": 60},
        {"sample": "mother", "dataset": "trio", "gt": "0/1", "phased": False, "dp": 30, "gq": 99},
    ]
    assert [r["sample"] for r in graph.carriers(store_settings, "GRCh38:chr2:500:A:C")] == ["mother"]
    assert graph.carriers(store_settings, "GRCh38:chr1:400:TCC:T") == []
    shared = graph.shared_variants(store_settings, "mother", "child")
    assert [r["variant_key"] for r in shared] == ["GRCh38:chr1:100:A:G", "GRCh38:chr1:200:C:T"]
    assert [r["pos"] for r in graph.shared_variants(store_settings, "father", "child")] == [200, 300]
    assert graph.shared_variants(store_settings, "mother", "child", dataset="elsewhere") == []


def test_kuzu_keeps_the_calls_of_two_datasets_apart(store_settings: Settings) -> None:
    store = graph.GraphStore(store_settings)
    store.write(trio_batch(dataset="first"))
    again = make_batch([Allele("chr1", 100, "A", "G", ("1/1", "0/0"))], samples=("mother", "stranger"), dataset="second")
    assert store.write(again) == 0  # the variant exists; only the new dataset's edge is added
    assert store.last_write["carried_by"] == 1
    rows = graph.carriers(store_settings, "GRCh38:chr1:100:A:G")
    assert [(r["dataset"], r["sample"], r["gt"]) for r in rows] == [
        ("first", "child", "0/1"), ("first", "mother", "0/1"), ("second", "mother", "1/1"),
    ]  # fmt: skip
    assert [r["sample"] for r in graph.carriers(store_settings, "GRCh38:chr1:100:A:G", dataset="second")] == ["mother"]
    counts = graph.graph_counts(store_settings)
    assert (counts["Sample"], counts["Dataset"], counts["IN_DATASET"]) == (4, 2, 5)


def variants_per_table(settings: Settings) -> dict[str, int]:
    """Variant nodes in each table of the graph's series, read from Kuzu directly."""
    database = kuzu.Database(str(settings.kuzu_location), read_only=True)
    try:
        rows = kuzu.Connection(database).execute(
            "MATCH (v) WHERE label(v) STARTS WITH 'Variant' RETURN label(v), count(v)").get_all()
    finally:
        database.close()
    return dict(rows)


def test_new_variants_past_a_tables_bound_go_to_the_next_table_and_every_table_is_read(
        store_settings: Settings) -> None:
    settings = store_settings.with_groups(kuzu={"variants_per_table": 2})
    store = graph.GraphStore(settings)
    assert store.write(trio_batch()) == 5  # one part: a table may pass its bound by one part
    ann = ["G|missense_variant|MODERATE|GENE1|ENSG1|transcript|ENST1|protein_coding|1/2|c.1A>G|||||"]
    for pos in (600, 700, 800):  # 5 + 1 > 2: Variant_1; 1 + 1: Variant_1 still; then Variant_2
        store.write(make_batch([Allele("chr3", pos, "A", "G", ("0/1", "0/0", "0/0"), info={"ANN": ann})], samples=TRIO))
    # a second dataset: an edge beside chr1:200 (in Variant), a new variant (Variant_2)
    second = make_batch([Allele("chr1", 200, "C", "T", ("0/1",)), Allele("chr4", 900, "T", "C", ("1/1",))],
                        samples=("stranger",), dataset="second")
    assert store.write(second) == 1
    assert store.last_write["carried_by"] == 2
    assert variants_per_table(settings) == {"Variant": 5, "Variant_1": 2, "Variant_2": 2}

    assert [(r["dataset"], r["sample"]) for r in graph.carriers(settings, "GRCh38:chr1:200:C:T")] == [
        ("second", "stranger"), ("trio", "child"), ("trio", "father"), ("trio", "mother")]
    assert [r["sample"] for r in graph.carriers(settings, "GRCh38:chr4:900:T:C")] == ["stranger"]
    assert [r["sample"] for r in graph.carriers(settings, "GRCh38:chr3:800:A:G")] == ["mother"]
    assert [r["pos"] for r in graph.shared_variants(settings, "mother", "stranger")] == [200]
    assert [r["pos"] for r in graph.shared_variants(settings, "mother", "child")] == [100, 200]
    assert [g["gene_id"] for g in graph.variant_genes(settings, "GRCh38:chr3:800:A:G")] == ["ENSG1"]
    counts = graph.graph_counts(settings)
    assert (counts["Variant"], counts["CARRIED_BY"], counts["IN_GENE"], counts["Gene"]) == (9, 8 + 3 + 2, 3, 1)

    for batch in (trio_batch(), second):  # nothing stored twice, whichever table holds it
        assert store.write(batch) == 0
        assert store.last_write["carried_by"] == 0
    assert graph.graph_counts(settings) == counts


def test_a_variant_table_also_ends_at_its_edge_bound(store_settings: Settings) -> None:
    settings = store_settings.with_groups(kuzu={"edges_per_table": 4})
    store = graph.GraphStore(settings)
    store.write(trio_batch())  # 8 edges: one part, one table
    store.write(make_batch([Allele("chr3", 600, "A", "G", ("0/1", "1/1", "0/0"))], samples=TRIO))  # 8 + 2 > 4
    store.write(make_batch([Allele("chr3", 700, "A", "G", ("0/0", "0/0", "0/0"))], samples=TRIO))  # 2 + 0: room
    store.write(make_batch([Allele("chr3", 800, "A", "G", ("0/1", "0/1", "0/1"))], samples=TRIO))  # 2 + 3 > 4
    assert variants_per_table(settings) == {"Variant": 5, "Variant_1": 2, "Variant_2": 1}
    assert [r["sample"] for r in graph.carriers(settings, "GRCh38:chr3:800:A:G")] == ["child", "father", "mother"]
    assert graph.graph_counts(settings)["CARRIED_BY"] == 8 + 2 + 3


def test_snpeff_ann_links_variants_to_genes(store_settings: Settings) -> None:
    ann = [
        "G|missense_variant|MODERATE|GENE1|ENSG1|transcript|ENST1|protein_coding|1/2|c.1A>G|p.K1E||||",
        "G|splice_region_variant|LOW|GENE1|ENSG1|transcript|ENST2|protein_coding|1/2|c.1A>G|||||",
        "G|upstream_gene_variant|MODIFIER|GENE2|ENSG2|transcript|ENST3|protein_coding||c.-100A>G|||||",
        "T|stop_gained|HIGH|GENE3|ENSG3|transcript|ENST4|protein_coding|1/2|c.1A>T|||||",  # the other ALT
    ]
    batch = make_batch([Allele("chr1", 100, "A", "G", info={"ANN": ann}, n_alts=2)])
    store = graph.GraphStore(store_settings)
    store.write(batch)
    assert store.last_write == {"variants": 1, "genes": 2, "in_gene": 2, "carried_by": 0}
    links = gene_links(batch.table).to_pylist()
    assert links == [
        {"variant_key": "GRCh38:chr1:100:A:G", "gene_id": "ENSG1", "gene_name": "GENE1",
         "consequence": "missense_variant&splice_region_variant", "impact": "MODERATE"},
        {"variant_key": "GRCh38:chr1:100:A:G", "gene_id": "ENSG2", "gene_name": "GENE2",
         "consequence": "upstream_gene_variant", "impact": "MODIFIER"},
    ]  # fmt: skip
    assert graph.variant_genes(store_settings, "GRCh38:chr1:100:A:G") == [
        {key: link[key] for key in ("gene_id", "gene_name", "consequence", "impact")} for link in links
    ]
    store.write(make_batch([Allele("chr1", 150, "C", "T", info={"ANN": ["T|intron_variant|MODIFIER|GENE1|ENSG1|"]})]))
    assert graph.graph_counts(store_settings)["Gene"] == 2  # GENE1 is not added twice


def test_vep_csq_is_read_in_the_header_field_order() -> None:
    header = (
        '##INFO=<ID=CSQ,Number=.,Type=String,Description="Consequence annotations from Ensembl VEP. '
        'Format: Allele|Gene|SYMBOL|IMPACT|Consequence|ALLELE_NUM">\n'
    )
    fields = csq_fields_from_header(header)
    assert fields == ["Allele", "Gene", "SYMBOL", "IMPACT", "Consequence", "ALLELE_NUM"]
    batch = make_batch(
        [
            Allele("chr1", 100, "AT", "A", info={"CSQ": ["-|ENSG9|GENE9|HIGH|frameshift_variant|1",
                                                         "C|ENSG8|GENE8|LOW|synonymous_variant|2"]},
                   allele_index=1, n_alts=2),
        ]
    )  # fmt: skip
    assert gene_links(batch.table, fields).to_pylist() == [
        {"variant_key": "GRCh38:chr1:100:AT:A", "gene_id": "ENSG9", "gene_name": "GENE9",
         "consequence": "frameshift_variant", "impact": "HIGH"},
    ]  # fmt: skip


def test_kuzu_writers_take_turns(store_settings: Settings) -> None:
    batches = [
        make_batch([Allele(f"chr{w}", p, "A", "G", ("0/1", "1/1")) for p in range(1, 201)], samples=("a", "b"))
        for w in range(4)
    ]
    errors: list[BaseException] = []

    def write(batch: AlleleBatch) -> None:
        try:
            graph.GraphStore(store_settings).write(batch)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(b,)) for b in batches + batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    counts = graph.graph_counts(store_settings)
    assert (counts["Variant"], counts["CARRIED_BY"]) == (800, 1600)


def test_kuzu_lock_timeout_fails_naming_the_store(store_settings: Settings) -> None:
    settings = store_settings.with_groups(kuzu={"lock_timeout_s": 0.2})
    lock = Path(settings.kuzu_location).with_name("graph.kuzu.lock")
    with file_lock(lock, store="test"):
        with pytest.raises(StoreError, match=r"^kuzu: .*still locked") as failure:
            graph.GraphStore(settings).write(trio_batch())
    assert failure.value.store == "kuzu"


def test_graph_queries_on_an_empty_location_return_nothing(store_settings: Settings) -> None:
    assert graph.carriers(store_settings, "GRCh38:chr1:1:A:C") == []
    assert graph.shared_variants(store_settings, "a", "b") == []


# --- PostgreSQL catalog ----------------------------------------------------------------------------


def test_catalog_rewriting_a_batch_adds_nothing(pg_settings: Settings) -> None:
    store = catalog.CatalogStore(pg_settings)
    try:
        assert store.write(trio_batch()) == 5
        assert store.last_write == {"variants": 5, "genotype_calls": 14, "call_rows": 0}  # 15 cells, one uncalled
        assert store.write(trio_batch()) == 0
        assert store.last_write == {"variants": 0, "genotype_calls": 0, "call_rows": 0}
    finally:
        store.close()
    assert catalog.catalog_counts(pg_settings) == {"variants": 5, "genotype_calls": 14, "call_rows": 0}
    rows = sql(pg_settings, "SELECT sample, gt, phased, dp, gq FROM catalog.genotype_call_rows "
               "WHERE variant_key = 'GRCh38:chr1:300:G:GA' ORDER BY sample")  # fmt: skip
    assert rows == [("child", "0|1", True, 14, None), ("father", "0|1", True, 12, None), ("mother", "0/0", False, 10, None)]
    variant = sql(pg_settings, "SELECT contig, pos, ref, alt, variant_type, filters, info "
                  "FROM catalog.variants WHERE variant_key = 'GRCh38:chr2:500:A:C'")  # fmt: skip
    assert variant == [("chr2", 500, "A", "C", "SNV", ["PASS"], {})]


def test_catalog_stores_the_same_rows_whether_copied_straight_or_staged(pg_settings: Settings) -> None:
    """A batch of new keys is COPYed straight into variants; one holding a stored key fails that
    COPY and goes through the staging table. Both must store the same rows and calls."""
    filters = [["PASS"], ["q10", 's"50'], None, [], ["a,b"]]

    def batch(assembly: str, rows: slice = slice(None)) -> AlleleBatch:
        full = trio_batch(assembly=assembly)
        table = full.table.set_column(full.table.schema.get_field_index("filters"), "filters",
                                      pa.array(filters, pa.list_(pa.string())))
        return AlleleBatch(full.dataset, full.source_path, full.source_digest, full.samples, table[rows],
                           full.gt[rows], full.phased[rows], full.dp[rows], full.gq[rows])

    with open_store("catalog", pg_settings) as store:
        assert store.write(batch("straight")) == 5
        assert store.write(batch("staged", slice(0, 1))) == 1
        assert store.write(batch("staged")) == 4  # its first key is stored: the staged path
        assert store.last_write == {"variants": 4, "genotype_calls": 11, "call_rows": 0}
        assert store.write(batch("again")) == 5

    def stored(assembly: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        variants = sql(pg_settings, "SELECT contig, pos, ref, alt, end_pos, variant_type, vcf_id, qual, filters, info, "
                       "dataset, calls_loaded FROM catalog.variants WHERE assembly = %s ORDER BY pos", assembly)
        calls = sql(pg_settings, "SELECT split_part(variant_key, ':', 3), sample, gt, phased, dp, gq "
                    "FROM catalog.genotype_call_rows WHERE variant_key LIKE %s ORDER BY 1, 2", f"{assembly}:%")
        return variants, calls

    assert stored("straight") == stored("staged") == stored("again")
    assert [row[8] for row in stored("straight")[0]] == filters
    assert catalog.catalog_counts(pg_settings, "trio") == {"variants": 15, "genotype_calls": 42, "call_rows": 0}


def test_catalog_keeps_each_datasets_calls(pg_settings: Settings) -> None:
    with open_store("catalog", pg_settings) as store:
        store.write(trio_batch(dataset="first"))
        assert store.write(trio_batch(dataset="second")) == 0
    assert catalog.catalog_counts(pg_settings, "second") == {"variants": 5, "genotype_calls": 14, "call_rows": 0}
    assert catalog.catalog_counts(pg_settings) == {"variants": 5, "genotype_calls": 28, "call_rows": 0}


def test_catalog_genotypes_can_be_switched_off(pg_settings: Settings) -> None:
    settings = pg_settings.with_groups(stores={"genotypes": False})
    with open_store("catalog", settings) as store:
        assert store.write(trio_batch(dataset="sites")) == 5
    assert catalog.catalog_counts(settings) == {"variants": 5, "genotype_calls": 0, "call_rows": 0}
    assert sql(settings, "SELECT store_genotypes FROM catalog.datasets WHERE name = 'sites'") == [(False,)]


def test_calls_switched_on_later_are_loaded_once(pg_settings: Settings) -> None:
    with open_store("catalog", pg_settings.with_groups(stores={"genotypes": False})) as store:
        store.write(trio_batch())
    with open_store("catalog", pg_settings) as store:
        store.write(trio_batch())
        store.write(trio_batch())
    assert catalog.catalog_counts(pg_settings, "trio") == {"variants": 5, "genotype_calls": 14, "call_rows": 0}


def test_concurrent_catalog_writers_never_duplicate_a_call(pg_settings: Settings) -> None:
    batches = [trio_batch(dataset=name) for name in ("first", "first", "second", "second", "first")]

    def write(batch: AlleleBatch) -> int:
        with open_store("catalog", pg_settings) as store:
            return store.write(batch)

    with ThreadPoolExecutor(len(batches)) as pool:
        new = sum(pool.map(write, batches))
    assert new == 5
    assert catalog.catalog_counts(pg_settings, "first") == {"variants": 5, "genotype_calls": 14, "call_rows": 0}
    assert catalog.catalog_counts(pg_settings, "second") == {"variants": 5, "genotype_calls": 14, "call_rows": 0}


@dataclass
class FakeSource:
    path: str
    size: int = 1234
    digest: str = "ab" * 32
    format: str = "vcf.gz"
    header_text: str = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tmother\n"
    samples: list[str] = field(default_factory=lambda: ["mother"])


def test_a_file_recorded_twice_is_one_row_with_both_times(pg_settings: Settings) -> None:
    first = catalog.record_source_file(pg_settings, "trio", FakeSource("/data/a.vcf.gz"))
    again = catalog.record_source_file(pg_settings, "trio", FakeSource("/moved/a.vcf.gz"), status="ingested")
    assert first == again
    rows = sql(pg_settings, "SELECT path, status, samples, first_ingested_at < last_ingested_at "
               "FROM catalog.source_files")  # fmt: skip
    assert rows == [("/moved/a.vcf.gz", "ingested", ["mother"], True)]


def test_runs_and_chunks_are_recorded_and_rerecorded(pg_settings: Settings) -> None:
    source = FakeSource("/data/a.vcf.gz")
    catalog.start_run(pg_settings, "run-1", "trio", {"paths": [source.path], "chunk_size": 50_000})
    catalog.record_source_file(pg_settings, "trio", source)
    chunk = Chunk(path=source.path, index=0, digest=source.digest, regions=(("chr1", 0, 1000),))
    summary = ChunkSummary(records=9, alleles=10, new=10)
    summary.published["kafka"] += 10
    summary.stored["catalog"] += 10
    catalog.record_chunk(pg_settings, "trio", chunk, summary, state="Completed", flow_run_id="run-1")
    catalog.record_chunk(pg_settings, "trio", chunk, summary, state="Completed", flow_run_id="run-1")
    catalog.finish_run(pg_settings, "run-1", "Completed", summary)
    assert sql(pg_settings, "SELECT extent, alleles, platforms, stored, state FROM catalog.chunks") == [
        ("chr1:1-1000", 10, ["kafka"], {"catalog": 10}, "Completed")
    ]
    state, ended, alleles = sql(
        pg_settings, "SELECT state, ended_at IS NOT NULL, summary->>'alleles' FROM catalog.ingestion_runs"
    )[0]
    assert (state, ended, alleles) == ("Completed", True, "10")


def test_a_chunk_of_an_unrecorded_file_is_refused(pg_settings: Settings) -> None:
    chunk = Chunk(path="/data/unknown.vcf", index=0, digest="cd" * 32)
    with pytest.raises(StoreError, match=r"^catalog: /data/unknown\.vcf .* call record_source_file"):
        catalog.record_chunk(pg_settings, "trio", chunk, ChunkSummary(), state="Completed")


def test_an_unreachable_catalog_fails_naming_the_store(store_settings: Settings) -> None:
    settings = store_settings.with_groups(postgres={"dsn": SecretStr("postgresql://nobody@127.0.0.1:9/none")})
    with pytest.raises(StoreError, match=r"^catalog: PostgreSQL unreachable") as failure:
        catalog.CatalogStore(settings)
    assert failure.value.store == "catalog"


@pytest.mark.slow
def test_the_graph_grows_past_what_its_buffer_pool_could_hash_whole(tmp_path: Path) -> None:
    """Kuzu hashes the Variant side of a key lookup in its buffer pool. Seven datasets of 100k
    alleles over the same positions, in a 64 MiB pool: hashing every Variant node, the 5th write
    failed ("the buffer pool is full"); hashing those in the batch's positions, also; in windows
    of a bounded number of nodes, none does (at the default 1 GiB the first failure came at 8.5M)."""
    spec = importlib.util.spec_from_file_location("bench_stores", REPO / "bench" / "bench_stores.py")
    assert spec is not None and spec.loader is not None
    bench_stores = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_stores)
    batches = [bench_stores.synthetic_batches(100_000, 3, 100_000, seed=seed)[0] for seed in range(1, 8)]
    settings = load_settings(home=tmp_path, kuzu={"path": tmp_path / "graph.kuzu", "buffer_pool_mb": 64})
    store = graph.GraphStore(settings)
    new = [store.write(batch) for batch in batches]
    keys = set().union(*(batch.table.column("variant_key").to_pylist() for batch in batches))
    assert sum(new) == len(keys) == graph.graph_counts(settings)["Variant"]
    assert store.write(batches[3]) == 0 and store.last_write["carried_by"] == 0  # written again: all found
    tiny = settings.with_groups(kuzu={"path": tmp_path / "tiny.kuzu", "buffer_pool_mb": 8})
    with pytest.raises(StoreError, match=r"failed \(raise VCFSTREAM_KUZU_BUFFER_POOL_MB, now 8\): Buffer manager"):
        graph.GraphStore(tiny).write(batches[0])  # a pool too small says which setting to raise


def test_an_empty_batch_adds_no_variant_or_call_anywhere(pg_settings: Settings) -> None:
    empty = make_batch([], samples=TRIO)
    for name in ("catalog", "lancedb", "kuzu"):
        with open_store(name, pg_settings) as store:
            assert store.write(empty) == 0
    assert catalog.catalog_counts(pg_settings) == {"variants": 0, "genotype_calls": 0, "call_rows": 0}
    assert lance.count_variants(pg_settings) == 0
    counts = graph.graph_counts(pg_settings)  # the dataset and its samples are recorded all the same
    assert {k: counts[k] for k in ("Variant", "Gene", "CARRIED_BY", "IN_GENE")} == dict.fromkeys(
        ("Variant", "Gene", "CARRIED_BY", "IN_GENE"), 0)
    assert (counts["Dataset"], counts["Sample"], counts["IN_DATASET"]) == (1, len(TRIO), len(TRIO))


# --- staged chunks, written in groups -----------------------------------------------------------


def stage_trio_in_two_chunks(stage_dir: Path) -> list[str]:
    """The trio batch staged as two chunks of one file; the second with one-slot (haploid-wide)
    genotype matrices, as a chunk holding only haploid calls has."""
    batch = trio_batch()
    first = AlleleBatch(batch.dataset, batch.source_path, batch.source_digest, batch.samples,
                        batch.table.slice(0, 3), batch.gt[:3], batch.phased[:3], batch.dp[:3], batch.gq[:3])
    second = AlleleBatch(batch.dataset, batch.source_path, batch.source_digest, batch.samples,
                         batch.table.slice(3), batch.gt[3:, :, :1], batch.phased[3:], batch.dp[3:], batch.gq[3:])
    return [staging.stage_batch(part, stage_dir, Chunk(path=batch.source_path, index=i, digest=batch.source_digest))
            for i, part in enumerate((first, second))]


def test_staged_chunks_of_one_file_load_as_one_batch_in_order(tmp_path: Path) -> None:
    [batch] = staging.load_group(stage_trio_in_two_chunks(tmp_path))
    trio = trio_batch()
    assert batch.csq_fields is None
    assert batch.table.column("variant_key").to_pylist() == trio.table.column("variant_key").to_pylist()
    assert batch.gt.shape == (5, 3, 2)
    assert (batch.gt[:3] == trio.gt[:3]).all()
    assert (batch.gt[3:, :, 0] == trio.gt[3:, :, 0]).all() and (batch.gt[3:, :, 1] == -2).all()  # padded
    assert (batch.dp == trio.dp).all() and (batch.phased == trio.phased).all()


def test_a_group_writes_what_its_chunks_would_write_one_by_one(
        pg_settings: Settings, services: Settings, tmp_path: Path) -> None:
    paths = stage_trio_in_two_chunks(tmp_path / "staged")
    [batch] = staging.load_group(paths)
    written = {}
    for name in ("catalog", "lancedb", "kuzu"):
        with open_store(name, pg_settings) as store:
            written[name] = store.write(batch)
    assert written == {"catalog": 5, "lancedb": 5, "kuzu": 5}
    assert catalog.catalog_counts(pg_settings, "trio") == {"variants": 5, "genotype_calls": 14, "call_rows": 0}  # one "./." missing
    assert graph.graph_counts(pg_settings)["CARRIED_BY"] == 2 + 3 + 2 + 0 + 1  # carriers per row, as in trio_batch

    apart = load_settings(home=tmp_path / "apart", lancedb={"uri": str(tmp_path / "apart" / "lancedb")}, kuzu={"path": tmp_path / "apart" / "graph.kuzu"})
    with fresh_database(services, apart) as apart:
        for path in paths:  # each chunk on its own, as the stores wrote chunks before groups
            [chunk] = staging.load_group([path])
            for name in ("catalog", "lancedb", "kuzu"):
                with open_store(name, apart) as store:
                    store.write(chunk)
        assert _stored(apart) == _stored(pg_settings)


def test_a_group_of_several_files_writes_what_each_file_would_write_alone(
        pg_settings: Settings, services: Settings, tmp_path: Path) -> None:
    """Single-sample files sharing variants: one write per store for the group, the same content
    as a write per file, and every file's carriers kept."""
    one = make_batch([Allele("chr1", 100, "A", "G", ("0/1",), dp=(30,)), Allele("chr1", 200, "C", "T", ("1/1",))],
                     samples=["s1"], dataset="cohort", source="s1.g.vcf.gz")
    two = make_batch([Allele("chr1", 100, "A", "G", ("1/1",), dp=(12,)), Allele("chr1", 300, "G", "GA", ("0/0",))],
                     samples=["s2"], dataset="cohort", source="s2.g.vcf.gz")
    paths = [staging.stage_batch(batch, tmp_path / "staged", Chunk(path=batch.source_path, index=0,
                                                                  digest=batch.source_digest))
             for batch in (one, two)]
    batches = staging.load_group(paths)
    assert [batch.samples for batch in batches] == [["s1"], ["s2"]]
    written = {}
    for name in ("catalog", "lancedb", "kuzu"):
        with open_store(name, pg_settings) as store:
            written[name] = write_group(store, batches)
    assert written == {"catalog": 3, "lancedb": 3, "kuzu": 3}  # three distinct keys
    shared_key = "GRCh38:chr1:100:A:G"
    assert [(c["sample"], c["gt"], c["dp"]) for c in graph.carriers(pg_settings, shared_key)] == [
        ("s1", "0/1", 30), ("s2", "1/1", 12)]

    apart = load_settings(home=tmp_path / "apart", lancedb={"uri": str(tmp_path / "apart" / "lancedb")},
                          kuzu={"path": tmp_path / "apart" / "graph.kuzu"})
    with fresh_database(services, apart) as apart:
        for path in paths:  # a write per file, as the stores wrote a cohort's files before
            [batch] = staging.load_group([path])
            for name in ("catalog", "lancedb", "kuzu"):
                with open_store(name, apart) as store:
                    store.write(batch)
        assert _stored(apart) == _stored(pg_settings)


def test_a_kuzu_part_never_passes_its_edge_bound_across_files(tmp_path: Path) -> None:
    """Parts are cut by carrier edges whichever file they come from; each key once per part."""
    batches = [make_batch([Allele("chr1", pos, "A", "G", ("0/1", "1/1")) for pos in (100, 200, 300)],
                          samples=[f"{name}1", f"{name}2"], source=f"{name}.vcf.gz") for name in ("a", "b", "c")]
    parts = list(graph._parts(batches, most_edges=4))
    assert [part.edges.num_rows for part in parts] == [4, 4, 4, 4, 2]  # 18 edges, 2 a row
    assert all(len(set(part.table.column("variant_key").to_pylist())) == part.table.num_rows for part in parts)
    assert sum(part.edges.num_rows for part in parts) == 18


def _stored(settings: Settings) -> dict[str, Any]:
    """Every store's content, without write times: catalog rows, feature vectors, graph edges."""
    vectors = lancedb.connect(settings.lancedb.uri).open_table("variants").to_arrow().sort_by("variant_key")
    return {
        "variants": sql(settings, "SELECT variant_key, assembly, contig, pos, ref, alt, end_pos, variant_type, vcf_id,"
                                  " qual, filters, info, dataset, source_sha256, calls_loaded"
                                  " FROM catalog.variants ORDER BY 1"),
        "calls": sql(settings, "SELECT * FROM catalog.genotype_call_rows ORDER BY 1, 2, 3"),
        "vectors": vectors.drop_columns([c for c in vectors.column_names if c not in ("variant_key", "vector")]),
        "graph": graph.graph_counts(settings),
        "carriers": {key: graph.carriers(settings, key) for key in vectors.column("variant_key").to_pylist()},
    }


def staged(name: str, alleles: int, source: str = "f1", cells: int = 0) -> staging.Staged:
    return staging.Staged(f"/staging/run/{name}.arrow", alleles, source, cells=cells)


def paths_of(group: list[staging.Staged]) -> list[str]:
    return [item.path.removeprefix("/staging/run/").removesuffix(".arrow") for item in group]


def test_a_store_takes_the_queued_chunks_of_any_file_up_to_the_limits(tmp_path: Path) -> None:
    queue = staging.StoreQueue(["catalog", "kuzu"], tmp_path, batch_alleles=100, batch_cells=1_000)
    for item in (staged("a", 40), staged("b", 40), staged("c", 40), staged("d", 10, source="f2")):
        queue.add(item)
    assert paths_of(queue.take("kuzu")) == ["a", "b"]  # c: over 100 alleles
    assert paths_of(queue.take("kuzu")) == ["c", "d"]  # d is another file: one write all the same
    assert queue.take("kuzu") == [] and queue.stores_with_work() == ["catalog"]
    assert not queue.lagging()  # catalog has 130 alleles queued: one group, chunks go on
    queue.add(staged("e", 500))
    assert queue.lagging()  # two groups' worth: new chunks wait for catalog
    assert paths_of(queue.take("kuzu")) == ["e"]  # one chunk over the limit still goes
    for name in ("w1", "w2", "w3"):  # a wide file: few alleles, many cells
        queue.add(staged(name, 4, source="wide", cells=600))
    assert paths_of(queue.take("kuzu")) == ["w1"]  # w2 would pass 1,000 cells
    assert paths_of(queue.take("kuzu")) == ["w2"]


def test_queued_cells_alone_make_a_store_lag(tmp_path: Path) -> None:
    queue = staging.StoreQueue(["kuzu"], tmp_path, batch_alleles=100, batch_cells=1_000)
    queue.add(staged("w1", 5, cells=1_500))
    assert not queue.lagging()
    queue.add(staged("w2", 5, cells=1_500))
    assert queue.lagging()  # 10 alleles, but 3,000 cells: two groups' worth


def test_a_group_waits_for_more_chunks_until_it_is_full_or_the_runs_chunks_are_done(tmp_path: Path) -> None:
    queue = staging.StoreQueue(["kuzu"], tmp_path, batch_alleles=100)
    queue.expect("f1", chunks=4)
    queue.expect("f2", chunks=1)
    queue.add(staged("a", 40))
    assert queue.take("kuzu") == []  # 40 of 100, three chunks of f1 to come
    queue.add(staged("b", 40))
    queue.drop("f1")  # a chunk with nothing new
    assert queue.take("kuzu") == []  # 80 of 100, chunks to come
    queue.add(staged("c", 40))
    assert paths_of(queue.take("kuzu")) == ["a", "b"]  # full
    assert queue.take("kuzu") == []  # f1 is done, but f2's chunk may join c's group
    queue.add(staged("d", 10, source="f2"))
    assert paths_of(queue.take("kuzu")) == ["c", "d"]  # no chunk to come: the last group goes
    assert not queue


def test_a_store_whose_write_failed_gets_no_more_chunks_and_holds_none_back(tmp_path: Path) -> None:
    queue = staging.StoreQueue(["catalog", "kuzu"], tmp_path, batch_alleles=50)
    for item in (staged("a", 50), staged("b", 50), staged("c", 50)):
        queue.add(item)
    for _ in range(3):
        queue.finish("catalog", queue.take("catalog"), written=50)
    failed = queue.take("kuzu")  # a: its task fails after its retries
    assert queue.lagging()  # kuzu has b and c queued: two groups' worth
    assert queue.abandon("kuzu") == 2
    assert not queue.lagging() and not queue
    queue.add(staged("d", 50))
    assert queue.take("kuzu") == [] and [i.path for i in queue.take("catalog")] == ["/staging/run/d.arrow"]

    retry = staging.StoreQueue(["catalog", "kuzu"], tmp_path, batch_alleles=200)  # a, b, c, d unrecorded for kuzu
    for item in (*failed, staged("b", 50), staged("c", 50), staged("d", 50)):
        retry.add(item)
    assert [i.path for i in retry.take("kuzu")] == [f"/staging/run/{n}.arrow" for n in "abcd"]


def test_a_retried_run_skips_the_groups_each_store_finished_and_reports_their_counts(tmp_path: Path) -> None:
    chunks = [staged("a", 40), staged("b", 40), staged("c", 40)]
    first = staging.StoreQueue(["catalog", "kuzu"], tmp_path, batch_alleles=80)
    for item in chunks:
        first.add(item)
    first.finish("catalog", first.take("catalog"), written=75)  # a, b
    first.finish("catalog", first.take("catalog"), written=40)  # c
    first.finish("kuzu", first.take("kuzu"), written=80)  # a, b; then the run failed before c
    with open(tmp_path / "stored" / "kuzu.jsonl", "ab") as torn:
        torn.write(b'{"files": ["c.arr')  # a crash while recording c: c is written again

    retry = staging.StoreQueue(["catalog", "kuzu"], tmp_path, batch_alleles=80)
    for item in chunks:
        retry.add(item)
    assert retry.earlier == {"catalog": 115, "kuzu": 80}
    assert retry.stores_with_work() == ["kuzu"]
    assert [i.path for i in retry.take("kuzu")] == ["/staging/run/c.arrow"]


# --- real files, through the reader ------------------------------------------------------------

GVCF_PLACEHOLDERS = {"<NON_REF>", "<*>", "."}


def pysam_counts(path: Path) -> dict[str, int]:
    """Alleles, non-missing calls and carriers counted straight from the file with pysam."""
    import pysam

    counts = {"alleles": 0, "calls": 0, "carriers": 0}
    with pysam.VariantFile(str(path)) as vcf:
        for record in vcf:
            for index, alt in enumerate(record.alts or (), start=1):
                if alt in GVCF_PLACEHOLDERS:
                    continue
                counts["alleles"] += 1
                for call in record.samples.values():
                    gt = call.get("GT") or ()
                    counts["calls"] += any(allele is not None for allele in gt)
                    counts["carriers"] += index in gt
    return counts


def read_file(path: Path, dataset: str, chunk_size: int) -> list[AlleleBatch]:
    from vcfstream.vcf.chunks import plan_chunks
    from vcfstream.vcf.reader import ReadContext, read_chunk
    from vcfstream.vcf.source import open_source

    source = open_source(str(path))
    context = ReadContext.open(dataset, "GRCh38", source)
    reads = [read_chunk(context, chunk) for chunk in plan_chunks(source, chunk_size)]
    assert all(not read.quarantined for read in reads)
    return [read.batch for read in reads]


# (file, records per chunk): several chunks where the planner can split the file.
REAL_FILES = [
    ("sample.vcf.gz", 4), ("1kg_2020_chrM.vcf.gz", 10), ("chr22.vcf.gz", 40),
    ("1kg_2020_chr20_annotations.bcf", 10), ("mixed_ploidy.vcf.gz", 2), ("chr_m_indels.vcf.gz", 50),
    ("CEUTrio.20.21.gatk3.4.g.vcf.bgz", 5_000),
]  # fmt: skip


@pytest.mark.parametrize(("name", "chunk_size"), REAL_FILES)
def test_real_files_store_the_same_variants_everywhere_and_every_call(
    name: str, chunk_size: int, pg_settings: Settings
) -> None:
    expected = pysam_counts(REAL / name)
    batches = read_file(REAL / name, dataset="real", chunk_size=chunk_size)
    assert sum(len(batch) for batch in batches) == expected["alleles"]

    def write_all() -> dict[str, int]:
        written = {}
        for store_name in ("catalog", "lancedb", "kuzu"):
            with open_store(store_name, pg_settings) as store:
                written[store_name] = sum(store.write(batch) for batch in batches)
        return written

    assert write_all() == {"catalog": expected["alleles"], "lancedb": expected["alleles"], "kuzu": expected["alleles"]}
    stored = catalog.catalog_counts(pg_settings, "real")
    graph_counts = graph.graph_counts(pg_settings)
    assert stored["variants"] == lance.count_variants(pg_settings) == graph_counts["Variant"] == expected["alleles"]
    assert stored["genotype_calls"] == expected["calls"]
    assert graph_counts["CARRIED_BY"] == expected["carriers"]
    if name.endswith("annotations.bcf"):
        assert graph_counts["Gene"] > 0 and graph_counts["IN_GENE"] >= expected["alleles"]

    assert write_all() == {"catalog": 0, "lancedb": 0, "kuzu": 0}
    assert catalog.catalog_counts(pg_settings, "real") == stored
    assert graph.graph_counts(pg_settings) == graph_counts
