"""Generate a synthetic, realistic, bgzipped and tabix-indexed VCF.

Mix per record: ~82% SNVs, ~8% deletions, ~6% insertions, ~4% multi-allelic; 3% missing
genotype calls; phased and unphased diploid calls; INFO AC/AN/AF/DP (Number=A where due);
FORMAT GT:AD:DP:GQ. Deterministic for a given seed.

    python bench/synth_vcf.py --records 1000000 --samples 3 -o /tmp/synth.vcf.gz
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pysam

BASES = np.array(list("ACGT"))
CONTIG_LENGTH = 248_956_422  # chr1 of GRCh38


def header(samples: list[str], contigs: list[str]) -> str:
    lines = ["##fileformat=VCFv4.2", "##source=vcfstream-synth"]
    lines += [f"##contig=<ID={c},length={CONTIG_LENGTH}>" for c in contigs]
    lines += [
        '##INFO=<ID=AC,Number=A,Type=Integer,Description="Allele count">',
        '##INFO=<ID=AN,Number=1,Type=Integer,Description="Allele number">',
        '##INFO=<ID=AF,Number=A,Type=Float,Description="Allele frequency">',
        '##INFO=<ID=DP,Number=1,Type=Integer,Description="Total depth">',
        '##FILTER=<ID=LowQual,Description="Low quality">',
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
        '##FORMAT=<ID=AD,Number=R,Type=Integer,Description="Allelic depths">',
        '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Depth">',
        '##FORMAT=<ID=GQ,Number=1,Type=Integer,Description="Genotype quality">',
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(samples),
    ]
    return "\n".join(lines) + "\n"


def generate(path: Path, records: int, n_samples: int = 3, seed: int = 7, contigs: int = 2) -> Path:
    """Write ``path`` (bgzipped) and its .tbi; returns the path."""
    rng = np.random.default_rng(seed)
    samples = [f"SAMPLE{i + 1}" for i in range(n_samples)]
    names = [f"chr{i + 1}" for i in range(contigs)]
    per_contig = np.diff(np.linspace(0, records, contigs + 1).astype(int))
    plain = path.with_suffix("") if path.suffix == ".gz" else path
    with open(plain, "w") as out:
        out.write(header(samples, names))
        for contig, count in zip(names, per_contig):
            _write_contig(out, rng, contig, int(count), n_samples)
    pysam.tabix_compress(str(plain), str(plain) + ".gz", force=True)
    os.remove(plain)
    pysam.tabix_index(str(plain) + ".gz", preset="vcf", force=True)
    return Path(str(plain) + ".gz")


def _write_contig(out, rng: np.random.Generator, contig: str, count: int, n_samples: int) -> None:
    gaps = rng.integers(1, 200, size=count)
    positions = np.cumsum(gaps) + 10_000
    kind = rng.random(count)
    refs = BASES[rng.integers(0, 4, size=count)]
    alt_idx = (rng.integers(1, 4, size=count) + np.searchsorted(BASES, refs)) % 4
    alts = BASES[alt_idx]
    quals = np.round(rng.gamma(2.0, 40.0, size=count), 2)
    depth = rng.poisson(30, size=(count, n_samples))
    gq = rng.integers(0, 100, size=(count, n_samples))
    geno = rng.choice(3, size=(count, n_samples), p=[0.5, 0.35, 0.15])
    missing = rng.random((count, n_samples)) < 0.03
    phased = rng.random(count) < 0.5
    lengths = rng.integers(1, 6, size=count)
    lines = []
    for i in range(count):
        ref, alt = str(refs[i]), str(alts[i])
        n_alt = 1
        k = kind[i]
        if k < 0.08:  # deletion
            ref = ref + "".join(BASES[rng.integers(0, 4, size=int(lengths[i]))])
        elif k < 0.14:  # insertion
            alt = ref + "".join(BASES[rng.integers(0, 4, size=int(lengths[i]))])
        elif k < 0.18:  # multi-allelic SNV
            second = BASES[(alt_idx[i] + 1) % 4]
            if second == ref:
                second = BASES[(alt_idx[i] + 2) % 4]
            alt = f"{alt},{second}"
            n_alt = 2
        sep = "|" if phased[i] else "/"
        calls = []
        ac = [0] * n_alt
        an = 0
        for s in range(n_samples):
            if missing[i, s]:
                calls.append(f".{sep}.:.:.:.")
                continue
            g = int(geno[i, s])
            a1, a2 = (0, 0) if g == 0 else (0, 1) if g == 1 else (1, 1)
            if n_alt == 2 and g == 2 and (i + s) % 3 == 0:
                a1, a2 = 1, 2
            for a in (a1, a2):
                if a:
                    ac[a - 1] += 1
            an += 2
            d = int(depth[i, s])
            ad = ",".join(str(d // (n_alt + 1)) for _ in range(n_alt + 1))
            calls.append(f"{a1}{sep}{a2}:{ad}:{d}:{int(gq[i, s])}")
        af = ",".join(f"{c / an:.4g}" if an else "." for c in ac)
        filt = "PASS" if quals[i] >= 20 else "LowQual"
        info = f"AC={','.join(map(str, ac))};AN={an};AF={af};DP={int(depth[i].sum())}"
        lines.append(f"{contig}\t{positions[i]}\t.\t{ref}\t{alt}\t{quals[i]}\t{filt}\t{info}\tGT:AD:DP:GQ\t"
                     + "\t".join(calls) + "\n")
        if len(lines) >= 50_000:
            out.writelines(lines)
            lines.clear()
    out.writelines(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    print(generate(args.output, args.records, args.samples, args.seed))


if __name__ == "__main__":
    main()
