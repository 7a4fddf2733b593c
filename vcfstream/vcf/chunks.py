"""Splitting a file into chunks of about the same work.

A chunk's work is counted in genotype cells (records x samples): ``chunk_size`` is the number of
records of a file of up to ``NARROW_SAMPLES`` samples in a chunk, so a wider file's chunks hold
``chunk_size x NARROW_SAMPLES / samples`` records (``records_per_chunk``): the default 50,000
plans 50,000 records of a 3-sample file, 150 of a 1,000-sample one and 59 of a 2,504-sample
one. Reading, the genotype matrices, the messages (each carries every sample's call) and the
stores' per-call rows all grow with the cells, so this is what keeps a chunk's memory bounded
whatever the width of the file.

With a .tbi/.csi index: per contig, the record count comes from the index's pseudo-bin and the
record density from the compressed span of its finest bins; each contig is cut into regions
holding about that many records. pysam exposes neither (htslib's ``hts_idx_get_stat`` is not
wrapped), hence the small index parser below. An index without the pseudo-bin (older htslib,
some other writers) has no counts: the records of each contig it has bins for are counted by a
region query instead. A plan of no records for a file that has some (an index of another file)
is refused (``VcfFormatError``, rule ``index.no_records``), never an empty run. Without an
index: one sequential scan records the stream offset every that many data lines.
"""

from __future__ import annotations

import gzip
import itertools
import math
import struct
from collections import deque
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import pysam

from vcfstream.errors import VcfFormatError
from vcfstream.model import Chunk
from vcfstream.runtime.memo import Kept
from vcfstream.vcf.identity import planned_file
from vcfstream.vcf.limits import DEFAULT_LIMITS
from vcfstream.vcf.source import SourceFile, open_text, skip_header

# Far past any contig end (TBI's limit is 2^29; CSI can go higher) and safe for htslib.
REGION_END = (1 << 31) - 1
# Record lines before a range chunk that its validator re-reads to continue (see Chunk): at most
# LEAD_IN, and fewer when they hold more than LEAD_IN_BYTES (very wide records), at least one.
LEAD_IN = 8
LEAD_IN_BYTES = 256 * 1024
# Files this wide or narrower have chunk_size records per chunk; wider ones fewer (see above).
NARROW_SAMPLES = 3
_SKIP_SIZE = 1 << 20  # bytes read at a time past a line over the length limit


@dataclass(frozen=True, slots=True)
class ContigStats:
    tid: int
    n_records: int
    leaf_weights: list[tuple[int, int]]  # (bin start position, estimated bytes), by position
    leaf_span: int = 1 << 14  # positions a leaf bin covers
    counted: bool = True  # n_records is the index's (its pseudo-bin, or no bins: none); else 0, unknown


