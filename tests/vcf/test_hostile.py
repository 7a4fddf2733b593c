"""Hostile input: every case of ``tests/data/hostile`` (written by its ``make_hostile.py``) ends
in its clear error or quarantine, and the rest of its file is read.

Files are read as ingest reads them (``open_source``, the header check, ``plan_chunks``,
``read_chunk`` per chunk), in chunks of two records so that chunks start around the hostile
records. The small files are read under small limits where a case needs its limit crossed; the
full-size cases, under the default limits, are timed by bench/bench_hostile.py.
"""

from __future__ import annotations

import io
import re
import runpy
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pysam
import pytest
from paths import REPO

from vcfstream.errors import VcfFormatError
from vcfstream.settings import IngestSettings
from vcfstream.vcf import reader
from vcfstream.vcf import source as source_module
from vcfstream.vcf.chunks import plan_chunks
from vcfstream.vcf.limits import DEFAULT_LIMITS, ReadLimits
from vcfstream.vcf.reader import ReadContext, read_chunk
from vcfstream.vcf.source import iter_data_lines, open_source
from vcfstream.vcf.validation import RecordChecker, check_header
from vcfstream.vcf.validation import records as records_module

HOSTILE = REPO / "tests" / "data" / "hostile"
CHUNK_SIZE = 2
HEADER = 7  # META (6 lines) and #CHROM: the first record of most files is line 8
HANG_GUARD_S = 60.0  # far above what a linear check takes; what a quadratic one took was minutes


@dataclass
class Outcome:
    records: int
    alleles: int
    positions: list[int]  # POS of every allele read, in file order
    quarantined: list[tuple[int | None, str]]  # (line, rule)
    messages: list[str]


def read_file(path: Path, limits: ReadLimits = DEFAULT_LIMITS) -> Outcome:
    """Read a file as ingest does; a file-level error raises ``VcfFormatError``."""
    source = open_source(str(path), limits=limits)
    header = check_header(source.path, source.header_lines)
    if header.errors:
        first = header.errors[0]
        raise VcfFormatError(source.path, first.line, first.rule, first.message)
    ctx = ReadContext.open("hostile", "GRCh38", source)
    outcome = Outcome(0, 0, [], [], [])
    for chunk in plan_chunks(source, CHUNK_SIZE):
        read = read_chunk(ctx, chunk)
        outcome.records += read.records
        outcome.alleles += len(read.batch)
        outcome.positions += read.batch.table.column("pos").to_pylist()
        outcome.quarantined += [(q.line, q.rule) for q in read.quarantined]
        outcome.messages += [q.message for q in read.quarantined]
    return outcome


def _make_hostile() -> Any:
    """tests/data/hostile/make_hostile.py's functions (it is a script, not a package)."""
    return SimpleNamespace(**runpy.run_path(str(HOSTILE / "make_hostile.py")))


def test_the_committed_corpus_is_what_the_script_writes(tmp_path: Path) -> None:
    for paths in _make_hostile().write_cases(tmp_path).values():
        for path in paths:
            if not path.name.endswith(".tbi"):  # the crafted index is rewritten with the file's mtime
                assert path.read_bytes() == (HOSTILE / path.name).read_bytes(), path.name


def test_floats_of_thousands_of_digits_that_break_are_quarantined_in_linear_time() -> None:
    read = read_file(HOSTILE / "float_digits.vcf")
    assert read.quarantined == [(HEADER + 2, "qual.syntax"), (HEADER + 3, "info.type"), (HEADER + 4, "info.type")]
    assert (read.records, read.positions) == (5, [100, 400])

    checker = RecordChecker(check_header("x.vcf", (HOSTILE / "float_digits.vcf").read_text().splitlines()[:HEADER]))
    digits = "1" * 200_000  # 20,000 took 7.6 s when the float regex backtracked: this would take minutes
    started = time.monotonic()
    for qual, info in ((digits + "x", "."), ("50", f"SCORE={digits}e"), ("50", f"SCORE=.{digits}."),
                       (digits + ".5", "."), ("50", f"SCORE={digits}.5")):
        checker.check(["1", "500", ".", "A", "C", qual, "PASS", info, "GT", "0/1", "0/0"], 1)
    assert time.monotonic() - started < HANG_GUARD_S


@pytest.mark.parametrize("name", ["long_line.vcf", "long_line.vcf.gz"])
def test_a_line_over_the_length_limit_is_quarantined_and_the_rest_read(name: str) -> None:
    read = read_file(HOSTILE / name, ReadLimits(max_line_bytes=8 << 10))
    assert read.quarantined == [(HEADER + 3, "record.line_length")]
    assert "over the limit of 8,192" in read.messages[0] and "VCFSTREAM_MAX_LINE_BYTES" in read.messages[0]
    assert (read.records, read.positions) == (5, [100, 150, 300, 400])
    # within the default limit the same line is a valid record
    assert read_file(HOSTILE / name).positions == [100, 150, 200, 300, 400]


