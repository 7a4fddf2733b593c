"""Writes the hostile-input corpus: one file per case of what a broken or hostile file can ask
of a reader (docs/validation.md, "Limits"). Each file holds a few good records around the
hostile part, so a test can check that the hostile part ends in its clear error or quarantine
and that the rest of the file is read (tests/vcf/test_hostile.py).

    .venv/bin/python tests/data/hostile/make_hostile.py            # the small files, committed here
    .venv/bin/python tests/data/hostile/make_hostile.py --full DIR  # full size, for bench/bench_hostile.py

Small and full files differ only in sizes (``Sizes``): the small ones stay a few kB (the larger
headers are gzip-compressed) and are read under small limits by the tests; the full ones are the
sizes an audit found slow or memory-hungry, read under the default limits.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import os
import struct
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pysam

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Sizes:
    digits: int  # digits of a broken QUAL / INFO Float
    long_line: int  # bytes of the over-long line
    alts_over: int  # ALTs of the record over the ALT limit (the limit is 1,000 by default)
    alts_most: int  # ALTs of a record the limit allows
    alt_line_alts: int  # ALTs of the record whose ALTs x line bytes are over their limit (each within its own)
    alt_line_pad: int  # bytes of INFO that make its line long
    contigs: int  # ##contig lines
    samples: int  # sample columns
    index_refs: int  # references a crafted index claims (8 bytes each, decompressed)


SMALL = Sizes(digits=2_000, long_line=20_000, alts_over=1_001, alts_most=300, alt_line_alts=50, alt_line_pad=2_000,
              contigs=2_000, samples=2_000, index_refs=20_000)
FULL = Sizes(digits=60_000, long_line=256 << 20, alts_over=33_000, alts_most=1_000, alt_line_alts=1_000,
             alt_line_pad=400_000, contigs=40_000, samples=40_000, index_refs=10_000_000)

META = [
    "##fileformat=VCFv4.2",
    "##contig=<ID=1,length=100000000>",
    '##INFO=<ID=AF,Number=A,Type=Float,Description="Allele frequency">',
    '##INFO=<ID=SCORE,Number=1,Type=Float,Description="A score">',
    '##INFO=<ID=NOTE,Number=1,Type=String,Description="Free text">',
    '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
]


def chrom_line(samples: list[str]) -> str:
    return "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT", *samples])


def good(pos: int, n_samples: int = 2, chrom: str = "1") -> str:
    calls = "\t".join(["0/1", "0/0"] * (n_samples // 2) + ["0/1"] * (n_samples % 2))
    return f"{chrom}\t{pos}\t.\tA\tC\t50\tPASS\tAF=0.5\tGT\t{calls}"


def distinct_alts(count: int) -> Iterator[str]:
    """``count`` distinct ALT alleles other than REF 'A': C, G, T, AA, AC, ..."""
    produced = 0
    for length in itertools.count(1):
        for bases in itertools.product("ACGT", repeat=length):
            allele = "".join(bases)
            if allele != "A":
                yield allele
                produced += 1
                if produced == count:
                    return


def _write(path: Path, lines: list[str], compress: bool = False) -> None:
    data = ("\n".join(lines) + "\n").encode()
    if compress:
        with gzip.GzipFile(path, "wb", compresslevel=9, mtime=0) as fh:
            fh.write(data)
    else:
        path.write_bytes(data)


def _two_sample_file(path: Path, records: list[str]) -> list[Path]:
    """A file of the usual header, samples S1 and S2, and ``records``."""
    _write(path, [*META, chrom_line(["S1", "S2"]), *records])
    return [path]


def float_digits(directory: Path, sizes: Sizes) -> list[Path]:
    """A QUAL and an INFO Float of thousands of digits that end in a character that breaks them
    (a backtracking float regex took quadratic time on them)."""
    digits = "1" * sizes.digits
    return _two_sample_file(directory / "float_digits.vcf", [
        good(100),
        f"1\t200\t.\tA\tC\t{digits}x\tPASS\tAF=0.5\tGT\t0/1\t0/0",
        f"1\t300\t.\tA\tG\t50\tPASS\tSCORE={digits}e\tGT\t0/1\t0/0",
        f"1\t310\t.\tA\tT\t50\tPASS\tSCORE=.{digits}.\tGT\t0/1\t0/0",
        good(400)])


def long_line(directory: Path, sizes: Sizes) -> list[Path]:
    """A valid record whose INFO string makes its line longer than the line limit, plain and
    gzip (a gzip of a few hundred kB holds a line of hundreds of MB)."""
    paths = []
    for name, compress in (("long_line.vcf", False), ("long_line.vcf.gz", True)):
        path = directory / name
        head = "\n".join([*META, chrom_line(["S1", "S2"]), good(100), good(150)]) + "\n"
        with gzip.GzipFile(path, "wb", mtime=0) if compress else open(path, "wb") as fh:
            fh.write(head.encode())
            fh.write(b"1\t200\t.\tA\tC\t50\tPASS\tNOTE=")
            remaining = sizes.long_line
            block = b"x" * (1 << 20)
            while remaining > 0:
                fh.write(block[:remaining])
                remaining -= len(block)
            fh.write(b"\tGT\t0/1\t0/0\n")
            fh.write(("\n".join([good(300), good(400)]) + "\n").encode())
        paths.append(path)
    return paths


def many_alts(directory: Path, sizes: Sizes) -> list[Path]:
    """A record with more ALTs than the limit, one at a size the limit allows, good ones around."""
    over = ",".join(distinct_alts(sizes.alts_over))
    most = ",".join(distinct_alts(sizes.alts_most))
    return _two_sample_file(directory / "many_alts.vcf", [
        good(100),
        f"1\t200\t.\tA\t{over}\t50\tPASS\t.\tGT\t0/1\t0/0",
        f"1\t300\t.\tA\t{most}\t50\tPASS\t.\tGT\t0/1\t1/2",
        good(400)])


def alts_x_line(directory: Path, sizes: Sizes) -> list[Path]:
    """A record within the ALT and line limits whose ALTs times its line bytes are not (one message
    per ALT, each carrying the record: 10k ALTs in a 73 kB line made 933 MB of messages), and one
    with the same line and a tenth of the ALTs, good ones around."""
    pad = "x" * sizes.alt_line_pad
    over = ",".join(distinct_alts(sizes.alt_line_alts))
    within = ",".join(distinct_alts(sizes.alt_line_alts // 10))
    return _two_sample_file(directory / "alts_x_line.vcf", [
        good(100),
        f"1\t200\t.\tA\t{over}\t50\tPASS\tNOTE={pad}\tGT\t0/1\t1/2",
        f"1\t300\t.\tA\t{within}\t50\tPASS\tNOTE={pad}\tGT\t0/1\t1/2",
        good(400)])


def many_contigs(directory: Path, sizes: Sizes) -> list[Path]:
    """A header of many ##contig lines (opening a file's context was quadratic in them)."""
    contigs = [f"##contig=<ID=ctg{i},length=100000>" for i in range(sizes.contigs)]
    last = sizes.contigs - 1
    lines = [*META, *contigs, chrom_line(["S1", "S2"]), good(100, chrom="ctg1"), good(200, chrom="ctg1"),
             good(100, chrom=f"ctg{last}")]
    path = directory / "many_contigs.vcf.gz"
    _write(path, lines, compress=True)
    return [path]


