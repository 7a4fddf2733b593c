"""File-level rules over the raw header: the ##fileformat line, meta-information lines, #CHROM.

``check_header`` never raises on bad input: it collects every ``Violation`` (each naming its line
and rule) and returns what the record checker needs (versions, definitions, contigs, samples).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from vcfstream.vcf.validation import spec
from vcfstream.vcf.validation.rules import NEWEST_VERSION, Violation, applies, shown, violation
from vcfstream.vcf.validation.spec import FieldDef, Version

_META_KEY_RE = re.compile(r"[^\s=<>\",]+")
_STRUCT_KEY_RE = re.compile(r"[^\s=,\"<>]+")
_PEDIGREE_VALUE_RE = re.compile(r"[^\s:;,=<>\"]+")
_FILTER_ID_RE = re.compile(r"[^\s;,\"<>]+")
_SAMPLE_ID_RE = re.compile(r"[^\s,;=<>\"*]+")
_TOKEN_FIELDS = frozenset({"ID", "Number", "Type", "Genomes", "Mixture", "length"})
_TOKEN_FIELDS_43 = _TOKEN_FIELDS - {"Genomes", "Mixture"}  # 4.3's own suite quotes Genomes
# The fields the specification defines per line kind; others are optional and quoted (4.3+).
_DEFINED_FIELDS = {
    "INFO": frozenset({"ID", "Number", "Type", "Description", "IDX"}),
    "FORMAT": frozenset({"ID", "Number", "Type", "Description", "IDX"}),
    "FILTER": frozenset({"ID", "Description", "IDX"}),
    "ALT": frozenset({"ID", "Description"}),
}
_META_TYPES = frozenset({"Integer", "Float", "Character", "String"})
_STRUCTURED = frozenset({"INFO", "FORMAT", "FILTER", "ALT", "contig", "SAMPLE", "PEDIGREE", "META"})
_INFO_TYPES = frozenset({"Integer", "Float", "Flag", "Character", "String"})
_FORMAT_TYPES = _INFO_TYPES - {"Flag"}


@dataclass(slots=True)
class HeaderCheck:
    """The outcome of the header rules, and what records are checked against."""

    path: str
    samples: list[str]
    errors: list[Violation] = field(default_factory=list)
    version: Version = (4, 2)  # the rule set used: the file's ##fileformat, or 4.5 for newer ones
    declared_version: str | None = None  # as ##fileformat writes it, e.g. "4.3"
    warnings: list[Violation] = field(default_factory=list)
    info: dict[str, FieldDef] = field(default_factory=dict)  # declared, over the reserved table
    formats: dict[str, FieldDef] = field(default_factory=dict)
    filters: frozenset[str] | None = None  # None: the header declares no FILTER besides PASS
    contigs: dict[str, int | None] | None = None  # None: no ##contig lines; value = length
    header_lines: int = 0
    compiled: Any = field(default=None, repr=False, compare=False)  # the record checkers' shared caches


class StructuredValueError(ValueError):
    """A <key=value,...> value that does not parse."""


def parse_structured(inner: str, inner_quotes: bool = False) -> list[tuple[str, str, bool]]:
    """``key=value`` pairs of a structured value (without the <>), as (key, value, was_quoted).

    Quoted values may hold commas and escaped quotes (backslash), [bracketed, lists] commas;
    anything after a closing quote other than ',' is an error, as is an unterminated quote or a
    pair without '='. ``inner_quotes``: an unquoted value may hold a '"' after its first
    character (VCF 4.3 allows any printable character in an ALT ID, '"' included).
    """
    pairs: list[tuple[str, str, bool]] = []
    i, n = 0, len(inner)
    while i < n:
        eq = inner.find("=", i)
        comma = inner.find(",", i)
        if eq < 0 or (0 <= comma < eq):
            end = comma if comma >= 0 else n
            raise StructuredValueError(f"{shown(inner[i:end])} is not key=value")
        key = inner[i:eq]
        if not _STRUCT_KEY_RE.fullmatch(key):
            raise StructuredValueError(f"invalid key {shown(key)}")
        i = eq + 1
        if i < n and inner[i] == '"':
            j, chars = i + 1, []
            while j < n and inner[j] != '"':
                if inner[j] == "\\" and j + 1 < n:
                    j += 1
                chars.append(inner[j])
                j += 1
            if j >= n:
                raise StructuredValueError(f"unterminated quoted value of {key}")
            pairs.append((key, "".join(chars), True))
            i = j + 1
            if i < n and inner[i] != ",":
                raise StructuredValueError(f"unexpected {shown(inner[i:i + 20])} after the quoted value of {key}"
                                           " (unescaped quote?)")
            i += 1
            if i == n and inner.endswith(","):
                raise StructuredValueError("trailing comma")
        else:
            if i < n and inner[i] == "[":  # a bracketed list, as in 4.3 ##META Values=[a, b]
                close = inner.find("]", i)
                if close < 0:
                    raise StructuredValueError(f"unclosed [ in the value of {key}")
                comma = inner.find(",", close)
            end = comma if comma >= 0 else n
            value = inner[i:end]
            if '"' in value and (not inner_quotes or value.startswith('"')):
                raise StructuredValueError(f"stray quote in the value of {key}")
            pairs.append((key, value, False))
            i = end + 1
            if end == n - 1:
                raise StructuredValueError("trailing comma")
    return pairs


def check_header(path: str, header_lines: list[str]) -> HeaderCheck:
    """Check the ``##`` lines and the ``#CHROM`` line of one file (lines with or without newline)."""
    lines = [line.rstrip("\r\n") for line in header_lines]
    errors: list[Violation] = []
    result = HeaderCheck(path, [], errors, header_lines=len(lines))
    if not lines:
        errors.append(violation("header.fileformat", 1, "the file has no header: ##fileformat=VCFv4.x expected"))
        return result

    version = _check_fileformat(lines[0], errors)
    result.version = version or (4, 2)
    if version is not None:
        result.declared_version = lines[0].removeprefix("##fileformat=VCFv")
    reserved_info = spec.reserved_info(result.version)
    reserved_format = spec.reserved_format(result.version)
    metas: dict[str, list[str]] = {}  # META ID -> its Values (4.3+)
    sample_lines: list[tuple[int, list[tuple[str, str, bool]]]] = []
    declared_info: dict[str, FieldDef] = {}
    declared_format: dict[str, FieldDef] = {}
    filters: set[str] = set()
    contigs: dict[str, int | None] = {}
    seen_ids: dict[str, set[str]] = {}

    chrom_line = lines[-1] if lines[-1].startswith("#CHROM") else None
    meta_lines = lines[1:-1] if chrom_line is not None else lines[1:]
    for offset, line in enumerate(meta_lines, start=2):
        entry = _check_meta_line(line, offset, result.version, errors)
        if entry is None:
            continue
        key, pairs = entry
        values = {k: v for k, v, _ in pairs}
        ident = values.get("ID")
        if key in ("INFO", "FORMAT", "FILTER", "ALT") and ident is not None:
            if ident in seen_ids.setdefault(key, set()):
                errors.append(violation("meta.duplicate_id", offset, f"{key} ID {shown(ident)} is defined twice"))
            seen_ids[key].add(ident)
        if ident is None:
            continue
        if key in ("INFO", "FORMAT") and "Number" in values and "Type" in values:
            definition = FieldDef(values["Number"], values["Type"])
            reserved = (reserved_info if key == "INFO" else reserved_format).get(ident)
            _check_reserved(key, ident, definition, reserved, result.version, offset, errors)
            (declared_info if key == "INFO" else declared_format)[ident] = definition
        elif key == "FILTER":
            filters.add(ident)
        elif key == "contig":
            length = values.get("length")
            if ident not in contigs or length is not None:
                contigs[ident] = int(length) if length and length.isdigit() else None
        elif key == "META" and "Values" in values:
            metas[ident] = [v.strip() for v in values["Values"][1:-1].split(",")]
        elif key == "SAMPLE":
            sample_lines.append((offset, pairs))
    if applies("meta.sample_value", result.version):
        for offset, pairs in sample_lines:
            _check_sample_values(pairs, metas, offset, errors)

    # Undeclared keys are checked against the reserved table of 4.2: 4.3's table adds AD, ADF,
    # ADR and SB to INFO, and its own suite writes an undeclared SB=0.150 in a valid file.
    record_info = spec.reserved_info(min(result.version, (4, 2)))
    result.info = {**record_info, **declared_info}
    result.formats = {**reserved_format, **declared_format}
    result.filters = frozenset(filters | {"PASS"}) if filters - {"PASS"} else None
    result.contigs = contigs or None
    if chrom_line is None:
        errors.append(violation("header.chrom_line", len(lines) + 1,
                                "no #CHROM header line: the header is cut short or this is not a VCF"))
    else:
        result.samples = _check_chrom_line(chrom_line, len(lines), errors)
    result.warnings = [found for found in errors if found.is_warning]
    errors[:] = [found for found in errors if not found.is_warning]
    return result