def test_a_record_over_the_alt_limit_is_quarantined_and_one_within_it_read() -> None:
    read = read_file(HOSTILE / "many_alts.vcf")
    assert read.quarantined == [(HEADER + 2, "record.alt_count")]
    assert "1,001 ALT alleles, over the limit of 1,000" in read.messages[0]
    assert read.records == 4 and read.positions == [100] + [300] * 300 + [400]


def test_a_record_whose_alts_times_its_line_are_over_their_limit_is_quarantined_though_each_is_within_its_own(
        ) -> None:
    path = HOSTILE / "alts_x_line.vcf"
    lines = path.read_bytes().splitlines()
    over, within = len(lines[HEADER + 1]), len(lines[HEADER + 2])  # 50 ALTs, 5 ALTs, the same INFO
    limit = 64 << 10
    assert 50 * over > limit >= 5 * within and over < DEFAULT_LIMITS.max_line_bytes
    read = read_file(path, ReadLimits(max_alt_line_bytes=limit))
    assert read.quarantined == [(HEADER + 2, "record.alt_line_bytes")]
    assert (f"50 ALT alleles x {over:,} bytes of line = {50 * over:,}, over the limit of 65,536 "
            "(VCFSTREAM_MAX_ALT_LINE_BYTES)") in read.messages[0]
    assert read.records == 4 and read.positions == [100] + [300] * 5 + [400]
    # within the default limit both are read, one allele (one message) per ALT
    assert read_file(path).positions == [100] + [200] * 50 + [300] * 5 + [400]
    assert IngestSettings(max_alt_line_bytes=limit).read_limits.max_alt_line_bytes == limit
    with pytest.raises(ValueError, match="max_alt_line_bytes"):
        ReadLimits(max_alt_line_bytes=0)


def test_alt_indexes_beyond_the_allele_tables_int16_cannot_be_allowed() -> None:
    with pytest.raises(ValueError, match="max_alts"):
        ReadLimits(max_alts=40_000)
    with pytest.raises(ValueError):
        IngestSettings(max_alts=40_000)
    assert IngestSettings(max_alts=5).read_limits.max_alts == 5


def test_many_contigs_are_read_and_a_header_over_its_limit_rejects_the_file() -> None:
    path = HOSTILE / "many_contigs.vcf.gz"
    read = read_file(path)
    assert (read.records, read.alleles, read.quarantined) == (3, 3, [])
    with pytest.raises(VcfFormatError) as raised:
        read_file(path, ReadLimits(max_header_lines=1_000))
    assert (raised.value.rule, raised.value.line) == ("header.size", 1_001)
    assert str(path) in str(raised.value) and "VCFSTREAM_MAX_HEADER_LINES" in str(raised.value)
    with pytest.raises(VcfFormatError, match=r"header\.size"):
        read_file(path, ReadLimits(max_header_bytes=10_000))


def test_many_samples_are_read_and_a_file_over_the_sample_limit_is_rejected() -> None:
    read = read_file(HOSTILE / "many_samples.vcf.gz")
    assert (read.records, read.alleles, read.quarantined) == (2, 2, [])
    with pytest.raises(VcfFormatError) as raised:
        read_file(HOSTILE / "many_samples.vcf.gz", ReadLimits(max_samples=1_000))
    assert (raised.value.rule, raised.value.line) == ("header.sample_count", HEADER)
    assert "2,000 sample columns" in str(raised.value)


def test_repeated_sample_names_among_many_reject_the_file_naming_them() -> None:
    with pytest.raises(VcfFormatError) as raised:
        read_file(HOSTILE / "many_samples_repeated.vcf.gz")
    assert (raised.value.rule, raised.value.line) == ("header.sample_duplicate", HEADER)
    assert "'S1', 'S2'" in str(raised.value)


def test_an_index_over_its_size_limit_rejects_the_file_naming_the_index(tmp_path: Path) -> None:
    for name in ("big_index.vcf.gz", "big_index.vcf.gz.tbi"):
        shutil.copy(HOSTILE / name, tmp_path / name)
    (tmp_path / "big_index.vcf.gz.tbi").touch()  # newer than the file, or it is ignored
    source = open_source(str(tmp_path / "big_index.vcf.gz"), limits=ReadLimits(max_index_bytes=64 << 10))
    assert source.index is not None
    with pytest.raises(VcfFormatError) as raised:
        plan_chunks(source, CHUNK_SIZE)
    assert raised.value.rule == "index.size" and str(tmp_path / "big_index.vcf.gz.tbi") in str(raised.value)


