"""Small dataclasses passed between planning, chunk processing and the flow.

A ``Chunk`` is what a task receives: a path and a region or record range, never records.
An ``AlleleBatch`` is what reading a chunk produces: one row per published ALT allele, as an
Arrow table plus numpy genotype matrices. A ``ChunkSummary`` is what a chunk returns; summaries
merge (``+``) into the file and run summaries.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """Which file a plan was made from: device, inode, size and modification time (ns), as
    ``fstat`` gave them when it was planned. A chunk is read only from the file it names."""

    device: int
    inode: int
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class Chunk:
    """One independently retryable piece of a file.

    Region chunks (``regions`` set: (contig, start, end) triples; several small contigs may
    share a chunk) hold records whose 0-based start lies in [start, end): the index returns
    overlapping records too, which the reader drops. Range chunks (no regions) hold
    ``n_records`` data lines starting at data record ``first_record`` (0-based); ``voffset`` is a
    BGZF virtual offset (or byte offset) to seek to when known. A range chunk after the first
    carries the last few record lines before it (``lead_in``), the contig current before those
    (``lead_in_contig``) and the contigs finished by then (``finished_contigs``), so the
    validator's order, contiguity and duplicate checks go on across the boundary: what is
    quarantined does not depend on the chunk size. ``identity`` is the file's as planned: the
    reader refuses a file that is no longer that one (``vcfstream.vcf.identity``).
    """

    path: str
    index: int
    digest: str
    regions: tuple[tuple[str, int, int], ...] = ()
    first_record: int = 0
    n_records: int = 0
    voffset: int | None = None
    lead_in: tuple[str, ...] = ()
    lead_in_contig: str | None = None
    finished_contigs: tuple[str, ...] = ()
    identity: FileIdentity | None = None

    @property
    def label(self) -> str:
        if self.regions:
            first, last = self.regions[0], self.regions[-1]
            text = f"{first[0]}:{first[1] + 1}-{first[2]}"
            return text if len(self.regions) == 1 else f"{text} .. {last[0]} ({len(self.regions)} regions)"
        return f"records {self.first_record}-{self.first_record + self.n_records - 1}"

    @property
    def chunk_id(self) -> str:
        """Stable across runs of the same plan: digest, chunk number and extent."""
        return f"{self.digest[:16]}:{self.index}:{self.label}"


# Arrow schema of AlleleBatch.table: one row per ALT allele that is published.
ALLELE_SCHEMA = pa.schema(
    [
        ("message_id", pa.binary(16)),  # big-endian u128, see keys.message_id
        ("variant_key", pa.string()),  # assembly:contig:pos:ref:alt (after normalization)
        ("assembly", pa.string()),
        ("contig", pa.string()),  # normalized contig name
        ("pos", pa.int64()),  # 1-based, after normalization
        ("ref", pa.string()),
        ("alt", pa.string()),
        ("end", pa.int64()),  # 1-based inclusive end (INFO/END for symbolic alleles)
        ("variant_type", pa.string()),  # SNV, MNV, insertion, deletion, indel, symbolic
        ("allele_index", pa.int16()),  # 1-based index of this ALT in the original record
        ("n_alts", pa.int16()),  # ALT count of the original record
        ("vcf_id", pa.string()),
        ("qual", pa.float64()),
        ("filters", pa.list_(pa.string())),
        ("info", pa.string()),  # JSON object, typed by the header, Number=A/R split per allele
        ("af", pa.float64()),  # INFO/AF for this allele, else AC/AN, else null
        ("line", pa.int64()),  # 1-based line in the source file when known, else null
        ("value", pa.binary()),  # the published message (JSON: variant-message.v1, or v2 compact)
    ]
)


@dataclass(slots=True)
class AlleleBatch:
    """The alleles of one chunk, columnar.

    Genotype matrices are per allele (row) and sample (column), re-coded for this allele:
    0 = REF, 1 = this ALT, 2 = another ALT of the record, -1 = missing, -2 = no such
    ploidy slot (a haploid call in a diploid matrix).
    """

    dataset: str
    source_path: str
    source_digest: str
    samples: list[str]
    table: pa.Table
    gt: np.ndarray  # int8 (alleles, samples, max_ploidy)
    phased: np.ndarray  # bool (alleles, samples)
    dp: np.ndarray  # int32 (alleles, samples), -1 missing
    gq: np.ndarray  # int32 (alleles, samples), -1 missing
    csq_fields: list[str] | None = None  # the file header's VEP CSQ field order, if it has one
    _first_rows: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return self.table.num_rows

    def first_rows(self) -> np.ndarray:
        """Row numbers keeping the first row of every distinct variant key, in table order.

        A batch normally has one row per key; two records that normalize to the same allele are
        the exception, and stores keep the first (as the ledger does). Computed once per batch:
        every store of a group asks (the table is never modified in place).
        """
        if self._first_rows is None:
            self._first_rows = first_row_per_key(self.table.column("variant_key"))
        return self._first_rows


def first_row_per_key(keys: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Row numbers of the first row of every distinct key, in order."""
    rows = np.arange(len(keys), dtype=np.int64)
    if len(keys) == 0 or pc.count_distinct(keys).as_py() == len(keys):
        return rows
    grouped = pa.table({"key": keys, "row": rows}).group_by("key", use_threads=False).aggregate([("row", "min")])
    return np.sort(grouped.column("row_min").to_numpy())


@dataclass(slots=True)
class Quarantined:
    """A record that broke a rule: kept in the dead-letter table, not published."""

    path: str
    line: int | None
    rule: str
    message: str
    raw: str  # the raw line, truncated to a safe size


@dataclass(slots=True)
class ChunkSummary:
    """Counts of one chunk; ``+`` merges summaries of chunks and files. ``read_digest``: the digest
    of one chunk's lines as read (``ChunkRead.digest``); a merged summary has none."""

    records: int = 0
    alleles: int = 0
    reference_blocks: int = 0
    new: int = 0
    duplicates: int = 0
    quarantined: int = 0
    in_doubt: int = 0
    failovers: int = 0
    published: Counter[str] = field(default_factory=Counter)
    stored: Counter[str] = field(default_factory=Counter)
    rules: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    read_digest: str | None = None

    def __add__(self, other: ChunkSummary) -> ChunkSummary:
        return ChunkSummary(
            records=self.records + other.records,
            alleles=self.alleles + other.alleles,
            reference_blocks=self.reference_blocks + other.reference_blocks,
            new=self.new + other.new,
            duplicates=self.duplicates + other.duplicates,
            quarantined=self.quarantined + other.quarantined,
            in_doubt=self.in_doubt + other.in_doubt,
            failovers=self.failovers + other.failovers,
            published=self.published + other.published,
            stored=self.stored + other.stored,
            rules=self.rules + other.rules,
            notes=self.notes + [n for n in other.notes if n not in self.notes],
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("published", "stored", "rules"):
            data[name] = dict(getattr(self, name))
        if self.read_digest is None:
            del data["read_digest"]
        return data


@dataclass(frozen=True, slots=True)
class Acks:
    """Per-message acknowledgements, parallel to the batch that was published."""

    platform: str
    message_ids: list[bytes]
    partitions: list[int]
    offsets: list[int]

    def __len__(self) -> int:
        return len(self.message_ids)
