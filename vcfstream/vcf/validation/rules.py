"""Every validation rule in one place: an id, the level it acts at, and one line saying what it checks.

File-level rules reject the whole file (nothing of it is claimed or published); record-level rules
quarantine one record and the rest of the file goes on. Code raises a rule only through
``violation()``, which refuses an id that is not listed here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Level = Literal["file", "record"]


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    level: Level
    description: str


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule: ``line`` is the 1-based line of the file, None when it is not known."""

    rule: str
    line: int | None
    message: str

    def describe(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}[{self.rule}] {self.message}"


_FILE_RULES = (
    # the container
    ("file.missing", "the path does not exist"),
    ("file.directory", "the path is a directory, not a VCF/BCF file"),
    ("file.unreadable", "the file cannot be opened for reading"),
    ("file.empty", "the file is empty"),
    ("file.not_vcf", "the bytes are neither VCF text nor BCF (binary garbage, another format)"),
    ("file.compression", "gzip/BGZF data that cannot be decompressed"),
    ("file.truncated", "compressed data ends early (BGZF end-of-file marker missing or stream cut short)"),
    ("file.bcf", "a BCF file htslib cannot decode"),
    # the header
    ("header.encoding", "a header line is not valid UTF-8 (sample names included)"),
    ("header.fileformat", "the first line must be ##fileformat=VCFv4.x with a supported version"),
    ("header.line", "a line before #CHROM that is not a ##meta-information line"),
    ("header.chrom_line", "the header must end with a #CHROM line"),
    ("header.columns", "the #CHROM line must name the 8 fixed columns, tab-separated, in order"),
    ("header.samples", "FORMAT must be followed by sample names, and only then; no empty names"),
    ("header.sample_duplicate", "sample names must be unique"),
    ("meta.syntax", "a meta line must be ##key=value; structured values are <key=value,...> with valid quoting"),
    ("meta.empty", "a meta-information value must not be empty"),
    ("meta.unclosed", "a structured value opened with '<' must close with '>'"),
    ("meta.fileformat_repeated", "##fileformat appears only once, as the first line"),
    ("meta.field_order", "ID is the first field of a structured line; INFO/FORMAT also need Number, Type, Description"),
    ("meta.id", "a structured line needs a valid ID (characters allowed for its kind)"),
    ("meta.duplicate_id", "an INFO, FORMAT, FILTER or ALT ID is defined twice"),
    ("meta.number", "Number must be an integer, A, R (VCF >= 4.2), G or '.'"),
    ("meta.type", "Type must be Integer, Float, Flag (INFO only), Character or String"),
    ("meta.flag_number", "a Flag must have Number=0 (VCF >= 4.3)"),
    ("meta.description", "Description is required for INFO/FORMAT and must be double-quoted"),
    ("meta.quoted", "ID, Number, Type, Genomes, Mixture and length are plain tokens, never quoted"),
    ("meta.reserved", "a reserved INFO/FORMAT key must keep the Number and Type the specification fixes"),
    ("meta.alt_id", "an ALT ID must not hold whitespace, commas or angle brackets; its first level is a known type"),
    ("meta.contig", "a contig ID follows the SAM reference-name grammar; length is an integer"),
    ("meta.sample", "a SAMPLE line with Mixture needs Genomes with as many entries"),
    ("meta.pedigree", "PEDIGREE values are genome IDs: no whitespace or :;,=<> characters"),
    ("meta.url", "##assembly and ##pedigreeDB values that are URLs must be well-formed"),
)