def _check_sample_values(pairs: list[tuple[str, str, bool]], metas: dict[str, list[str]], lineno: int,
                         errors: list[Violation]) -> None:
    """4.3+: a SAMPLE field that a ##META line declares with Values takes one of those values."""
    for k, v, _ in pairs:
        allowed = metas.get(k)
        if allowed is not None and any(item.strip() not in allowed for item in v.split(",")):
            errors.append(violation("meta.sample_value", lineno,
                                    f"##SAMPLE: {k}={shown(v)} is not one of the ##META Values {allowed}"))
            return


def _check_fileformat(first: str, errors: list[Violation]) -> Version | None:
    m = spec.FILEFORMAT_RE.fullmatch(first)
    if not m:
        what = "empty" if first == "##fileformat=" else shown(first)
        errors.append(violation("header.fileformat", 1,
                                f"first line must be ##fileformat=VCFv4.x, found {what}"))
        return None
    version = (int(m[1]), int(m[2]))
    if version > NEWEST_VERSION:
        errors.append(violation("header.version_unknown", 1,
                                f"VCF version {m[1]}.{m[2]} is newer than 4.5: validated by the 4.5 rules"))
        return NEWEST_VERSION
    if version not in spec.SUPPORTED_VERSIONS:
        errors.append(violation("header.fileformat", 1, f"VCF version {m[1]}.{m[2]} is not supported (4.0-4.5)"))
        return None
    return version