def many_samples(directory: Path, sizes: Sizes) -> list[Path]:
    """Many sample columns: distinct (read), and with repeated names (rejected; the check of
    repeated names was quadratic)."""
    names = [f"S{i}" for i in range(sizes.samples)]
    paths = []
    for name, samples in (("many_samples.vcf.gz", names), ("many_samples_repeated.vcf.gz", names[:-2] + ["S1", "S2"])):
        lines = [*META, chrom_line(samples), good(100, len(samples)), good(200, len(samples))]
        path = directory / name
        _write(path, lines, compress=True)
        paths.append(path)
    return paths


def big_index(directory: Path, sizes: Sizes) -> list[Path]:
    """A BGZF file with a crafted .tbi that claims ``index_refs`` references: a few kB
    compressed, 8 bytes per reference decompressed (its parser held a Python object each)."""
    vcf = directory / "big_index.vcf.gz"
    text = "\n".join([*META, chrom_line(["S1", "S2"]), good(100), good(200)]) + "\n"
    with pysam.BGZFile(str(vcf), "wb") as fh:
        fh.write(text.encode())
    names = b"1\0"
    header = struct.pack("<4s8i", b"TBI\x01", sizes.index_refs, 2, 1, 2, 0, ord("#"), 0, len(names)) + names
    index = Path(str(vcf) + ".tbi")
    with pysam.BGZFile(str(index), "wb") as fh:
        fh.write(header)
        zeros = bytes(8 << 20)  # per reference: n_bin = 0, n_intv = 0
        remaining = 8 * sizes.index_refs
        while remaining > 0:
            fh.write(zeros[:remaining])
            remaining -= len(zeros)
    os.utime(index)  # newer than the file, or it is ignored
    return [vcf, index]


def control_bytes(directory: Path, sizes: Sizes) -> list[Path]:
    """NUL and other control bytes in ID, INFO and a sample column (PostgreSQL text and jsonb
    refuse NUL), and a header line holding a NUL."""
    [path] = _two_sample_file(directory / "control_bytes.vcf", [
        good(100),
        "1\t200\trs\x001\tA\tC\t50\tPASS\tAF=0.5\tGT\t0/1\t0/0",
        "1\t300\t.\tA\tG\t50\tPASS\tNOTE=a\x00b\tGT\t0/1\t0/0",
        "1\t310\t.\tA\tT\t50\tPASS\tAF=0.5\tGT\t0/1\x01\t0/0",
        good(400)])
    header = directory / "control_header.vcf"
    _write(header, [META[0], "##comment=a\x00b", *META[1:], chrom_line(["S1", "S2"]), good(100)])
    return [path, header]


CASES: dict[str, Callable[[Path, Sizes], list[Path]]] = {
    "float_digits": float_digits, "long_line": long_line, "many_alts": many_alts, "alts_x_line": alts_x_line,
    "many_contigs": many_contigs,
    "many_samples": many_samples, "big_index": big_index, "control_bytes": control_bytes,
}


def write_cases(directory: Path, sizes: Sizes = SMALL, cases: Iterable[str] | None = None) -> dict[str, list[Path]]:
    """Write ``cases`` (default: all) into ``directory``; returns each case's files."""
    directory.mkdir(parents=True, exist_ok=True)
    wanted = CASES if cases is None else {name: CASES[name] for name in cases}
    return {name: make(directory, sizes) for name, make in wanted.items()}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", type=Path, metavar="DIR", help="write the full-size files into DIR instead")
    args = parser.parse_args(argv)
    written = write_cases(args.full, FULL) if args.full else write_cases(HERE, SMALL)
    for name, paths in written.items():
        print(name, ", ".join(f"{p.name} ({p.stat().st_size:,} B)" for p in paths))


if __name__ == "__main__":
    main(sys.argv[1:])