_RECORD_RULES = (
    ("record.encoding", "the record holds bytes that are not UTF-8"),
    ("record.columns", "a record has as many tab-separated columns as the #CHROM line"),
    ("record.parse", "a value passed validation but could not be typed (reader safety net)"),
    ("chrom.chars", "CHROM is a valid contig name (SAM grammar) or an angle-bracketed <ID>"),
    ("chrom.undeclared", "CHROM must be declared by a ##contig line when the header declares contigs"),
    ("chrom.contiguous", "all records of one CHROM form one contiguous block"),
    ("pos.syntax", "POS is a non-negative integer"),
    ("pos.range", "POS fits a 32-bit integer and lies within the contig (length + 1 for telomeres)"),
    ("pos.unsorted", "positions increase within a CHROM"),
    ("id.syntax", "ID is '.' or ';'-separated identifiers without whitespace or empty entries"),
    ("id.duplicate", "an identifier is repeated within one ID column"),
    ("ref.bases", "REF is one or more of A, C, G, T, N (any case)"),
    ("ref.mismatch", "REF differs from the reference FASTA at that position"),
    ("alt.bases", "each ALT is bases, '*', a symbolic <ID>, a breakend, or '.' alone"),
    ("alt.symbolic", "a symbolic allele is <ID> with an ID free of whitespace, commas and angle brackets"),
    ("alt.breakend", "a breakend is bases plus [chr:pos[ or ]chr:pos] (or a single breakend .A / A.)"),
    ("alt.duplicate", "an ALT allele is listed twice or equals REF"),
    ("qual.syntax", "QUAL is '.' or a floating-point number"),
    ("qual.range", "QUAL is not negative"),
    ("filter.syntax", "FILTER is PASS, '.', or ';'-separated codes without whitespace, empty or '.' entries"),
    ("filter.reserved", "'0' is reserved and must not be used as a filter code"),
    ("filter.duplicate", "a filter code is repeated in one record"),
    ("filter.undeclared", "a filter code must be declared when the header declares FILTERs"),
    ("info.syntax", "INFO is '.' or ';'-separated key[=value] entries, none empty"),
    ("info.key", "an INFO key follows the key grammar of the file's VCF version"),
    ("info.duplicate", "an INFO key appears twice in one record"),
    ("info.flag", "a Flag takes no value (0 and 1 are tolerated)"),
    ("info.number", "an INFO value has the count its Number declares (A, R, fixed)"),
    ("info.type", "each INFO value parses as its declared Type"),
    ("info.integer_range", "an Integer fits 32 bits and avoids the BCF-reserved -2^31..-2^31+7"),
    ("info.value", "a reserved INFO key holds a meaningful value (counts >= 0, CIGAR grammar, END >= POS)"),
    ("format.syntax", "FORMAT keys are non-empty, valid, unique, with GT first when present"),
    ("sample.fields", "a sample has no more ':'-separated fields than FORMAT keys, none empty"),
    ("gt.syntax", "GT is allele indexes or '.' joined by '/' or '|'"),
    ("gt.allele_range", "a GT allele index refers to REF or an existing ALT"),
    ("sample.number", "a sample value has the count its Number declares (A, R, G from ploidy, fixed)"),
    ("sample.type", "each sample value parses as its declared Type"),
    ("sample.integer_range", "an Integer fits 32 bits and avoids the BCF-reserved -2^31..-2^31+7"),
    ("sample.value", "a reserved FORMAT key holds a meaningful value (DP, GQ, PS >= 0)"),
    ("record.duplicate", "the same normalized variant (CHROM, POS, REF, ALT) appears twice"),
)

RULES: dict[str, Rule] = {
    **{rule_id: Rule(rule_id, "file", text) for rule_id, text in _FILE_RULES},
    **{rule_id: Rule(rule_id, "record", text) for rule_id, text in _RECORD_RULES},
}


def violation(rule: str, line: int | None, message: str) -> Violation:
    """A ``Violation`` of a listed rule (an unlisted id is a programming error)."""
    if rule not in RULES:
        raise KeyError(f"unknown validation rule {rule!r}: add it to vcfstream/vcf/validation/rules.py")
    return Violation(rule, line, message)


SHOWN_VALUE = 80  # characters of an offending value quoted in a message


def shown(value: str) -> str:
    """``value`` quoted for a message, cut to a readable size (a 10 MB INFO stays a short message)."""
    if len(value) > SHOWN_VALUE:
        return repr(value[:SHOWN_VALUE]) + f"... ({len(value)} chars)"
    return repr(value)