def _check_meta_line(line: str, lineno: int, version: Version,
                     errors: list[Violation]) -> tuple[str, list[tuple[str, str, bool]]] | None:
    """Syntax of one ``##`` line; returns (key, pairs) of a known structured line, else None."""
    if not line.startswith("##"):
        errors.append(violation("header.line", lineno,
                                f"{shown(line)} is not a ##meta-information line (the header ends with #CHROM)"))
        return None
    body = line[2:]
    key, eq, value = body.partition("=")
    if not eq or not _META_KEY_RE.fullmatch(key):
        errors.append(violation("meta.syntax", lineno, f"{shown(line)} is not ##key=value"))
        return None
    if key == "fileformat":
        errors.append(violation("meta.fileformat_repeated", lineno, "a second ##fileformat line"))
        return None
    if not value or value == "<>":
        errors.append(violation("meta.empty", lineno, f"##{key} has an empty value"))
        return None
    if key in ("assembly", "pedigreeDB"):
        url = value[1:-1] if value.startswith("<") and value.endswith(">") else value
        problem = spec.url_problem(url) if "://" in url else None
        if problem:
            errors.append(violation("meta.url", lineno, f"##{key} URL {shown(url)}: {problem}"))
        return None
    if not value.startswith("<"):
        if key in _STRUCTURED:
            errors.append(violation("meta.syntax", lineno, f"##{key} must be a structured <...> value"))
        return None
    if not value.endswith(">"):
        errors.append(violation("meta.unclosed", lineno, f"##{key}=<... is not closed with '>'"))
        return None
    inner = value[1:-1]
    try:
        pairs = parse_structured(inner, inner_quotes=version >= (4, 3) and key == "ALT")
    except StructuredValueError as exc:
        if key in _STRUCTURED:
            errors.append(violation("meta.syntax", lineno, f"##{key}: {exc}"))
        elif inner.count('"') % 2:  # other keys may hold free text, but quotes must balance
            errors.append(violation("meta.syntax", lineno, f"##{key}: unbalanced quotes"))
        return None
    if key not in _STRUCTURED:
        return None
    names = [k for k, _, _ in pairs]
    if len(set(names)) != len(names):
        errors.append(violation("meta.syntax", lineno, f"##{key}: a field is given twice"))
        return None
    tokens = _TOKEN_FIELDS_43 if version >= (4, 3) else _TOKEN_FIELDS
    for k, _, quoted in pairs:
        if quoted and k in tokens:
            errors.append(violation("meta.quoted", lineno, f"##{key}: {k} must not be quoted"))
            return None
    before = len(errors)
    _check_structured(key, pairs, lineno, version, errors)
    return None if any(not found.is_warning for found in errors[before:]) else (key, pairs)


