"""Generate a synthetic bgzipped and tabix-indexed VCF, in one of two shapes.

``dense`` (the default, as before): ~82% SNVs, ~8% deletions, ~6% insertions, ~4% multi-allelic;
about half the samples carry each variant; 3% missing calls; phased and unphased diploid calls;
INFO AC/AN/AF/DP (Number=A where due); FORMAT GT:AD:DP:GQ.

``realistic``, a joint-called cohort: FORMAT GT:AD:DP:GQ:PL; a rare-heavy allele-count spectrum
(P(AC = k) ~ k^-1.8, so about half the sites have one or two alternate alleles in the cohort and
few have many carriers); 8% bi- and 2% tri-allelic ALTs; unphased calls; 2% missing calls
written ``./.`` alone (trailing fields dropped), 0.3% of carrier calls half-missing (``./1``);
the last contig is ``chrX``, where every second sample is haploid (``0``, ``1``, ``.``).

Deterministic for a given seed and shape.

    python bench/synth_vcf.py --records 20000 --samples 1000 --shape realistic -o /tmp/cohort.vcf.gz
"""

from __future__ import annotations

import argparse
import functools
import os
from pathlib import Path
from typing import Literal, TextIO

import numpy as np
import pysam

BASES = np.array(list("ACGT"))
CONTIG_LENGTH = 248_956_422  # chr1 of GRCh38
SHAPES = ("dense", "realistic")
Shape = Literal["dense", "realistic"]


def header(samples: list[str], contigs: list[str], pl: bool = False) -> str:
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
        *(['##FORMAT=<ID=PL,Number=G,Type=Integer,Description="Phred-scaled genotype likelihoods">'] if pl else []),
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(samples),
    ]
    return "\n".join(lines) + "\n"


def generate(path: Path, records: int, n_samples: int = 3, seed: int = 7, contigs: int = 2,
             shape: Shape = "dense") -> Path:
    """Write ``path`` (bgzipped) and its .tbi; returns the path."""
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {', '.join(SHAPES)}")
    rng = np.random.default_rng(seed)
    samples = [f"SAMPLE{i + 1}" for i in range(n_samples)]
    names = [f"chr{i + 1}" for i in range(contigs)]
    if shape == "realistic" and contigs > 1:
        names[-1] = "chrX"
    per_contig = np.diff(np.linspace(0, records, contigs + 1).astype(int))
    plain = path.with_suffix("") if path.suffix == ".gz" else path
    with open(plain, "w") as out:
        out.write(header(samples, names, pl=shape == "realistic"))
        for contig, count in zip(names, per_contig):
            if shape == "dense":
                _write_contig(out, rng, contig, int(count), n_samples)
            else:
                haploid = np.arange(n_samples) % 2 == 1 if contig == "chrX" else np.zeros(n_samples, bool)
                _write_cohort_contig(out, rng, contig, int(count), haploid)
    pysam.tabix_compress(str(plain), str(plain) + ".gz", force=True)
    os.remove(plain)
    pysam.tabix_index(str(plain) + ".gz", preset="vcf", force=True)
    return Path(str(plain) + ".gz")


