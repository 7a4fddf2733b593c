"""Every validation rule in one place: an id, the level it acts at, the VCF versions it applies
to, whether it is an error or a warning, and one line saying what it checks.

File-level errors reject the whole file (nothing of it is claimed or published); record-level
errors quarantine one record and the rest of the file goes on. Warnings reject nothing: they
name what the specification forbids but real files need (docs/validation.md says why, rule by
rule). Code raises a rule only through ``violation()``, which refuses an id that is not listed
here, and asks ``applies(rule, version)`` before checking a rule that not every version has.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Level = Literal["file", "record"]
Severity = Literal["error", "warning"]
Version = tuple[int, int]

FIRST_VERSION: Version = (4, 0)
NEWEST_VERSION: Version = (4, 5)


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    level: Level
    description: str
    since: Version = FIRST_VERSION  # the first VCF version the rule applies to
    until: Version = NEWEST_VERSION  # the last one
    severity: Severity = "error"

    def applies(self, version: Version) -> bool:
        return self.since <= version <= self.until

    def versions(self) -> str:
        """The versions as text, e.g. '4.3-4.5'."""
        return f"{self.since[0]}.{self.since[1]}-{self.until[0]}.{self.until[1]}"


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule: ``line`` is the 1-based line of the file, None when it is not known."""

    rule: str
    line: int | None
    message: str

    @property
    def is_warning(self) -> bool:
        return RULES[self.rule].severity == "warning"

    def describe(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}[{self.rule}] {self.message}"


# Extra fields of a rule row: (since, until, severity); all versions and "error" when absent.
W: tuple[Version, Version, Severity] = (FIRST_VERSION, NEWEST_VERSION, "warning")
V43: tuple[Version, Version] = ((4, 3), NEWEST_VERSION)
V44: tuple[Version, Version] = ((4, 4), NEWEST_VERSION)
V45: tuple[Version, Version] = ((4, 5), NEWEST_VERSION)

_FILE_RULES: tuple[tuple[Any, ...], ...] = (
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
    ("header.control", "a header line holds a NUL byte (PostgreSQL text and jsonb refuse it)"),
    ("header.fileformat", "the first line must be ##fileformat=VCFv4.x with a supported version"),
    ("header.version_unknown", "a version newer than 4.5 is validated by the 4.5 rules", *W),
    ("header.line", "a line before #CHROM that is not a ##meta-information line"),
    ("header.chrom_line", "the header must end with a #CHROM line"),
    ("header.columns", "the #CHROM line must name the 8 fixed columns, tab-separated, in order"),
    ("header.samples", "FORMAT must be followed by sample names, and only then; no empty names"),
    ("header.sample_duplicate", "sample names must be unique"),
    # limits on what one file may ask of a reader (vcfstream/vcf/limits.py, docs/validation.md "Limits")
    ("header.size", "the header (lines before the first record) is within the header line and byte limits"),
    ("header.sample_count", "the #CHROM line has no more sample columns than the sample limit"),
    ("index.size", "a .tbi/.csi index is within the index size limit (decompressed)"),
    ("index.no_records", "an index that lists no records for a file that has some is not the file's index"),
    ("meta.syntax", "a meta line must be ##key=value; structured values are <key=value,...> with valid quoting"),
    ("meta.empty", "a meta-information value must not be empty"),
    ("meta.unclosed", "a structured value opened with '<' must close with '>'"),
    ("meta.fileformat_repeated", "##fileformat appears only once, as the first line"),
    ("meta.field_order", "ID is the first field of a structured line; INFO/FORMAT also need Number, Type, Description"),
    ("meta.id", "a structured line needs a valid ID (characters allowed for its kind)"),
    ("meta.duplicate_id", "an INFO, FORMAT, FILTER or ALT ID is defined twice"),
    ("meta.number", "Number must be an integer, A, R (VCF >= 4.2), G or '.'"),
    ("meta.type", "Type must be Integer, Float, Flag (INFO only), Character or String"),
    ("meta.flag_number", "a Flag has Number=0 (the 4.3 suite and htslib accept others)", *V43, "warning"),
    ("meta.description", "Description is required for INFO/FORMAT and must be double-quoted"),
    ("meta.quoted", "ID, Number, Type, Genomes, Mixture and length are plain tokens, never quoted"),
    ("meta.reserved", "a reserved INFO/FORMAT key must keep the Number and Type the specification fixes"),
    ("meta.alt_id", "an ALT ID must not hold whitespace, commas or angle brackets; its first level is a known type"),
    ("meta.alt_description", "an ALT line has a double-quoted Description", *V43),
    ("meta.contig", "a contig ID follows the SAM reference-name grammar; length is an integer"),
    ("meta.contig_name", "a contig ID holds ':' or '*' (GRCh38 HLA contigs do; the 4.3 suite refuses them)", *W),
    ("meta.sample", "a SAMPLE line with Mixture needs Genomes with as many entries"),
    ("meta.sample_id", "a SAMPLE line has an ID free of whitespace and ,;=<>\"* characters", *V43),
    ("meta.sample_value", "a SAMPLE field declared by a ##META line with Values takes one of them", *V43),
    ("meta.pedigree", "PEDIGREE values are genome IDs: no whitespace or :;,=<> characters"),
    ("meta.pedigree_id", "a PEDIGREE line starts with its ID", *V43),
    ("meta.meta", "a META line has ID first, Number (integer or '.'), Type and Values=[...]", *V43),
    ("meta.optional_unquoted", "optional fields of INFO, FORMAT, FILTER and ALT lines are quoted", *V43),
    ("meta.number_local", "Number=LA, LR, LG (local alleles) are FORMAT Numbers of VCF 4.5", *V45),
    ("meta.url", "##assembly and ##pedigreeDB values that are URLs must be well-formed"),
)

