"""Variant identity: trimming, left-alignment and contig naming, checked against bcftools norm.

The reference for the bcftools comparisons is built here: a random sequence rich in repeats
(where left-alignment matters), and for the real files a "pseudo-reference" holding each
record's REF bases at its position (N elsewhere), so ``bcftools norm -f`` can run on them.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pysam
import pytest
from paths import REAL

from vcfstream.vcf.normalize import Normalizer, structural_extent, trim_alleles, variant_type

needs_bcftools = pytest.mark.skipif(shutil.which("bcftools") is None, reason="bcftools is not installed")

Allele = tuple[str, int, str, str]


def write_fasta(path: Path, contigs: dict[str, str], width: int = 60) -> str:
    with open(path, "w") as fh:
        for name, seq in contigs.items():
            fh.write(f">{name}\n")
            for i in range(0, len(seq), width):
                fh.write(seq[i:i + width] + "\n")
    pysam.faidx(str(path))
    return str(path)


def write_vcf(path: Path, contigs: dict[str, int], records: list[tuple[str, int, str, str]]) -> str:
    lines = ["##fileformat=VCFv4.2", *(f"##contig=<ID={c},length={n}>" for c, n in contigs.items()),
             "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    lines += [f"{c}\t{p}\t.\t{r}\t{a}\t.\t.\t." for c, p, r, a in records]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def bcftools_alleles(vcf: str, fasta: str | None, extra: tuple[str, ...] = ()) -> Counter[Allele]:
    """(contig, pos, REF, ALT) of every base allele ``bcftools norm -m -any [-f fasta]`` writes."""
    command = ["bcftools", "norm", "-m", "-any", *extra, *(["-f", fasta] if fasta else []), vcf]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    alleles: Counter[Allele] = Counter()
    for line in out.splitlines():
        if line.startswith("#"):
            continue
        chrom, pos, _, ref, alt = line.split("\t")[:5]
        if not alt.upper().strip("ACGTN"):
            alleles[(chrom, int(pos), ref.upper(), alt.upper())] += 1
    return alleles


def our_alleles(records: list[tuple[str, int, str, str]], normalizer: Normalizer) -> Counter[Allele]:
    alleles: Counter[Allele] = Counter()
    for chrom, pos, ref, alts in records:
        for alt in alts.split(","):
            if not alt.upper().strip("ACGTN"):
                alleles[normalizer.normalize(chrom, pos, ref, alt)] += 1
    return alleles


# -- trimming and classification ---------------------------------------------------------------
@pytest.mark.parametrize("pos, ref, alt, expected", [
    (100, "A", "G", (100, "A", "G")),
    (100, "TAT", "TGT", (101, "A", "G")),  # an SNV written with context
    (127, "TTTAT", "TTTGT", (130, "A", "G")),
    (123, "AT", "AA", (124, "T", "A")),
    (123, "AT", "AAT", (123, "A", "AA")),  # trailing T trimmed, anchor A kept
    (200, "CAGT", "T", (200, "CAGT", "T")),  # the shared T cannot go: ALT would be empty
    (10, "ACGT", "AGGT", (11, "C", "G")),
    (10, "CACA", "CA", (10, "CAC", "C")),  # without a reference: trimmed, not shifted
    (5, "GATTACA", "GATCA", (7, "TTA", "T")),
])
def test_trimming_keeps_one_anchor_base(pos: int, ref: str, alt: str, expected: tuple[int, str, str]) -> None:
    assert trim_alleles(pos, ref, alt) == expected


@pytest.mark.parametrize("ref, alt, kind", [
    ("A", "G", "SNV"), ("AC", "GT", "MNV"), ("A", "AT", "insertion"), ("AT", "A", "deletion"),
    ("AT", "GCC", "indel"), ("A", "<DEL>", "symbolic"), ("A", "A]2:100]", "symbolic"), ("A", "*", "symbolic"),
    ("A", ".A", "symbolic"), ("A", "<NON_REF>", "symbolic"),
])
def test_variant_types(ref: str, alt: str, kind: str) -> None:
    assert variant_type(ref, alt) == kind


def test_symbolic_alleles_are_not_trimmed_and_keep_their_case() -> None:
    normalizer = Normalizer("GRCh38")
    assert normalizer.normalize("1", 100, "AT", "<DEL>") == ("chr1", 100, "AT", "<DEL>")
    assert normalizer.normalize("1", 100, "AT", "AT[2:300[") == ("chr1", 100, "AT", "AT[2:300[")
    assert normalizer.normalize("1", 100, "A", "*") == ("chr1", 100, "A", "*")


def test_alleles_are_upper_cased() -> None:
    assert Normalizer("GRCh38").normalize("chr1", 7, "ttTAT", "TTtGT") == ("chr1", 10, "A", "G")


def test_structural_extent_reads_end_and_the_allele_svlen() -> None:
    assert structural_extent("SVTYPE=DEL;END=2000;SVLEN=-1000,-900", 2) == (2000, "-900")
    assert structural_extent("END=2000", 1) == (2000, None)
    assert structural_extent("DP=3", 1) == (None, None)


# -- contig names ------------------------------------------------------------------------------
@pytest.mark.parametrize("name, canonical", [
    ("1", "chr1"), ("chr1", "chr1"), ("chr01", "chr1"), ("X", "chrX"), ("chrx", "chrX"), ("Y", "chrY"),
    ("MT", "chrM"), ("M", "chrM"), ("chrM", "chrM"), ("chrMT", "chrM"), ("<22>", "chr22"),
    ("GL000192.1", "GL000192.1"), ("chrUn_KI270302v1", "chrUn_KI270302v1"), ("HLA-A*01:01:01:01", "HLA-A*01:01:01:01"),
])
def test_human_contigs_get_ucsc_names(name: str, canonical: str) -> None:
    assert Normalizer("GRCh38").canonical_contig(name) == canonical
    assert Normalizer("GRCh37").canonical_contig(name) == canonical


def test_the_same_variant_gets_one_key_whatever_the_contig_style() -> None:
    normalizer = Normalizer("GRCh38")
    assert normalizer.normalize("1", 100, "A", "G") == normalizer.normalize("chr1", 100, "A", "G")
    assert normalizer.normalize("MT", 73, "A", "G") == normalizer.normalize("chrM", 73, "A", "G")


def test_other_assemblies_keep_their_contig_names() -> None:
    assert Normalizer("TAIR10").canonical_contig("1") == "1"
    assert Normalizer("TAIR10").canonical_contig("<Chr1>") == "Chr1"


# -- the reference: REF checks and left-alignment --------------------------------------------------
def test_ref_is_checked_against_the_reference(tmp_path: Path) -> None:
    fasta = write_fasta(tmp_path / "ref.fa", {"chr1": "ACGTACGTNNACGT", "MT": "GATTACA"})
    normalizer = Normalizer("GRCh38", fasta)
    assert normalizer.left_aligns
    assert normalizer.check_ref("1", 1, "ACGT") is None  # 1 is chr1 in this FASTA
    assert normalizer.check_ref("chr1", 9, "AC") is None  # N in the reference matches anything
    assert "reference has 'CG'" in (normalizer.check_ref("chr1", 2, "GG") or "")
    assert normalizer.check_ref("chrM", 1, "GATT") is None  # chrM is MT in this FASTA
    assert "not in the reference" in (normalizer.check_ref("chr2", 1, "A") or "")
    assert "runs past the end" in (normalizer.check_ref("MT", 6, "CAT") or "")
    assert Normalizer("GRCh38").check_ref("chr1", 2, "GG") is None  # no reference, no check


def test_indels_in_repeats_are_shifted_left(tmp_path: Path) -> None:
    fasta = write_fasta(tmp_path / "ref.fa", {"1": "GGGGGCTTTATTTTTCACACACAGGGGGGGGGGGG"})
    normalizer = Normalizer("GRCh38", fasta)
    assert normalizer.normalize("1", 20, "CA", "CACA") == ("chr1", 15, "T", "TCA")
    assert normalizer.normalize("1", 7, "TTTATTTTT", "TTTATTTT") == ("chr1", 10, "AT", "A")
    assert normalizer.normalize("1", 7, "TTTAT", "T") == ("chr1", 6, "CTTTA", "C")
    assert normalizer.normalize("1", 1, "GG", "G") == ("chr1", 1, "GG", "G")  # no base before position 1


def _random_reference(rng: random.Random, length: int) -> str:
    parts: list[str] = []
    while sum(map(len, parts)) < length:
        kind = rng.random()
        if kind < 0.4:
            parts.append("".join(rng.choice("ACGT") for _ in range(rng.randint(1, 12))))
        elif kind < 0.7:
            parts.append(rng.choice("ACGT") * rng.randint(3, 12))
        else:
            unit = "".join(rng.choice("ACGT") for _ in range(rng.randint(2, 4)))
            parts.append(unit * rng.randint(2, 6))
    return "".join(parts)[:length]


def _random_records(rng: random.Random, contig: str, seq: str, count: int) -> list[tuple[str, int, str, str]]:
    records = []
    for _ in range(count):
        pos = rng.randint(1, len(seq) - 20)
        span = rng.randint(1, 8)
        ref = seq[pos - 1:pos - 1 + span]
        alts = set()
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            edit = rng.random()
            i = rng.randint(0, len(ref))
            if edit < 0.35 and len(ref) > 1:  # delete a piece
                j = rng.randint(i, len(ref))
                alt = ref[:i] + ref[j:]
            elif edit < 0.7:  # insert random bases or a copy of a neighbouring piece
                piece = ref[max(0, i - rng.randint(1, 3)):i]
                piece = piece or "".join(rng.choice("ACGT") for _ in range(rng.randint(1, 4)))
                alt = ref[:i] + piece + ref[i:]
            else:  # substitute
                alt = "".join(b if rng.random() < 0.6 else rng.choice("ACGT") for b in ref)
            if alt and alt != ref:
                alts.add(alt)
        if alts:
            records.append((contig, pos, ref, ",".join(sorted(alts))))
    return sorted(records, key=lambda r: r[1])


@needs_bcftools
def test_left_alignment_matches_bcftools_norm_on_a_repeat_rich_reference(tmp_path: Path) -> None:
    rng = random.Random(2024)
    seqs = {"1": _random_reference(rng, 4000), "2": _random_reference(rng, 3000)}
    fasta = write_fasta(tmp_path / "ref.fa", seqs)
    records = [r for contig, seq in seqs.items() for r in _random_records(rng, contig, seq, 600)]
    vcf = write_vcf(tmp_path / "v.vcf", {c: len(s) for c, s in seqs.items()}, records)
    ours = our_alleles(records, Normalizer("test", fasta))
    theirs = bcftools_alleles(vcf, fasta)
    assert sum(ours.values()) > 1000
    assert ours == theirs


@needs_bcftools
def test_without_a_reference_keys_differ_from_bcftools_only_by_a_left_shift(tmp_path: Path) -> None:
    """Trimming alone finds bcftools' allele unless bcftools moved the variant further left."""
    rng = random.Random(7)
    seq = _random_reference(rng, 4000)
    fasta = write_fasta(tmp_path / "ref.fa", {"1": seq})
    records = _random_records(rng, "1", seq, 800)
    plain, aligned = Normalizer("test"), Normalizer("test", fasta)
    same = shifted = 0
    for chrom, pos, ref, alts in records:
        for alt in alts.split(","):
            trimmed, left = plain.normalize(chrom, pos, ref, alt), aligned.normalize(chrom, pos, ref, alt)
            if trimmed == left:
                same += 1
            else:
                assert left[1] < trimmed[1], (pos, ref, alt, trimmed, left)
                shifted += 1
    assert same > 0 and shifted > 0


