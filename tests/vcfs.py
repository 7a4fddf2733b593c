"""Small VCF files the tests write for themselves."""

from __future__ import annotations

from pathlib import Path


def wide_names_vcf(folder: Path, samples: int = 40, info_bytes: int = 6_000) -> Path:
    """Three records (lines 6, 7, 8) of ``samples`` samples with 100-character names: heavy in the
    full message form only. The second carries an INFO value of ``info_bytes``: as heavy in both."""
    names = [f"S{k:03d}" + "x" * 96 for k in range(samples)]
    lines = ["##fileformat=VCFv4.2", "##contig=<ID=chr1,length=1000000>",
             '##INFO=<ID=NOTE,Number=1,Type=String,Description="note">',
             '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
             "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(names)]
    calls = "\t".join(["0/1", "0|0", "./.", "1"][k % 4] for k in range(samples))
    for pos, info in ((100, "."), (200, "NOTE=" + "n" * info_bytes), (300, ".")):
        lines.append(f"chr1\t{pos}\t.\tA\tG\t50\tPASS\t{info}\tGT\t{calls}")
    path = folder / f"wide_names_{samples}.vcf"
    path.write_text("\n".join(lines) + "\n")
    return path


def heavy_format_vcf(folder: Path, samples: int = 20, value_bytes: int = 300) -> Path:
    """Two records (lines 6, 7) of ``samples`` samples, GT and a String FORMAT value of
    ``value_bytes`` per sample in the first: heavy in both message forms unless FORMAT values are
    left out."""
    lines = ["##fileformat=VCFv4.2", "##contig=<ID=chr1,length=1000000>",
             '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
             '##FORMAT=<ID=XS,Number=1,Type=String,Description="a long value">',
             "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(f"S{k}" for k in range(samples))]
    heavy = "\t".join(f"0/1:{chr(65 + k % 26) * value_bytes}" for k in range(samples))
    light = "\t".join("0/0:x" for _ in range(samples))
    lines += [f"chr1\t100\t.\tA\tG\t50\tPASS\t.\tGT:XS\t{heavy}", f"chr1\t200\t.\tC\tT\t50\tPASS\t.\tGT:XS\t{light}"]
    path = folder / f"heavy_format_{samples}.vcf"
    path.write_text("\n".join(lines) + "\n")
    return path
