"""Variant identity: canonical contig names, trimmed (and with a reference, left-aligned) alleles.

One variant gets one key whatever the file wrote:

- Contigs: for human and mouse assemblies (GRCh38/hg38, GRCh37/hg19/b37/hs37d5, GRCm38/mm10,
  GRCm39/mm39) the canonical naming is UCSC style: ``1``/``chr1`` -> ``chr1``, ``X`` -> ``chrX``,
  ``MT``/``M``/``chrMT`` -> ``chrM``. Other contigs (decoys, HLA, unplaced) and other assemblies
  keep their names; an angle-bracketed ``<ID>`` becomes ``ID``.
- Alleles (one REF/ALT pair, after splitting multi-allelics): upper-cased, then common trailing
  bases are trimmed, then common leading bases, always keeping at least one base in each allele,
  so indels keep their anchor base. With a faidx-indexed FASTA, trimming on the right pads from
  the reference whenever an allele runs out, which left-aligns indels exactly as
  ``bcftools norm -f ref -m -any`` does (its ``realign``: 100-base padding steps, no padding
  before position 1). Without a reference there is no left shift, so the same indel written at
  two places in a repeat keeps two keys; ingest with a reference to merge them.
- Symbolic alleles (``<DEL>``, ``<NON_REF>``), breakends and ``*`` are never trimmed; their
  identity needs END and SVLEN too (``structural_extent``).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vcfstream.vcf.confinement import UNCONFINED, url_scheme

ALIGN_WINDOW = 100  # bcftools norm's default --site-win/aln_win padding step
_UCSC_ASSEMBLIES = frozenset({"grch38", "hg38", "grch37", "hg19", "b37", "hs37d5", "grcm38", "mm10",
                              "grcm39", "mm39"})
_PRIMARY_RE = re.compile(r"(?:chr)?([0-9]{1,2}|X|Y|M|MT)", re.IGNORECASE)
_BASES = "ACGTNacgtn"
_END_RE = re.compile(r"(?:^|;)END=([^;]*)")
_SVLEN_RE = re.compile(r"(?:^|;)SVLEN=([^;]*)")

SNV, MNV, INSERTION, DELETION, INDEL, SYMBOLIC = "SNV", "MNV", "insertion", "deletion", "indel", "symbolic"


def is_symbolic(alt: str) -> bool:
    """True for alleles that are not plain bases: <ID>, breakends, '*', '.' and single breakends."""
    return bool(alt.strip(_BASES)) or not alt


def variant_type(ref: str, alt: str) -> str:
    """SNV, MNV, insertion, deletion, indel (complex: lengths differ, no shared anchor) or symbolic."""
    if is_symbolic(alt):
        return SYMBOLIC
    lr, la = len(ref), len(alt)
    if lr == la:
        return SNV if lr == 1 else MNV
    if lr == 1 and (alt[0] == ref or alt[-1] == ref):
        return INSERTION
    if la == 1 and (ref[0] == alt or ref[-1] == alt):
        return DELETION
    return INDEL


def trim_alleles(pos: int, ref: str, alt: str) -> tuple[int, str, str]:
    """Trim common trailing, then leading bases, keeping one base in each allele (no reference)."""
    end = 0
    limit = min(len(ref), len(alt)) - 1
    while end < limit and ref[-1 - end] == alt[-1 - end]:
        end += 1
    if end:
        ref, alt = ref[:-end], alt[:-end]
    start = 0
    limit = min(len(ref), len(alt)) - 1
    while start < limit and ref[start] == alt[start]:
        start += 1
    if start:
        return pos + start, ref[start:], alt[start:]
    return pos, ref, alt


def structural_extent(info: str, allele_index: int = 1) -> tuple[int | None, str | None]:
    """(END, SVLEN of ALT number ``allele_index``) read from a raw INFO column; None when absent.

    A symbolic allele says nothing about its span by itself, so its key adds these two.
    """
    end = svlen = None
    match = _END_RE.search(info)
    if match and match[1].isdigit():
        end = int(match[1])
    match = _SVLEN_RE.search(info)
    if match:
        values = match[1].split(",")
        svlen = values[allele_index - 1] if len(values) >= allele_index else values[0]
        svlen = None if svlen in ("", ".") else svlen
    return end, svlen


class Normalizer:
    """Canonical contig and alleles of one allele; ``reference`` (a faidx-indexed FASTA) enables
    left-alignment and REF checks."""

    def __init__(self, assembly: str, reference: str | None = None) -> None:
        self.assembly, self.reference = assembly, reference
        self._ucsc = assembly.lower() in _UCSC_ASSEMBLIES
        self._canonical: dict[str, str] = {}
        self._fasta: Any = None
        if reference:
            import pysam  # only with a reference: keeps `vcfstream validate` quick to start

            if url_scheme(reference) is None:  # a local FASTA needs its index: htslib would write one beside it
                UNCONFINED.check_reference(reference)
            self._fasta = pysam.FastaFile(reference)
        self._fasta_names: dict[str, str | None] = {}
        self._fasta_lengths: dict[str, int] = (
            dict(zip(self._fasta.references, self._fasta.lengths)) if self._fasta else {})

    @property
    def left_aligns(self) -> bool:
        return self._fasta is not None

    def canonical_contig(self, name: str) -> str:
        canonical = self._canonical.get(name)
        if canonical is None:
            canonical = self._canonical[name] = self._canonical_uncached(name)
        return canonical

    def _canonical_uncached(self, name: str) -> str:
        if len(name) > 2 and name[0] == "<" and name[-1] == ">":
            name = name[1:-1]
        if not self._ucsc:
            return name
        m = _PRIMARY_RE.fullmatch(name)
        if not m:
            return name
        core = m[1].upper()
        if core in ("M", "MT"):
            return "chrM"
        if core.isdigit():
            core = str(int(core))  # chr01 -> chr1
        return "chr" + core

    def normalize(self, contig: str, pos: int, ref: str, alt: str) -> tuple[str, int, str, str]:
        """(canonical contig, pos, ref, alt) of one REF/ALT pair; ``pos`` is 1-based."""
        canonical = self._canonical.get(contig)
        if canonical is None:
            canonical = self.canonical_contig(contig)
        if len(ref) == 1 and len(alt) == 1:
            if alt == "*" or alt == ".":
                return canonical, pos, ref.upper(), alt
            return canonical, pos, ref.upper(), alt.upper()
        if is_symbolic(alt):
            return canonical, pos, ref.upper(), alt
        ref, alt = ref.upper(), alt.upper()
        if self._fasta is not None:
            name = self._fasta_name(contig)
            if name is not None and not ref.strip("ACGTN") and not alt.strip("ACGTN"):
                return (canonical, *self._realign(name, pos, ref, alt))
        return (canonical, *trim_alleles(pos, ref, alt))

    def normalize_many(self, contig: pa.Array, pos: pa.Array, ref: pa.Array,
                       alt: pa.Array) -> tuple[pa.Array, pa.Array, pa.Array, pa.Array, pa.Array]:
        """``normalize`` and ``variant_type`` of many alleles that are not symbolic, as arrays
        (contig, pos, ref, alt, type): one base each (SNVs) by Arrow kernels, as the first case
        of ``normalize``; the others one by one through it."""
        names = contig.unique()
        canonical = pa.array([self.canonical_contig(name) for name in names.to_pylist()], pa.string())
        contig_n = canonical.take(pc.index_in(contig, value_set=names))
        pos_n, ref_n, alt_n = pos, pc.utf8_upper(ref), pc.utf8_upper(alt)
        types = pa.repeat(SNV, len(alt))
        other = np.flatnonzero((pc.utf8_length(ref).to_numpy() != 1) | (pc.utf8_length(alt).to_numpy() != 1))
        if other.size:
            picked = [column.take(other).to_pylist() for column in (contig, pos, ref, alt)]
            _, o_pos, o_ref, o_alt = zip(*map(self.normalize, *picked))
            mask = np.zeros(len(alt), dtype=bool)
            mask[other] = True
            pos_n = pc.replace_with_mask(pos_n, mask, pa.array(o_pos, pa.int64()))
            ref_n = pc.replace_with_mask(ref_n, mask, pa.array(o_ref, pa.string()))
            alt_n = pc.replace_with_mask(alt_n, mask, pa.array(o_alt, pa.string()))
            types = pc.replace_with_mask(types, mask, pa.array(list(map(variant_type, o_ref, o_alt)), pa.string()))
        return contig_n, pos_n, ref_n, alt_n, types

    def check_ref(self, contig: str, pos: int, ref: str) -> str | None:
        """Why REF does not match the reference at ``contig:pos`` (None: it matches, or no reference)."""
        if self._fasta is None:
            return None
        name = self._fasta_name(contig)
        if name is None:
            return f"{contig}:{pos}: contig {contig!r} is not in the reference FASTA"
        if pos < 1 or pos - 1 + len(ref) > self._fasta_lengths[name]:
            return f"{contig}:{pos}: REF {ref[:20]!r} runs past the end of {name} ({self._fasta_lengths[name]} bp)"
        expected = self._fasta.fetch(name, pos - 1, pos - 1 + len(ref)).upper()
        found = ref.upper()
        if expected != found:
            # N in the reference (or in REF) matches anything: it is "unknown base"
            if all(e == f or e == "N" or f == "N" for e, f in zip(expected, found)):
                return None
            return f"{contig}:{pos}: REF {found[:50]!r} but the reference has {expected[:50]!r}"
        return None

    def _fasta_name(self, contig: str) -> str | None:
        """The FASTA's name for a VCF contig: as written, canonical, or the other naming style."""
        if contig in self._fasta_names:
            return self._fasta_names[contig]
        canonical = self.canonical_contig(contig)
        bare = canonical[3:] if canonical.startswith("chr") else canonical
        candidates = [contig, canonical, bare, "MT" if bare == "M" else bare, "chr" + bare]
        found = next((c for c in candidates if c in self._fasta_lengths), None)
        self._fasta_names[contig] = found
        return found

    def _realign(self, name: str, pos: int, ref: str, alt: str) -> tuple[int, str, str]:
        """bcftools norm's realign for one biallelic pair: trim right, padding from the reference
        whenever an allele empties (this walks indels left through repeats), then trim left."""
        assert self._fasta is not None
        while ref[-1] == alt[-1]:
            if pos == 1 and min(len(ref), len(alt)) <= 1:
                break
            ref, alt = ref[:-1], alt[:-1]
            if not ref or not alt:
                pad = min(ALIGN_WINDOW, pos - 1)
                bases = self._fasta.fetch(name, pos - 1 - pad, pos - 1).upper()
                ref, alt, pos = bases + ref, bases + alt, pos - pad
        start = 0
        limit = min(len(ref), len(alt)) - 1
        while start < limit and ref[start] == alt[start]:
            start += 1
        return pos + start, ref[start:], alt[start:]
