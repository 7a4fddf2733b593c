"""File-level rules over the raw header: the ##fileformat line, meta-information lines, #CHROM.

``check_header`` never raises on bad input: it collects every ``Violation`` (each naming its line
and rule) and returns what the record checker needs (versions, definitions, contigs, samples).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from vcfstream.vcf.validation import spec
from vcfstream.vcf.validation.rules import Violation, shown, violation
from vcfstream.vcf.validation.spec import FieldDef, Version

_META_KEY_RE = re.compile(r"[^\s=<>\",]+")
_STRUCT_KEY_RE = re.compile(r"[^\s=,\"<>]+")
_PEDIGREE_VALUE_RE = re.compile(r"[^\s:;,=<>\"]+")
_FILTER_ID_RE = re.compile(r"[^\s;,\"<>]+")
_TOKEN_FIELDS = frozenset({"ID", "Number", "Type", "Genomes", "Mixture", "length"})
_STRUCTURED = frozenset({"INFO", "FORMAT", "FILTER", "ALT", "contig", "SAMPLE", "PEDIGREE", "META"})
_INFO_TYPES = frozenset({"Integer", "Float", "Flag", "Character", "String"})
_FORMAT_TYPES = _INFO_TYPES - {"Flag"}


@dataclass(slots=True)
class HeaderCheck:
    """The outcome of the header rules, and what records are checked against."""

    path: str
    samples: list[str]
    errors: list[Violation] = field(default_factory=list)
    version: Version = (4, 2)
    info: dict[str, FieldDef] = field(default_factory=dict)  # declared, over the reserved table
    formats: dict[str, FieldDef] = field(default_factory=dict)
    filters: frozenset[str] | None = None  # None: the header declares no FILTER besides PASS
    contigs: dict[str, int | None] | None = None  # None: no ##contig lines; value = length
    header_lines: int = 0
    compiled: Any = field(default=None, repr=False, compare=False)  # the record checkers' shared caches


class StructuredValueError(ValueError):
    """A <key=value,...> value that does not parse."""


def parse_structured(inner: str) -> list[tuple[str, str, bool]]:
    """``key=value`` pairs of a structured value (without the <>), as (key, value, was_quoted).

    Quoted values may hold commas and escaped quotes (backslash), [bracketed, lists] commas;
    anything after a closing quote
    other than ',' is an error, as is an unterminated quote or a pair without '='.
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
            if '"' in value:
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
    reserved_info = spec.reserved_info(result.version)
    reserved_format = spec.reserved_format(result.version)
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

    result.info = {**reserved_info, **declared_info}
    result.formats = {**reserved_format, **declared_format}
    result.filters = frozenset(filters | {"PASS"}) if filters - {"PASS"} else None
    result.contigs = contigs or None
    if chrom_line is None:
        errors.append(violation("header.chrom_line", len(lines) + 1,
                                "no #CHROM header line: the header is cut short or this is not a VCF"))
    else:
        result.samples = _check_chrom_line(chrom_line, len(lines), errors)
    return result


def _check_fileformat(first: str, errors: list[Violation]) -> Version | None:
    m = spec.FILEFORMAT_RE.fullmatch(first)
    if not m:
        what = "empty" if first == "##fileformat=" else shown(first)
        errors.append(violation("header.fileformat", 1,
                                f"first line must be ##fileformat=VCFv4.x, found {what}"))
        return None
    version = (int(m[1]), int(m[2]))
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
        pairs = parse_structured(inner)
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
    for k, _, quoted in pairs:
        if quoted and k in _TOKEN_FIELDS:
            errors.append(violation("meta.quoted", lineno, f"##{key}: {k} must not be quoted"))
            return None
    before = len(errors)
    _check_structured(key, pairs, lineno, version, errors)
    return (key, pairs) if len(errors) == before else None


def _check_structured(key: str, pairs: list[tuple[str, str, bool]], lineno: int, version: Version,
                      errors: list[Violation]) -> None:
    names = [k for k, _, _ in pairs]
    values = {k: v for k, v, _ in pairs}
    quoted = {k for k, _, q in pairs if q}

    def error(rule: str, text: str) -> None:
        errors.append(violation(rule, lineno, f"##{key}: {text}"))

    if key == "PEDIGREE":
        for k, v, _ in pairs:
            if not _PEDIGREE_VALUE_RE.fullmatch(v):
                return error("meta.pedigree", f"{k}={shown(v)} is not a genome ID")
        return None
    if "ID" not in values:
        return error("meta.id", "the ID field is missing")
    ident = values["ID"]
    if names[0] != "ID":
        return error("meta.field_order", f"ID must be the first field (found {names[0]})")
    if key in ("INFO", "FORMAT"):
        missing = [k for k in ("Number", "Type", "Description") if k not in values]
        if missing:
            return error("meta.field_order", f"required field(s) {', '.join(missing)} missing")
    if "Number" in values:
        number = values["Number"]
        if not (number.isdigit() or number in spec.valid_numbers(version)):
            numbers = "/".join(sorted(spec.valid_numbers(version)))
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
        if version >= (4, 3) and values["Type"] == "Flag" and values["Number"] != "0":
            return error("meta.flag_number", f"{ident} is a Flag with Number={values['Number']}")
    elif key == "FILTER":
        if not _FILTER_ID_RE.fullmatch(ident) or ident == "0":
            return error("meta.id", f"ID {shown(ident)} is not a valid filter code")
    elif key == "ALT":
        if not ident or any(c.isspace() or c in ",<>" for c in ident):
            return error("meta.alt_id", f"ID {shown(ident)} holds whitespace, a comma or an angle bracket")
        first = ident.split(":", 1)[0]
        if not (first in spec.ALT_TYPES or (len(first) == 1 and first in spec.IUPAC_CODES)
                or spec.COPY_NUMBER_ALT_RE.fullmatch(first)):
            return error("meta.alt_id", f"ID {shown(ident)}: the type must start with DEL, INS, DUP, INV, CNV or BND")
    elif key == "contig":
        if not spec.CONTIG_RE.fullmatch(ident):
            return error("meta.contig", f"ID {shown(ident)} is not a valid contig name")
        length = values.get("length")
        if length is not None and not length.isdigit():
            return error("meta.contig", f"length={shown(length)} is not an integer")
    elif key == "SAMPLE" and "Mixture" in values:
        if "Genomes" not in values:
            return error("meta.sample", "Mixture is given without Genomes")
        if len(values["Mixture"].split(";")) != len(values["Genomes"].split(";")):
            return error("meta.sample", "Mixture and Genomes have different numbers of entries")
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
        repeated = sorted({name for name in samples if samples.count(name) > 1})
        errors.append(violation("header.sample_duplicate", lineno,
                                f"sample names repeated: {', '.join(shown(s) for s in repeated[:5])}"))
    return samples
