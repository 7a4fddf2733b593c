"""Bounds on what one input file may ask of a reader: line, ALT, sample, header and index sizes.

Hostile or broken files must end in a clear error or a quarantined record, never in a hang or
an exhausted memory. A record over a record-level limit is quarantined with its line and rule
(``record.line_length``, ``record.alt_count``, ``record.alt_line_bytes``) and the rest of the
file is read; a file over a
file-level limit is rejected before anything of it is claimed (``header.size``,
``header.sample_count``, ``index.size``: a ``VcfFormatError`` naming the file, line and rule).

The defaults fit real data with room to spare (docs/validation.md, "Limits", says why each);
``IngestSettings`` (``VCFSTREAM_MAX_*``) sets them per deployment.
"""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1 << 20
# An allele's index is an int16 in the allele table (and htslib's BCF keeps alleles in 16 bits).
ALT_INDEX_MAX = 32_767


@dataclass(frozen=True, slots=True)
class ReadLimits:
    """The limits one file is read under (carried by its ``SourceFile`` to every chunk)."""

    max_line_bytes: int = 64 * MiB  # one data line, newline excluded
    max_alts: int = 1_000  # ALT alleles of one record
    max_samples: int = 2_000_000  # sample columns of the #CHROM line
    max_header_lines: int = 1_000_000  # lines before the first record, #CHROM included
    max_header_bytes: int = 128 * MiB  # their bytes
    max_index_bytes: int = 64 * MiB  # a .tbi/.csi index, decompressed
    # ALT alleles times line bytes of one record: each ALT is a message carrying the record's calls,
    # so this bounds what one record makes (10k ALTs in a 73 kB line made 933 MB of messages)
    max_alt_line_bytes: int = 256 * MiB

    def __post_init__(self) -> None:
        if not 1 <= self.max_alts <= ALT_INDEX_MAX:
            raise ValueError(f"max_alts must be 1..{ALT_INDEX_MAX}, not {self.max_alts}")
        for name in ("max_line_bytes", "max_alt_line_bytes", "max_samples", "max_header_lines", "max_header_bytes",
                     "max_index_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")


DEFAULT_LIMITS = ReadLimits()
