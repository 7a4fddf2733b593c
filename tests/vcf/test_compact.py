"""The compact message form (schema v2) and the sample list it refers to (schema samples v1):
what ``auto`` picks, that both forms carry the same genotype data, and the size limit (a message
too big in full form goes compact; one too big even compact is quarantined). No service needed."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import orjson
import pyarrow as pa
import pytest
from paths import REAL, REPO
from vcfs import heavy_format_vcf, wide_names_vcf

from vcfstream.model import ChunkSummary
from vcfstream.vcf.chunks import plan_chunks
from vcfstream.vcf.encode import (
    COMPACT_SCHEMA,
    MESSAGE_SCHEMA,
    MessageOptions,
    decode_compact,
    message_sizes,
    sample_list_message,
)
from vcfstream.vcf.reader import ChunkRead, ReadContext, read_chunk
from vcfstream.vcf.source import open_source

SCHEMAS = REPO / "vcfstream" / "vcf" / "schemas"
COMPACT = json.loads((SCHEMAS / "variant-message.v2.json").read_text())
SAMPLE_LIST = json.loads((SCHEMAS / "sample-list.v1.json").read_text())
WIDE = REAL / "chr22.vcf.gz"  # 100 samples, GT only, phased and unphased calls, multi-allelic sites
# (file, what it exercises): haploid and triploid calls; repeated sample names, symbolic ALTs;
# AD/DP/GQ/PL of a gVCF (Number=R and G cut to the allele)
CASES = [WIDE, REAL / "mixed_ploidy.vcf.gz", REPO / "tests" / "vcf" / "golden" / "crafted" / "repeated_samples.vcf",
         REAL / "CEUTrio.20.21.gatk3.4.g.vcf.bgz"]


def read_all(path: Path, options: MessageOptions) -> tuple[list[bytes], ChunkSummary, list[ChunkRead]]:
    source = open_source(str(path))
    ctx = ReadContext.open("d", "GRCh38", source, options=options)
    reads = [read_chunk(ctx, chunk) for chunk in plan_chunks(source, 10_000)]
    summary = ChunkSummary()
    for read in reads:
        summary.rules.update(q.rule for q in read.quarantined)
    return [v for read in reads for v in read.batch.table.column("value").to_pylist()], summary, reads


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.name)
def test_compact_and_full_messages_decode_to_the_same_genotype_data(path: Path) -> None:
    full, _, _ = read_all(path, MessageOptions(form="full"))
    compact, _, _ = read_all(path, MessageOptions(form="compact"))
    samples = orjson.loads(sample_list_message("d", open_source(str(path))).value)["samples"]
    assert len(full) == len(compact) > 0
    for n, (full_value, compact_value) in enumerate(zip(full, compact)):
        a, b = orjson.loads(full_value), orjson.loads(compact_value)
        assert (a["schema"], b["schema"]) == (MESSAGE_SCHEMA, COMPACT_SCHEMA)
        if n < 50:  # the schema check is slow (an enum per call)
            jsonschema.validate(b, COMPACT)
        assert decode_compact(b, samples) == a["samples"]
        assert {k: v for k, v in a.items() if k not in ("schema", "samples")} == {
            k: v for k, v in b.items() if k not in ("schema", "genotypes", "format")}


def test_compact_calls_without_format_values_keep_every_call() -> None:
    full, _, _ = read_all(REAL / "CEUTrio.20.21.gatk3.4.g.vcf.bgz", MessageOptions(form="full"))
    calls, _, _ = read_all(REAL / "CEUTrio.20.21.gatk3.4.g.vcf.bgz", MessageOptions(form="compact", format_values=False))
    samples = orjson.loads(sample_list_message("d", open_source(str(REAL / "CEUTrio.20.21.gatk3.4.g.vcf.bgz"))).value)["samples"]
    for full_value, compact_value in zip(full, calls):
        a, b = orjson.loads(full_value), orjson.loads(compact_value)
        assert b["format"] is None
        assert decode_compact(b, samples) == {name: {"GT": values["GT"]} for name, values in a["samples"].items()}


def test_auto_writes_the_compact_form_above_the_width_threshold_only() -> None:
    # chr22.vcf.gz has 100 sample columns
    at, _, _ = read_all(WIDE, MessageOptions(form="auto", compact_above_samples=100))
    above, _, _ = read_all(WIDE, MessageOptions(form="auto", compact_above_samples=99))
    assert {orjson.loads(v)["schema"] for v in at} == {MESSAGE_SCHEMA}
    assert {orjson.loads(v)["schema"] for v in above} == {COMPACT_SCHEMA}
    assert sum(map(len, above)) < sum(map(len, at)) / 2


def test_the_sample_list_message_names_every_column_in_order_and_has_a_stable_id() -> None:
    source = open_source(str(REPO / "tests" / "vcf" / "golden" / "crafted" / "repeated_samples.vcf"))
    message = sample_list_message("d", source)
    document = orjson.loads(message.value)
    jsonschema.validate(document, SAMPLE_LIST)
    assert document["samples"] == list(source.samples) and len(set(document["samples"])) < len(document["samples"])
    assert message.message_id == sample_list_message("d", source).message_id != sample_list_message("e", source).message_id
    assert message.key == f"sample-list:{source.digest}" and document["message_id"] == message.message_id.hex()
    compact, _, _ = read_all(Path(source.path), MessageOptions(form="compact"))
    assert {orjson.loads(v)["genotypes"]["sample_list"] for v in compact} == {message.message_id.hex()}


def test_a_record_too_big_in_full_form_goes_compact_and_one_too_big_even_compact_is_quarantined(
        tmp_path: Path) -> None:
    path = wide_names_vcf(tmp_path)
    full, _, _ = read_all(path, MessageOptions(form="full"))
    compact, _, _ = read_all(path, MessageOptions(form="compact"))
    source = open_source(str(path))
    keys = pa.array(["GRCh38:chr1:100:A:G"] * 3)
    full_sizes = message_sizes(pa.array(full, pa.binary()), keys, "d", source.path)
    compact_sizes = message_sizes(pa.array(compact, pa.binary()), keys, "d", source.path)
    limit = 5_000
    assert full_sizes[0] > limit >= compact_sizes[0] and compact_sizes[1] > limit  # what the file is made for

    values, summary, reads = read_all(path, MessageOptions(form="auto", max_bytes=limit))
    assert [orjson.loads(v)["schema"] for v in values] == [COMPACT_SCHEMA, COMPACT_SCHEMA]
    assert [orjson.loads(v)["variant"]["pos"] for v in values] == [100, 300]
    assert values == [compact[0], compact[2]]
    (quarantined,) = [q for read in reads for q in read.quarantined]
    assert (quarantined.line, quarantined.rule) == (7, "message.size")
    assert f"over the limit of {limit:,} bytes" in quarantined.message and str(path) in quarantined.message
    assert summary.rules == {"message.size": 1}
    # the genotype matrices follow the table: the quarantined record's allele is gone from both
    assert reads[0].batch.gt.shape[0] == len(reads[0].batch) == 2


def test_a_narrow_file_within_the_limit_keeps_the_full_form_byte_for_byte(tmp_path: Path) -> None:
    path = wide_names_vcf(tmp_path, samples=3, info_bytes=10)
    unlimited, _, _ = read_all(path, MessageOptions())
    limited, _, _ = read_all(path, MessageOptions(max_bytes=100_000))
    assert unlimited == limited and {orjson.loads(v)["schema"] for v in limited} == {MESSAGE_SCHEMA}


def test_a_record_too_big_even_compact_is_published_without_its_format_values_when_that_fits(
        tmp_path: Path) -> None:
    path = heavy_format_vcf(tmp_path, samples=20, value_bytes=300)  # 6 kB of XS values in the first record
    values, summary, _ = read_all(path, MessageOptions(form="auto", max_bytes=4_000))
    first, second = (orjson.loads(v) for v in values)
    assert (first["schema"], first["format"]) == (COMPACT_SCHEMA, None)  # calls only: XS left out
    assert first["genotypes"]["calls"] == [0, 1] * 20
    assert second["schema"] == MESSAGE_SCHEMA  # small enough in full form
    assert not summary.rules
    # with FORMAT values in compact messages turned off, nothing changes for the full-form record
    assert read_all(path, MessageOptions(form="auto", max_bytes=4_000, format_values=False))[0] == values