def plan_chunks(source: SourceFile, chunk_size: int) -> list[Chunk]:
    """The chunks of one file, in file order, each about ``chunk_size`` x ``NARROW_SAMPLES``
    genotype cells (``records_per_chunk``); remembered by content (the digest), since one
    ingest plans a file more than once and a file without an index is planned by a whole scan."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")
    records = records_per_chunk(chunk_size, len(source.samples))
    key = (source.path, source.digest, source.format, source.index, records)
    within_bins = len(source.samples) > NARROW_SAMPLES

    def plan() -> tuple[Chunk, ...]:
        # read from the file that was opened (vcfstream.vcf.identity): a lead-in is never another file's lines
        with planned_file(source.path, source.identity, "not planned") as planned:
            if source.index is None:
                return tuple(_plan_by_scan(source, records, planned.name))
            return tuple(_plan_from_index(source, records, within_bins, planned.name))

    chunks = _plans.get(key, plan)
    # a plan kept from the same content opened before (a touched file) names the file as it is now
    return [chunk if chunk.identity == source.identity else replace(chunk, identity=source.identity)
            for chunk in chunks]


def records_per_chunk(chunk_size: int, n_samples: int) -> int:
    """Records in a chunk of a file of ``n_samples`` samples: as many genotype cells as
    ``chunk_size`` records of a ``NARROW_SAMPLES``-sample file, and at least one record.

    >>> records_per_chunk(50_000, 3), records_per_chunk(50_000, 0), records_per_chunk(50_000, 1_000)
    (50000, 50000, 150)
    """
    return max(1, chunk_size * NARROW_SAMPLES // max(n_samples, NARROW_SAMPLES))


_plans: Kept[tuple[Chunk, ...]] = Kept(16)


def _plan_from_index(source: SourceFile, chunk_size: int, within_bins: bool = False,
                     name: str | None = None) -> list[Chunk]:
    """Regions of about ``chunk_size`` records; whole small contigs are packed together.
    ``within_bins``: cut inside index bins too (see ``_split_contig``), for wide files. ``name``:
    where to open the file (else its path)."""
    name = name or source.path
    # sized and parsed before htslib loads it (for the names): an index over the limit is refused unread
    index_stats = read_index_stats(source.index, source.limits.max_index_bytes)  # type: ignore[arg-type]
    names = _index_contig_names(source, name)
    with ExitStack() as stack:
        records = stack.enter_context(pysam.VariantFile(name, index_filename=source.index)) if within_bins else None
        return _plan_regions(source, chunk_size, names, records, index_stats, name)


def _plan_regions(source: SourceFile, chunk_size: int, names: list[str],
                  records: pysam.VariantFile | None, index_stats: list[ContigStats], name: str) -> list[Chunk]:
    """``_plan_from_index`` with ``names`` (tid -> contig) and, to cut inside bins, the file
    opened for ``_first_starts``."""
    groups: list[tuple[list[tuple[str, int, int]], int]] = []
    pending: list[tuple[str, int, int]] = []
    pending_records = 0
    all_stats = [stats for stats in index_stats if stats.tid < len(names)]
    counts = _count_records(source, [names[stats.tid] for stats in all_stats if not stats.counted], name)
    for stats in all_stats:
        contig = names[stats.tid]
        if not stats.counted:
            stats = replace(stats, n_records=counts[contig], counted=True)
        if stats.n_records == 0:
            continue
        if stats.n_records < chunk_size:
            if pending and pending_records + stats.n_records > chunk_size:
                groups.append((pending, pending_records))
                pending, pending_records = [], 0
            pending.append((contig, 0, REGION_END))
            pending_records += stats.n_records
            continue
        if pending:  # keep file order: flush small contigs before a large one
            groups.append((pending, pending_records))
            pending, pending_records = [], 0
        pieces = _split_contig(stats, chunk_size, None if records is None else _first_starts(records, contig))
        for start, end in pieces:
            groups.append(([(contig, start, end)], stats.n_records // len(pieces)))
    if pending:
        groups.append((pending, pending_records))
    if not groups and _has_records(source, name):
        raise VcfFormatError(source.path, None, "index.no_records",
                             f"the index {source.index} lists no records, but the file has records: the index "
                             f"is not this file's; rebuild it (tabix -p vcf, bcftools index) or remove it")
    return [Chunk(source.path, i, source.digest, regions=tuple(regions), n_records=n, identity=source.identity)
            for i, (regions, n) in enumerate(groups)]


def _count_records(source: SourceFile, contigs: list[str], name: str) -> dict[str, int]:
    """Records of each contig by a region query (for an index without counts)."""
    if not contigs:
        return {}
    if source.format == "bcf":
        with pysam.VariantFile(name, index_filename=source.index) as vf:
            return {contig: sum(1 for _ in vf.fetch(contig)) for contig in contigs}
    with pysam.TabixFile(name, index=source.index) as tbx:
        return {contig: sum(1 for _ in tbx.fetch(contig)) for contig in contigs}


def _has_records(source: SourceFile, name: str) -> bool:
    """Whether the file has a record line after its header (read from the start, not the index)."""
    if source.format == "bcf":
        with pysam.VariantFile(name) as vf:
            return next(iter(vf), None) is not None
    with open_text(name, source.format) as stream:
        skip_header(stream)
        return any(line.strip() and not line.startswith(b"#") for line in iter(stream.readline, b""))


def _split_contig(stats: ContigStats, chunk_size: int,
                  within_bins: Callable[[int, int], int | None] | None = None) -> list[tuple[int, int]]:
    """Cut points so that each region holds about the same compressed bytes: at bin starts, and
    given ``within_bins`` (see ``_first_starts``) inside a bin heavier than a region is to be (a
    wide file's bin of 16 kbp can hold hundreds of records, where its chunk holds tens)."""
    parts = math.ceil(stats.n_records / chunk_size)
    weights = stats.leaf_weights
    if parts <= 1 or not weights:
        return [(0, REGION_END)]
    total = sum(w for _, w in weights)
    if within_bins is not None and max(w for _, w in weights) * parts > total:
        return _split_within_bins(stats, parts, total, within_bins)
    if len(weights) < 2:
        return [(0, REGION_END)]
    cuts: list[int] = []
    acc = 0
    for position, weight in weights:
        target = total * (len(cuts) + 1) / parts
        if acc >= target and len(cuts) < parts - 1 and position > (cuts[-1] if cuts else 0):
            cuts.append(position)
        acc += weight
    bounds = [0, *cuts, REGION_END]
    return list(itertools.pairwise(bounds))


def _split_within_bins(stats: ContigStats, parts: int, total: int,
                       first_start: Callable[[int, int], int | None]) -> list[tuple[int, int]]:
    """Cut points at every ``total / parts`` bytes, placed inside a bin in proportion: its
    records are taken to be spread evenly from its first record's start (``first_start(bin
    start, bin end)``, 0-based) to the bin's end; at a contig's start, or in a sparse bin, the
    first record can lie far into the bin."""
    cuts: list[int] = []
    acc = 0
    k = 1
    for position, weight in stats.leaf_weights:
        if k < parts and acc + weight > total * k / parts:
            begin = max(position, first_start(position, position + stats.leaf_span) or position)
            span = position + stats.leaf_span - begin
            while k < parts and acc + weight > total * k / parts:
                cut = begin + int((total * k / parts - acc) / weight * span)
                if cut > (cuts[-1] if cuts else 0):
                    cuts.append(cut)
                k += 1
        acc += weight
    return list(itertools.pairwise([0, *cuts, REGION_END]))


def _first_starts(records: pysam.VariantFile, contig: str) -> Callable[[int, int], int | None]:
    """``(start, end) -> `` the 0-based start of the first record of ``contig`` starting in
    [start, end), or None; reads one BGZF block or so per call."""

    def first_start(start: int, end: int) -> int | None:
        for rec in records.fetch(contig, start, end):
            if rec.start >= start:
                return int(rec.start)
        return None

    return first_start


def _index_contig_names(source: SourceFile, name: str) -> list[str]:
    """Reference names in index order (tid -> name)."""
    if source.format == "bcf":
        with pysam.VariantFile(name) as vf:
            return [contig.name for contig in vf.header.contigs.values()]
    with pysam.TabixFile(name, index=source.index) as tbx:
        return list(tbx.contigs)


def read_index_stats(index_path: str, max_bytes: int = DEFAULT_LIMITS.max_index_bytes) -> list[ContigStats]:
    """Per-reference record counts and leaf-bin byte weights from a .tbi or .csi file; an index
    over ``max_bytes`` decompressed is refused (``VcfFormatError``, rule ``index.size``) before
    more of it is read or parsed."""
    with gzip.open(index_path, "rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise VcfFormatError(index_path, None, "index.size",
                             f"the index is over the limit of {max_bytes:,} bytes decompressed "
                             f"(VCFSTREAM_MAX_INDEX_BYTES): remove or rebuild it (tabix -p vcf, bcftools index)")
    magic = data[:4]
    if magic == b"TBI\x01":
        min_shift, depth = 14, 5
        n_ref, _fmt, _cs, _cb, _ce, _meta, _skip, l_nm = struct.unpack_from("<8i", data, 4)
        pos = 36 + l_nm
        linear = True
    elif magic == b"CSI\x01":
        min_shift, depth, l_aux = struct.unpack_from("<3i", data, 4)
        pos = 16 + l_aux
        (n_ref,) = struct.unpack_from("<i", data, pos)
        pos += 4
        linear = False
    else:
        raise ValueError(f"{index_path}: not a TBI or CSI index")
    leaf_first = ((1 << (3 * depth)) - 1) // 7
    pseudo_bin = ((1 << (3 * (depth + 1))) - 1) // 7 + 1
    result: list[ContigStats] = []
    for tid in range(n_ref):
        (n_bin,) = struct.unpack_from("<i", data, pos)
        pos += 4
        n_records, pseudo_bin_seen = 0, False
        leaves: list[tuple[int, int]] = []
        for _ in range(n_bin):
            (bin_id,) = struct.unpack_from("<I", data, pos)
            pos += 4 if linear else 12  # CSI stores a loffset after the bin id
            (n_chunk,) = struct.unpack_from("<i", data, pos)
            pos += 4
            chunk_pairs = struct.unpack_from(f"<{2 * n_chunk}Q", data, pos)
            pos += 16 * n_chunk
            if bin_id == pseudo_bin:
                n_records = chunk_pairs[2] if n_chunk >= 2 else 0
                pseudo_bin_seen = True
            elif bin_id >= leaf_first:
                span = sum(_voffset_distance(chunk_pairs[i], chunk_pairs[i + 1])
                           for i in range(0, len(chunk_pairs), 2))
                leaves.append(((bin_id - leaf_first) << min_shift, span))
        if linear:
            (n_intv,) = struct.unpack_from("<i", data, pos)
            pos += 4 + 8 * n_intv
        if n_bin:  # a reference without bins has no records: no object for it (an index may claim millions)
            leaves.sort()
            result.append(ContigStats(tid, n_records, leaves, 1 << min_shift, counted=pseudo_bin_seen))
    return result


def _voffset_distance(begin: int, end: int) -> int:
    """Approximate uncompressed bytes between two BGZF virtual offsets (4:1 compression)."""
    return max(1, ((end >> 16) - (begin >> 16)) * 4 + (end & 0xFFFF) - (begin & 0xFFFF))


def _plan_by_scan(source: SourceFile, chunk_size: int, name: str | None = None) -> list[Chunk]:
    """Sequential chunks: one pass noting the offset of every ``chunk_size``-th record, and what
    the validator needs to continue there (``Chunk.lead_in``, ``lead_in_contig``,
    ``finished_contigs``). The contig order is followed as the validator follows it: a record
    moves it only if its columns and CHROM pass and its contig is not finished. ``name``: where
    to open the file (else its path)."""
    from vcfstream.vcf.validation import RecordChecker, check_header  # the validator imports this package's model

    checker = RecordChecker(check_header(source.path, source.header_lines))
    chunks: list[Chunk] = []
    # (finished contigs, current contig) before each of the last records, with the record
    # (its line, or a pysam record turned into text only when a chunk starts)
    recent: deque[tuple[int, str | None, Any]] = deque(maxlen=LEAD_IN)
    finished: list[str] = []
    finished_set: set[str] = set()
    current: str | None = None
    total = 0

    def start_chunk(offset: int) -> None:
        kept = [(n, contig, str(item)) for n, contig, item in recent]
        while len(kept) > 1 and sum(len(text) for _, _, text in kept) > LEAD_IN_BYTES:
            kept.pop(0)  # wide records: fewer of them
        n_finished, contig = (kept[0][0], kept[0][1]) if kept else (len(finished), current)
        chunks.append(Chunk(source.path, len(chunks), source.digest, first_record=total, voffset=offset,
                            lead_in=tuple(text for _, _, text in kept), lead_in_contig=contig,
                            finished_contigs=tuple(finished[:n_finished]), identity=source.identity))

    def follow(item: Any, chrom: str, chrom_seen: str | None) -> str | None:
        """Track the validator's contig through this record; returns the CHROM now current."""
        nonlocal current
        recent.append((len(finished), current, item))
        if chrom == chrom_seen:
            return chrom_seen
        key = checker.record_contig(str(item).rstrip("\r\n").split("\t"))
        if key is None or key in finished_set:
            return chrom_seen  # refused, or a contiguity violation: the current contig stays
        if key != current:
            if current is not None:
                finished.append(current)
                finished_set.add(current)
            current = key
        return chrom

    chrom_seen: str | None = None  # CHROM text of the record that last moved the contig
    if source.format == "bcf":
        with pysam.VariantFile(name or source.path) as vf:
            offset = vf.tell()
            for rec in vf:
                if total % chunk_size == 0:
                    start_chunk(offset)
                chrom_seen = follow(rec, rec.chrom, chrom_seen)
                total += 1
                offset = vf.tell()
    else:
        with open_text(name or source.path, source.format) as stream:
            skip_header(stream)
            offset = stream.tell()
            max_line = source.limits.max_line_bytes
            for line in iter(partial(stream.readline, max_line + 2), b""):  # readline keeps tell() exact per line
                if len(line) - line.endswith(b"\n") > max_line:  # over the length limit: skipped, not decoded
                    if not line.endswith(b"\n"):  # (the reader quarantines it)
                        while (rest := stream.readline(_SKIP_SIZE)) and not rest.endswith(b"\n"):
                            pass
                    line = line[:1]
                if line.startswith(b"#") or not line.strip():
                    offset = stream.tell()
                    continue
                if total % chunk_size == 0:
                    start_chunk(offset)
                try:
                    text = line.decode("utf-8")
                except UnicodeDecodeError:
                    pass  # the reader quarantines it before the validator sees it
                else:
                    chrom_seen = follow(text, text.split("\t", 1)[0], chrom_seen)
                total += 1
                offset = stream.tell()
    return [replace(chunk, n_records=min(chunk_size, total - chunk.first_record)) for chunk in chunks]
