"""What the VCF specification (4.0-4.5) fixes: versions, reserved keys, value grammars.

Sources: VCFv4.2.tex to VCFv4.5.tex (sections "Meta-information lines", "Data lines", the
reserved INFO/FORMAT tables, 4.5's "Local alleles"). Where the versions differ, tables are keyed
by version; which rule applies to which version is in ``rules.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

Version = tuple[int, int]

SUPPORTED_VERSIONS: frozenset[Version] = frozenset({(4, 0), (4, 1), (4, 2), (4, 3), (4, 4), (4, 5)})
FILEFORMAT_RE = re.compile(r"##fileformat=VCFv(\d+)\.(\d+)")

FIXED_COLUMNS = ("#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO")

INT32_MAX = 2**31 - 1
INT32_MIN_ALLOWED = -(2**31) + 8  # -2^31 .. -2^31+7 are reserved by BCF and so disallowed in VCF too

# Floats as the spec writes them (4.3 section 1.3); integers are plain signed decimals. The
# mantissa (digits, digits.digits or .digits) has one way to match and possessive digit runs, so a
# long value that fails costs linear time (``[0-9]*\.?[0-9]+`` backtracked quadratically).
FLOAT_PATTERN = (r"[-+]?(?:(?:[0-9]++(?:\.[0-9]++)?|\.[0-9]++)(?:[eE][-+]?[0-9]++)?"
                 r"|[Ii][Nn][Ff](?:[Ii][Nn][Ii][Tt][Yy])?|[Nn][Aa][Nn])")
FLOAT_RE = re.compile(FLOAT_PATTERN)
INTEGER_RE = re.compile(r"[-+]?[0-9]++")
CIGAR_RE = re.compile(r"(?:[0-9]+[MIDNSHP=X])+")

BASES = "ACGTNacgtn"

# INFO/FORMAT keys. 4.3 gives a grammar, used for FORMAT keys of every version (4.1/4.2 say
# "alphanumeric", but GATK's MIN_DP in 4.1/4.2 gVCFs is everywhere). For INFO keys before 4.3
# only separators and whitespace are excluded (real 4.2 files carry keys like GERP++_RS).
KEY_RE_43 = re.compile(r"[A-Za-z_][0-9A-Za-z_.]*")
INFO_KEY_RE_OLD = re.compile(r"[^\s;=,:\"<>]+")

# Contig names: SAM reference-name grammar (4.3 section 1.4.7), used for every version because
# real 4.1/4.2 files name GRCh38 HLA contigs like HLA-A*01:01:01:01.
CONTIG_RE = re.compile(r"[0-9A-Za-z!#$%&+./:;?@^_|~-][0-9A-Za-z!#$%&*+./:;=?@^_|~-]*")

# ALT IDs: first level of the colon-separated type. DEL..CNV are 4.1/4.2, BND joins in 4.3.
# Widely written conventions are accepted too: NON_REF (GATK gVCF) and '*' (4.4 gVCF '<*>')
# reference-block alleles, CN0, CN1... (1000 Genomes copy-number alleles), and the IUPAC codes
# that 4.3 allows as symbolic alleles for "genuinely ambiguous data".
ALT_TYPES = frozenset({"DEL", "INS", "DUP", "INV", "CNV", "BND", "NON_REF", "*"})
IUPAC_CODES = frozenset("RYSWKMBDHVN")
COPY_NUMBER_ALT_RE = re.compile(r"CN[0-9]+")


@dataclass(frozen=True, slots=True)
class FieldDef:
    """An INFO or FORMAT key as the header (or the reserved table) defines it."""

    number: str  # "0", "1", ..., "A", "R", "G", "."
    type: str  # Integer, Float, Flag, Character, String


def _table(rows: str) -> dict[str, FieldDef]:
    out = {}
    for row in rows.split(";"):
        key, number, type_ = row.split()
        out[key] = FieldDef(number, type_)
    return out


_INFO_41 = _table(
    "AA 1 String;AC A Integer;AF A Float;AN 1 Integer;BQ 1 Float;CIGAR A String;DB 0 Flag;"
    "DP 1 Integer;END 1 Integer;H2 0 Flag;H3 0 Flag;MQ 1 Float;MQ0 1 Integer;NS 1 Integer;"
    "SOMATIC 0 Flag;VALIDATED 0 Flag;1000G 0 Flag"
)
_INFO_43 = {**_INFO_41, **_table("AD R Integer;ADF R Integer;ADR R Integer;SB 4 Integer")}
_FORMAT_41 = _table(
    "GT 1 String;DP 1 Integer;FT 1 String;GL G Float;GLE G String;PL G Integer;GP G Float;"
    "GQ 1 Integer;HQ 2 Integer;PS 1 Integer;PQ 1 Integer;EC A Integer;MQ 1 Integer"
)
_FORMAT_43 = {
    **{k: v for k, v in _FORMAT_41.items() if k != "GLE"},
    **_table("AD R Integer;ADF R Integer;ADR R Integer;PP G Integer"),
}

# Reserved keys whose values have a meaning beyond their type (counts cannot be negative).
NON_NEGATIVE_INFO = frozenset({"AC", "AN", "DP", "NS", "MQ0", "END", "AF"})
NON_NEGATIVE_FORMAT = frozenset({"DP", "GQ", "PS"})


def reserved_info(version: Version) -> dict[str, FieldDef]:
    """Reserved INFO keys; 4.0 had no A/G Numbers yet, so only their Type is fixed there."""
    if version < (4, 1):
        return {k: FieldDef(".", v.type) for k, v in _INFO_41.items()}
    return _INFO_43 if version >= (4, 3) else _INFO_41


def reserved_format(version: Version) -> dict[str, FieldDef]:
    if version < (4, 1):
        return {k: FieldDef(".", v.type) for k, v in _FORMAT_41.items()}
    return _FORMAT_43 if version >= (4, 3) else _FORMAT_41


def valid_numbers(version: Version) -> frozenset[str]:
    """The non-integer Number values; R arrived in 4.2."""
    return frozenset({"A", "G", "."} | ({"R"} if version >= (4, 2) else set()))


# VCF 4.5 FORMAT Numbers: local alleles (one value per LAA allele, per local allele with REF,
# per local genotype), P (one per GT allele) and M (one per base modification).
LOCAL_NUMBERS = frozenset({"LA", "LR", "LG"})


def format_numbers(version: Version) -> frozenset[str]:
    """Non-integer Numbers FORMAT lines have besides ``valid_numbers`` (LA/LR/LG: ``LOCAL_NUMBERS``)."""
    return frozenset({"P", "M"}) if version >= (4, 5) else frozenset()


def genotype_count(n_alleles: int, ploidy: int) -> int:
    """Number of genotypes (values of a Number=G field): C(n_alleles + ploidy - 1, ploidy)."""
    count = 1
    for i in range(1, ploidy + 1):
        count = count * (n_alleles + i - 1) // i
    return count


def int_range_pattern(maximum: int) -> str:
    """A regex matching exactly the decimal integers 0..maximum (no leading zeros)."""
    digits = str(maximum)
    parts = ["[0-9]"] if len(digits) > 1 else []
    parts += [f"[1-9][0-9]{{{n - 1}}}" for n in range(2, len(digits))]
    # numbers with as many digits as ``maximum`` and not above it
    for i, d in enumerate(digits):
        prefix, low = digits[:i], 1 if i == 0 and len(digits) > 1 else 0
        rest = len(digits) - i - 1
        last = i == len(digits) - 1
        top = int(d) if last else int(d) - 1
        if top >= low:
            parts.append(prefix + f"[{low}-{top}]" + (f"[0-9]{{{rest}}}" if rest else ""))
    return "(?:" + "|".join(parts) + ")"


_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
URL_RE = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?:(?P<user>[^@/\s]*)@)?(?P<host>\[[0-9A-Fa-f:.]+\]|[^:/?#\s]*)"
    r"(?::(?P<port>[0-9]*))?(?P<rest>[/?#]\S*)?"
)


def url_problem(url: str) -> str | None:
    """Why ``url`` is not a well-formed URL (RFC 3986 / RFC 1123 host names), or None."""
    m = URL_RE.fullmatch(url)
    if not m:
        return "not of the form scheme://host[:port]/path"
    host, port = m["host"], m["port"]
    if port is not None and (not port or int(port) > 65535):
        return f"port {port!r} is not a number up to 65535"
    if not host:
        return None if m["scheme"].lower() == "file" else "host is missing"
    if host.startswith("["):
        return None
    labels = host.split(".")
    if all(label.isdigit() for label in labels):
        if len(labels) == 4 and all(int(label) <= 255 for label in labels):
            return None
        return f"host {host!r} is neither a dotted IPv4 address nor a host name"
    if not all(_HOST_LABEL.fullmatch(label) for label in labels):
        return f"host {host!r} is not a valid host name"
    if labels[-1].isdigit():  # RFC 3696 section 2: top-level names are never all-numeric
        return f"host {host!r} ends in an all-numeric label"
    return None