def _check_structured(key: str, pairs: list[tuple[str, str, bool]], lineno: int, version: Version,
                      errors: list[Violation]) -> None:
    names = [k for k, _, _ in pairs]
    values = {k: v for k, v, _ in pairs}
    quoted = {k for k, _, q in pairs if q}

    def error(rule: str, text: str) -> None:
        errors.append(violation(rule, lineno, f"##{key}: {text}"))

    if key == "PEDIGREE":
        if applies("meta.pedigree_id", version) and names[0] != "ID":
            return error("meta.pedigree_id", f"the first field must be ID (found {names[0]})")
        for k, v, _ in pairs:
            if not _PEDIGREE_VALUE_RE.fullmatch(v):
                return error("meta.pedigree", f"{k}={shown(v)} is not a genome ID")
        return None
    if (key == "SAMPLE" and applies("meta.sample_id", version)
            and not _SAMPLE_ID_RE.fullmatch(values.get("ID", ""))):
        return error("meta.sample_id", f"ID {shown(values.get('ID', ''))} is missing or not a sample name")
    if "ID" not in values:
        return error("meta.id", "the ID field is missing")
    ident = values["ID"]
    if names[0] != "ID":
        return error("meta.field_order", f"ID must be the first field (found {names[0]})")
    if key == "META" and applies("meta.meta", version):
        return _check_meta_meta(values, error)
    defined = _DEFINED_FIELDS.get(key)
    if defined is not None and applies("meta.optional_unquoted", version):
        unquoted = [k for k in names if k not in defined and k not in quoted]
        if unquoted:
            return error("meta.optional_unquoted", f"optional field {unquoted[0]} must be a quoted string")
    if key == "ALT" and applies("meta.alt_description", version) and "Description" not in quoted:
        return error("meta.alt_description", "Description is missing or not double-quoted")
    if key in ("INFO", "FORMAT"):
        missing = [k for k in ("Number", "Type", "Description") if k not in values]
        if missing:
            return error("meta.field_order", f"required field(s) {', '.join(missing)} missing")
    if "Number" in values:
        number = values["Number"]
        if number in spec.LOCAL_NUMBERS:
            if key != "FORMAT" or not applies("meta.number_local", version):
                return error("meta.number_local", f"Number={number} is a FORMAT Number of VCF 4.5 only")
        elif not (number.isdigit() or number in spec.valid_numbers(version)
                  or (key == "FORMAT" and number in spec.format_numbers(version))):
            numbers = "/".join(sorted(spec.valid_numbers(version) | spec.format_numbers(version)))
            return error("meta.number", f"Number={shown(number)} is not an integer, {numbers}")
    if "Type" in values:
        allowed = _FORMAT_TYPES if key == "FORMAT" else _INFO_TYPES
        if values["Type"] not in allowed:
            return error("meta.type", f"Type={shown(values['Type'])} is not one of {', '.join(sorted(allowed))}")
    if key in ("INFO", "FORMAT", "FILTER", "ALT") and "Description" in values and "Description" not in quoted:
        return error("meta.description", "Description must be surrounded by double quotes")

    if key in ("INFO", "FORMAT"):
        grammar = spec.INFO_KEY_RE_OLD if key == "INFO" and version < (4, 3) else spec.KEY_RE_43
        if not (grammar.fullmatch(ident) or (key == "INFO" and ident == "1000G")):
            return error("meta.id", f"ID {shown(ident)} is not a valid {key} key")
        if applies("meta.flag_number", version) and values["Type"] == "Flag" and values["Number"] != "0":
            error("meta.flag_number", f"{ident} is a Flag with Number={values['Number']} (read as a Flag)")
    elif key == "FILTER":
        if not _FILTER_ID_RE.fullmatch(ident) or ident == "0":
            return error("meta.id", f"ID {shown(ident)} is not a valid filter code")
    elif key == "ALT":
        if not ident or any(c.isspace() or c in ",<>" for c in ident):
            return error("meta.alt_id", f"ID {shown(ident)} holds whitespace, a comma or an angle bracket")
        first = ident.split(":", 1)[0]
        if version >= (4, 3) and ":" not in ident:
            return None  # 4.3: any other ID is a custom symbolic allele (its suite: ID=customcontig)
        if version >= (4, 4) and first == "BND":
            return error("meta.alt_id", f"ID {shown(ident)}: BND is no ALT type from 4.4 (breakends use brackets)")
        if not (first in spec.ALT_TYPES or (len(first) == 1 and first in spec.IUPAC_CODES)
                or spec.COPY_NUMBER_ALT_RE.fullmatch(first)):
            return error("meta.alt_id", f"ID {shown(ident)}: the type must start with DEL, INS, DUP, INV, CNV or BND")
    elif key == "contig":
        if not spec.CONTIG_RE.fullmatch(ident):
            return error("meta.contig", f"ID {shown(ident)} is not a valid contig name")
        if ":" in ident or "*" in ident:
            error("meta.contig_name", f"ID {shown(ident)} holds ':' or '*': accepted (GRCh38 HLA contigs)")
        length = values.get("length")
        if length is not None and not length.isdigit():
            return error("meta.contig", f"length={shown(length)} is not an integer")
    elif key == "SAMPLE" and "Mixture" in values:
        if "Genomes" not in values:
            return error("meta.sample", "Mixture is given without Genomes")
        if len(values["Mixture"].split(";")) != len(values["Genomes"].split(";")):
            return error("meta.sample", "Mixture and Genomes have different numbers of entries")
    return None