def _pseudo_reference(path: Path, vcf: Path) -> tuple[str, dict[str, int], list[tuple[str, int, str, str]]]:
    """A FASTA holding every record's REF at its position (N elsewhere). Records whose REF
    disagrees with an earlier overlapping one are dropped, as are those the validator quarantines
    for an ALT equal to REF or given twice (bcftools norm calls them errors too)."""
    seqs: dict[str, bytearray] = {}
    records = []
    with pysam.VariantFile(str(vcf)) as vf:
        for rec in vf:
            alts = rec.alts or ()
            if rec.ref in alts or len(set(alts)) != len(alts):
                continue
            seq = seqs.setdefault(rec.chrom, bytearray())
            end = rec.pos - 1 + len(rec.ref)
            if len(seq) < end + 200:
                seq.extend(b"N" * (end + 200 - len(seq)))
            current = seq[rec.pos - 1:end].decode()
            ref = rec.ref.upper()
            if all(c in ("N", r) for c, r in zip(current, ref)):
                seq[rec.pos - 1:end] = ref.encode()
                records.append((rec.chrom, rec.pos, rec.ref, ",".join(rec.alts or ".")))
    fasta = write_fasta(path, {k: v.decode() for k, v in seqs.items()}, width=1000)
    return fasta, {k: len(v) for k, v in seqs.items()}, records