def _gap_bound(count: int) -> int:
    """The exclusive upper bound of the gaps between positions: 200, lowered so that ``count``
    records still end within the contig (past 1.2M records per contig, half would not)."""
    return max(2, min(200, (CONTIG_LENGTH - 20_000) // max(1, count)))


def _write_contig(out: TextIO, rng: np.random.Generator, contig: str, count: int, n_samples: int) -> None:
    gaps = rng.integers(1, _gap_bound(count), size=count)
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


COHORT_BLOCK = 1_000  # records whose genotypes are drawn at once


def _write_cohort_contig(out: TextIO, rng: np.random.Generator, contig: str, count: int, haploid: np.ndarray) -> None:
    """Records of a joint-called cohort (the ``realistic`` shape); ``haploid`` marks the samples
    called haploid on this contig."""
    n_samples = haploid.shape[0]
    positions = np.cumsum(rng.integers(1, _gap_bound(count), size=count)) + 10_000
    refs = BASES[rng.integers(0, 4, size=count)]
    n_alts = rng.choice([1, 2, 3], p=[0.90, 0.08, 0.02], size=count)
    kind = rng.random(count)
    lengths = rng.integers(1, 6, size=count)
    quals = np.round(rng.gamma(2.0, 40.0, size=count), 2)
    # Allele counts from a rare-heavy spectrum, as frequencies of the cohort's 2N haplotypes;
    # second and third ALTs rarer still, and together never more than 90% of the haplotypes.
    haplotypes = 2 * max(1, n_samples)
    counts = rng.zipf(1.8, size=(count, 3))
    counts = np.where(counts >= haplotypes, rng.integers(1, haplotypes, size=(count, 3)), counts)
    freqs = counts / haplotypes * np.array([1.0, 0.5, 0.25])
    freqs[np.arange(3)[None, :] >= n_alts[:, None]] = 0.0
    freqs *= np.minimum(1.0, 0.9 / freqs.sum(axis=1))[:, None]
    bounds = np.cumsum(freqs, axis=1)
    lines: list[str] = []
    for start in range(0, count, COHORT_BLOCK):
        stop = min(count, start + COHORT_BLOCK)
        size = stop - start
        draws = rng.random((size, n_samples, 2))
        below = (draws[..., None] >= bounds[start:stop, None, None, :]).sum(axis=-1)
        alleles = np.where(below == 3, 0, below + 1).astype(np.int8)  # (records, samples, 2 slots)
        quiet = ~(alleles > 0).any(axis=(1, 2))  # no carrier drawn: give the site one
        alleles[quiet, rng.integers(0, n_samples, size=int(quiet.sum())), 1] = 1
        alleles.sort(axis=2)  # unphased calls list the lower allele first
        alleles[:, haploid, 0] = alleles[:, haploid, 1]
        alleles[:, haploid, 1] = -2  # no second slot
        missing = rng.random((size, n_samples)) < 0.02
        alleles[missing, 0] = -1
        alleles[missing & ~haploid[None, :], 1] = -1
        half = (rng.random((size, n_samples)) < 0.003) & (alleles[:, :, 1] > 0) & ~haploid[None, :]
        alleles[half, 0] = -1  # ./1
        depth = rng.poisson(30, size=(size, n_samples))
        quality = np.minimum(99, rng.integers(0, 140, size=(size, n_samples)))
        for i in range(size):
            record = start + i
            n_alt = int(n_alts[record])
            ref = str(refs[record])
            alt_list = [str(b) for b in BASES if b != ref]
            rng.shuffle(alt_list)
            alt_list = alt_list[:n_alt]
            if n_alt == 1 and kind[record] < 0.08:  # deletion
                ref = ref + "".join(BASES[rng.integers(0, 4, size=int(lengths[record]))])
            elif n_alt == 1 and kind[record] < 0.14:  # insertion
                alt_list = [ref + "".join(BASES[rng.integers(0, 4, size=int(lengths[record]))])]
            first, second = alleles[i, :, 0], alleles[i, :, 1]
            calls = list(map(functools.partial(_cohort_call, n_alt), first.tolist(), second.tolist(),
                             depth[i].tolist(), quality[i].tolist()))
            slots = alleles[i][alleles[i] >= 0]
            ac = [int((slots == a).sum()) for a in range(1, n_alt + 1)]
            an = int(slots.size)
            af = ",".join(f"{c / an:.4g}" if an else "." for c in ac)
            filt = "PASS" if quals[record] >= 20 else "LowQual"
            info = f"AC={','.join(map(str, ac))};AN={an};AF={af};DP={int(depth[i].sum())}"
            lines.append(f"{contig}\t{positions[record]}\t.\t{ref}\t{','.join(alt_list)}\t{quals[record]}\t{filt}\t"
                         f"{info}\tGT:AD:DP:GQ:PL\t" + "\t".join(calls) + "\n")
        out.writelines(lines)
        lines.clear()


@functools.lru_cache(maxsize=1 << 18)
def _cohort_call(n_alt: int, first: int, second: int, depth: int, quality: int) -> str:
    """One sample's GT:AD:DP:GQ:PL; ``second`` is -2 for a haploid call, -1 for a missing slot."""
    if first == -1 and second in (-1, -2):
        return "./." if second == -1 else "."
    present = [a for a in (first, second) if a >= 0]
    gt = str(first) if second == -2 else f"{'.' if first < 0 else first}/{second}"
    ad = ",".join(str(depth * present.count(a) // len(present)) for a in range(n_alt + 1))
    if second == -2:  # haploid likelihoods
        called, n_genotypes = first, n_alt + 1
    else:  # diploid, a half call (./1) most likely homozygous for the allele it has
        low = second if first < 0 else first
        called, n_genotypes = second * (second + 1) // 2 + low, (n_alt + 1) * (n_alt + 2) // 2
    pl = ",".join("0" if g == called else str(quality + 10 * (abs(g - called) - 1)) for g in range(n_genotypes))
    return f"{gt}:{ad}:{depth}:{quality}:{pl}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--shape", choices=SHAPES, default="dense",
                        help="dense: half the samples carry each variant; realistic: a joint-called cohort")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    print(generate(args.output, args.records, args.samples, args.seed, shape=args.shape))


if __name__ == "__main__":
    main()