def _check_meta_meta(values: dict[str, str], error: Any) -> None:
    """4.3+: ##META=<ID=..,Type=..,Number=..,Values=[a, b]>."""
    number, type_, choices = values.get("Number"), values.get("Type"), values.get("Values")
    if number is None or not (number.isdigit() or number == "."):
        return error("meta.meta", f"Number={shown(number or '')} is not an integer or '.'")
    if type_ not in _META_TYPES:
        return error("meta.meta", f"Type={shown(type_ or '')} is not one of {', '.join(sorted(_META_TYPES))}")
    if choices is None or not (choices.startswith("[") and choices.endswith("]")):
        return error("meta.meta", f"Values={shown(choices or '')} is not a [bracketed, list]")
    return None


def _check_reserved(key: str, ident: str, definition: FieldDef, reserved: FieldDef | None,
                    version: Version, lineno: int, errors: list[Violation]) -> None:
    if reserved is None:
        return
    if definition.type != reserved.type:
        errors.append(violation("meta.reserved", lineno,
                                f"##{key}: reserved key {ident} must have Type={reserved.type}, not {definition.type}"))
    elif reserved.number != "." and definition.number != reserved.number:
        errors.append(violation("meta.reserved", lineno, f"##{key}: reserved key {ident} must have "
                                f"Number={reserved.number}, not {definition.number}"))


def _check_chrom_line(line: str, lineno: int, errors: list[Violation]) -> list[str]:
    columns = line.split("\t")
    fixed = tuple(columns[:8])
    if fixed != spec.FIXED_COLUMNS:
        errors.append(violation("header.columns", lineno,
                                f"#CHROM line must start {' '.join(spec.FIXED_COLUMNS)} (tab-separated), "
                                f"found {shown(' '.join(fixed))}"))
        return []
    if len(columns) == 8:
        return []
    if columns[8] != "FORMAT":
        errors.append(violation("header.columns", lineno, f"the 9th column must be FORMAT, not {shown(columns[8])}"))
        return []
    samples = columns[9:]
    if not samples:
        errors.append(violation("header.samples", lineno, "a FORMAT column without any sample column"))
    elif any(not name or name != name.strip() for name in samples):
        errors.append(violation("header.samples", lineno,
                                "an empty sample name (stray tab?) or one with surrounding spaces"))
    elif len(set(samples)) != len(samples):
        repeated = sorted(name for name, count in Counter(samples).items() if count > 1)  # linear in samples
        errors.append(violation("header.sample_duplicate", lineno,
                                f"sample names repeated: {', '.join(shown(s) for s in repeated[:5])}"))
    return samples