def test_control_bytes_in_a_record_are_quarantined_and_never_reach_the_dead_letters() -> None:
    read = read_file(HOSTILE / "control_bytes.vcf")
    assert read.quarantined == [(HEADER + 2, "record.control"), (HEADER + 3, "record.control"),
                                (HEADER + 4, "record.control")]
    assert re.search(r"ID holds the control character '\\x00' \(column 3\)", read.messages[0])
    assert "INFO holds" in read.messages[1] and "sample 1 holds the control character '\\x01'" in read.messages[2]
    assert (read.records, read.positions) == (5, [100, 400])
    source = open_source(str(HOSTILE / "control_bytes.vcf"))
    ctx = ReadContext.open("hostile", "GRCh38", source)
    for chunk in plan_chunks(source, 50):
        for q in read_chunk(ctx, chunk).quarantined:
            assert "\0" not in q.raw and "\0" not in q.message  # PostgreSQL text refuses NUL


def test_a_nul_byte_in_the_header_rejects_the_file() -> None:
    with pytest.raises(VcfFormatError) as raised:
        open_source(str(HOSTILE / "control_header.vcf"))
    assert (raised.value.rule, raised.value.line) == ("header.control", 2)


def test_a_record_that_cannot_be_encoded_is_quarantined_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    columnar = reader._columnar

    def failing_on_pos_200(ctx: ReadContext, plain: reader._Plain) -> reader._Part:
        if any(fields[1] == "200" for fields in plain.fields):
            raise pa.ArrowInvalid("offset overflow while concatenating arrays")
        return columnar(ctx, plain)

    monkeypatch.setattr(reader, "_columnar", failing_on_pos_200)
    path = HOSTILE / "long_line.vcf"
    source = open_source(str(path))
    read = read_chunk(ReadContext.open("hostile", "GRCh38", source), plan_chunks(source, 50)[0])
    assert [(q.line, q.rule) for q in read.quarantined] == [(HEADER + 3, "record.encode")]
    assert "ArrowInvalid: offset overflow" in read.quarantined[0].message
    assert read.batch.table.column("pos").to_pylist() == [100, 150, 300, 400]
    monkeypatch.setattr(reader, "_columnar", columnar)
    whole = read_chunk(ReadContext.open("hostile", "GRCh38", source), plan_chunks(source, 50)[0]).batch.table
    kept = whole.filter(pa.compute.not_equal(whole.column("pos"), 200))
    assert read.batch.table.column("value").to_pylist() == kept.column("value").to_pylist()


@pytest.mark.parametrize("block", [1, 2, 7, 64, 1 << 20])
def test_lines_spanning_read_blocks_are_joined_once_and_long_ones_cut(monkeypatch: pytest.MonkeyPatch,
                                                                        block: int) -> None:
    monkeypatch.setattr(source_module, "_READ_SIZE", block)
    data = b"a\tb\n" + b"x" * 50 + b"\n#comment\n\nline3\n" + b"y" * 40 + b"\n" + b"z" * 41
    lines = list(iter_data_lines(io.BytesIO(data), None, max_line_bytes=40))
    assert [(type(line).__name__, getattr(line, "length", len(line)), line[:1]) for line in lines] == [
        ("bytes", 3, b"a"), ("LongLine", 50, b"x"), ("bytes", 5, b"l"), ("bytes", 40, b"y"), ("LongLine", 41, b"z")]
    first_two = list(iter_data_lines(io.BytesIO(data), 2, max_line_bytes=40))
    assert [line[:1] for line in first_two] == [b"a", b"x"]


def test_a_line_over_the_limit_in_an_indexed_region_is_quarantined(tmp_path: Path) -> None:
    text = (HOSTILE / "long_line.vcf").read_bytes()
    path = tmp_path / "long_line.vcf.gz"
    with pysam.BGZFile(str(path), "wb") as fh:
        fh.write(text)
    pysam.tabix_index(str(path), preset="vcf", force=True)
    read = read_file(path, ReadLimits(max_line_bytes=8 << 10))
    assert read.quarantined == [(None, "record.line_length")]
    assert read.positions == [100, 150, 300, 400]


def test_what_the_checker_remembers_per_header_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(records_module, "_MAX_CACHED", 10)
    header = check_header("x.vcf", (HOSTILE / "float_digits.vcf").read_text().splitlines()[:HEADER])
    checker = RecordChecker(header)
    for k in range(100):  # a new CHROM, FILTER and FORMAT per record
        checker.check([f"c{k}", "1", ".", "A", "C", "50", f"f{k}", ".", f"GT:X{k}", "0/1", "0/0"], k + 1)
        checker.check(["1", str(k + 1), ".", "A", "C", "50", f"f{k}", ".", f"GT:X{k}", "0/1", "0/0"], k + 1)
    compiled = header.compiled
    assert max(len(compiled.chrom_problems), len(compiled.good_filters), len(compiled.plans)) <= 10
    long_chrom = "c" * 5_000
    checker.check([long_chrom, "1", ".", "A", "C", "50", "PASS", ".", "GT", "0/1", "0/0"], 1)
    assert long_chrom not in compiled.chrom_problems