# Not multi_contig.vcf.gz: every ALT there is '.', so there would be nothing to compare.
REAL_FILES = ["sample.vcf.gz", "1kg_2020_chrM.vcf.gz", "chr_m_indels.vcf.gz", "chr22.vcf.gz", "mixed_ploidy.vcf.gz",
              "field_type_combos.vcf.gz", "CEUTrio.20.21.gatk3.4.g.vcf.bgz",
              "1kg_2020_chr20_annotations.bcf", "NA12878.prod.chr20snippet.g.vcf.gz"]


@needs_bcftools
@pytest.mark.parametrize("name", REAL_FILES)
def test_real_files_normalize_like_bcftools_norm(tmp_path: Path, name: str) -> None:
    fasta, lengths, records = _pseudo_reference(tmp_path / "pseudo.fa", REAL / name)
    kept = write_vcf(tmp_path / "kept.vcf", lengths, records)
    ours = our_alleles(records, Normalizer("test", fasta))
    theirs = bcftools_alleles(kept, fasta, ("-c", "e"))
    assert ours == theirs and sum(ours.values()) > 0
    assert bcftools_alleles(kept, None) == Counter(  # bcftools without -f splits but does not trim
        (c, p, r.upper(), a.upper()) for c, p, r, alts in records for a in alts.split(",")
        if not a.upper().strip("ACGTN"))
    plain, aligned = Normalizer("test"), Normalizer("test", fasta)
    for chrom, pos, ref, alts in records:  # without the reference: the same key, or one further right
        for alt in alts.split(","):
            trimmed, left = plain.normalize(chrom, pos, ref, alt), aligned.normalize(chrom, pos, ref, alt)
            assert trimmed == left or left[1] < trimmed[1]