_RECORD_RULES: tuple[tuple[Any, ...], ...] = (
    ("record.encoding", "the record holds bytes that are not UTF-8"),
    ("record.control", "the record holds a control character (NUL and the like; TAB separates columns)"),
    ("record.line_length", "a data line is within the line length limit (ingest; vcfstream/vcf/limits.py)"),
    ("record.alt_count", "a record has no more ALT alleles than the ALT limit (ingest; vcfstream/vcf/limits.py)"),
    ("record.alt_line_bytes", ("a record's ALT count times its line length is within their limit: each ALT is a "
                               "message carrying the record's calls (ingest; vcfstream/vcf/limits.py)")),
    ("record.encode", "the record could be checked and typed but not built into the chunk's columns (reader safety net)"),
    ("message.size", "each message of the record fits the platforms' smallest size limit, compact at least (ingest)"),
    ("record.columns", "a record has as many tab-separated columns as the #CHROM line"),
    ("record.parse", "a value passed validation but could not be typed (reader safety net)"),
    ("record.final_newline", "the last record ends with a newline (htslib reads it without)", *W),
    ("chrom.chars", "CHROM is a valid contig name (SAM grammar) or an angle-bracketed <ID>"),
    ("chrom.name", "CHROM holds ':' or '*' (GRCh38 HLA contigs do; the 4.3 suite refuses them)", *W),
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
    ("alt.duplicate", "an ALT allele is listed twice (from 4.4 a symbolic one may, told apart by CN) or equals REF"),
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
    ("sample.laa", "LAA lists distinct ALT indexes (1..ALT count) and precedes the local-allele fields", *V45),
    ("sample.local_number", "an LA, LR or LG value has the count its LAA implies", *V45),
    ("sample.lgt", "LGT refers to REF or a local allele listed in LAA", *V45),
    ("info.percent", "a '%' in INFO starts a percent encoding %XX (VCF >= 4.3)", *V43),
    ("info.svlen", "a DEL, DUP, INV or CNV symbolic allele with END and SVLEN has END = POS + |SVLEN|", *V44),
    ("info.cn_svlen", "with FORMAT CN, a record's CNV, DEL and DUP symbolic alleles have one SVLEN", *V44),
    ("info.svclaim", "SVCLAIM is D, J, DJ or '.' per ALT, as each symbolic allele's type allows", *V44),
    ("record.duplicate", "the same normalized variant (CHROM, POS, REF, ALT) appears twice"),
)

RULES: dict[str, Rule] = {
    **{rule_id: Rule(rule_id, "file", text, *extra) for rule_id, text, *extra in _FILE_RULES},
    **{rule_id: Rule(rule_id, "record", text, *extra) for rule_id, text, *extra in _RECORD_RULES},
}


def applies(rule: str, version: Version) -> bool:
    """Whether ``rule`` is checked for files of ``version``."""
    return RULES[rule].applies(version)


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
