"""Micro-benchmark of the hot path: ``RecordChecker.check`` and ``Normalizer.normalize``.

Lines are read and split into memory first, so only validation (and normalization) is timed,
as CPU time of this process (steadier than wall time on a shared machine); best of 3 passes.
Inputs: every VCF/BCF in ../shared/data/vcf/real (or the paths given) and a synthetic 3-sample
VCF generated here (SNVs, indels, multi-allelics; INFO AC/AN/AF/DP; FORMAT GT:AD:DP:GQ:PL).

    .venv/bin/python bench/bench_validate.py [--records 200000] [PATH ...]
"""

from __future__ import annotations

import argparse
import glob
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vcfstream.vcf.normalize import Normalizer
from vcfstream.vcf.validation import RecordChecker, check_header
from vcfstream.vcf.validation.files import _bcf_source, _sniff, _text_source

REAL = str(Path(__file__).resolve().parents[2] / "shared" / "data" / "vcf" / "real")


def load(path: str) -> tuple[list[str], list[list[str]]]:
    kind = _sniff(path)
    header, records = _bcf_source(path) if kind == "bcf" else _text_source(path, kind)
    return header, [fields for _, fields in records if isinstance(fields, list)]


def synthetic(records: int, samples: int = 3, seed: int = 11) -> tuple[list[str], list[list[str]]]:
    rng = random.Random(seed)
    names = [f"S{i + 1}" for i in range(samples)]
    header = [
        "##fileformat=VCFv4.2",
        "##contig=<ID=chr1,length=248956422>",
        '##INFO=<ID=AC,Number=A,Type=Integer,Description="Allele count">',
        '##INFO=<ID=AN,Number=1,Type=Integer,Description="Allele number">',
        '##INFO=<ID=AF,Number=A,Type=Float,Description="Allele frequency">',
        '##INFO=<ID=DP,Number=1,Type=Integer,Description="Depth">',
        '##FILTER=<ID=LowQual,Description="Low quality">',
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
        '##FORMAT=<ID=AD,Number=R,Type=Integer,Description="Allelic depths">',
        '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Depth">',
        '##FORMAT=<ID=GQ,Number=1,Type=Integer,Description="Genotype quality">',
        '##FORMAT=<ID=PL,Number=G,Type=Integer,Description="Phred-scaled likelihoods">',
        "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT", *names]),
    ]
    rows, pos = [], 10_000
    for i in range(records):
        pos += rng.randint(1, 300)
        ref = rng.choice("ACGT")
        kind = rng.random()
        if kind < 0.08:
            ref += "".join(rng.choice("ACGT") for _ in range(rng.randint(1, 5)))
            alts = [ref[0]]
        elif kind < 0.14:
            alts = [ref + "".join(rng.choice("ACGT") for _ in range(rng.randint(1, 5)))]
        else:
            alts = [rng.choice([b for b in "ACGT" if b != ref])]
        if rng.random() < 0.04:
            alts.append(rng.choice([b for b in "ACGT" if b not in (ref[0], alts[0])]))
        n_alt = len(alts)
        n_gt = (n_alt + 1) * (n_alt + 2) // 2
        sample_cols = []
        for _ in names:
            a, b = sorted(rng.choice(range(n_alt + 1)) for _ in range(2))
            sep = rng.choice("/|")
            ad = ",".join(str(rng.randint(0, 40)) for _ in range(n_alt + 1))
            pl = ",".join(str(rng.randint(0, 900)) for _ in range(n_gt))
            sample_cols.append(f"{a}{sep}{b}:{ad}:{rng.randint(0, 80)}:{rng.randint(0, 99)}:{pl}")
        ac = ",".join(str(rng.randint(1, 6)) for _ in alts)
        af = ",".join(f"{rng.random():.3f}" for _ in alts)
        info = f"AC={ac};AN=6;AF={af};DP={rng.randint(10, 300)}"
        rows.append(["chr1", str(pos), f"rs{i}" if rng.random() < 0.3 else ".", ref, ",".join(alts),
                     f"{rng.uniform(10, 900):.2f}", "PASS" if rng.random() < 0.9 else "LowQual", info, "GT:AD:DP:GQ:PL",
                     *sample_cols])
    return header, rows


def time_check(name: str, header: list[str], rows: list[list[str]], repeat: int = 3) -> None:
    check = check_header(name, header)
    if check.errors:
        print(f"{name}: header errors, skipped ({check.errors[0].describe()})")
        return
    best, bad = float("inf"), 0
    for _ in range(repeat):
        checker = RecordChecker(check)
        start = time.process_time()
        bad = sum(1 for fields in rows if checker.check(fields, 1) is not None)
        best = min(best, time.process_time() - start)
    rate = len(rows) / best if best else float("inf")
    print(f"{name:42} {len(rows):>8} records {len(check.samples):>4} samples  check: {rate:>10,.0f} rec/s "
          f"{1e6 / rate if rate else 0:6.2f} us/rec  (violations {bad})")


def time_normalize(rows: list[list[str]]) -> None:
    normalizer = Normalizer("GRCh38")
    pairs = [(f[0], int(f[1]), f[3], alt) for f in rows for alt in f[4].split(",")]
    start = time.process_time()
    for contig, pos, ref, alt in pairs:
        normalizer.normalize(contig, pos, ref, alt)
    took = time.process_time() - start
    print(f"{'normalize (no reference)':42} {len(pairs):>8} alleles          "
          f"{len(pairs) / took:>10,.0f} alleles/s {1e6 * took / len(pairs):6.2f} us/allele")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*")
    parser.add_argument("--records", type=int, default=200_000)
    args = parser.parse_args()
    paths = args.paths or sorted(p for p in glob.glob(f"{REAL}/*") if p.endswith((".vcf.gz", ".bgz", ".bcf")))
    for path in paths:
        header, rows = load(path)
        time_check(Path(path).name, header, rows)
    header, rows = synthetic(args.records)
    time_check(f"synthetic 3-sample ({args.records})", header, rows)
    time_normalize(rows)


if __name__ == "__main__":
    main()
