"""Record-level rules: one data line, already split on TAB, checked against its header.

Two paths give the same verdict. The fast path matches whole INFO and sample columns with
regexes compiled once per header (and per ALT count / FORMAT string): most valid records cost
a handful of C-level matches. Anything the fast path does not accept goes through the slow
path, which checks value by value and names the first broken rule. The fast path only ever
accepts what the slow path accepts (tests/vcf/test_validation.py checks that on mutated records).
A sample column's verdict depends only on its text, the FORMAT string and the ALT count, so
columns accepted once (most repeat: 0/0, ./.) are remembered per FORMAT and ALT count.

State kept across calls (so one checker per chunk, in file order): the current contig and
position (sorting, contiguity) and the normalized alleles at the current positions (duplicates).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vcfstream.vcf.normalize import trim_alleles
from vcfstream.vcf.validation import spec
from vcfstream.vcf.validation.rules import Violation, applies, shown, violation
from vcfstream.vcf.validation.spec import FieldDef, Version

if TYPE_CHECKING:
    from vcfstream.vcf.validation.header import HeaderCheck

Problem = tuple[str, str]  # (rule id, message without the record prefix)

_ID_RE = re.compile(r"[^\s;]+(?:;[^\s;]+)*")
_GT_SPLIT_RE = re.compile(r"[/|]")
_END_RE = re.compile(r"(?:^|;)END=([^;]*)")
_BREAKEND_RE = re.compile(
    r"(?P<pre>[ACGTNacgtn]+)(?P<b>[\[\]])(?P<mate>[^\[\]]+):(?P<pos>[0-9]+)(?P=b)"
    r"|(?P<b2>[\[\]])(?P<mate2>[^\[\]]+):(?P<pos2>[0-9]+)(?P=b2)(?P<post>[ACGTNacgtn]+)"
)
_SINGLE_BREAKEND_RE = re.compile(r"\.[ACGTNacgtn]+|[ACGTNacgtn]+\.")
_NOT_KEYS = "(?:[=;]|$)"
_BAD_PERCENT_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")  # a '%' that does not start %XX
_SVCLAIM_RE = re.compile(r"(?:^|;)SVCLAIM=([^;]*)")
_SVLEN_RE = re.compile(r"(?:^|;)SVLEN=([^;]*)")
_SPANNING = frozenset({"DEL", "DUP", "INV", "CNV"})  # 4.4: END = POS + SVLEN for these
_MAX_INDEX_DIGITS = 9  # an allele index longer than this is out of range anyway
_NEVER = re.compile(r"(?!)")
# SVCLAIM values each kind of ALT allows (4.4 section "SVCLAIM"); '.' means the implicit claim.
_SVCLAIMS = {"DEL": {"D", "J", "DJ"}, "DUP": {"D", "J", "DJ"}, "CNV": {"D", "."}, "INV": {"J", "DJ", "."},
             "INS": {"J", "DJ", "."}, "BND": {"J", "."}}
_MAX_WARNINGS = 100  # warnings kept per rule (their count goes on)
_MAX_LAYOUTS = 512
_MAX_LAYOUT_COUNTS = 50_000
_MAX_GOOD_SAMPLES = 50_000
_MAX_CACHED = 50_000  # CHROM, FILTER and FORMAT texts remembered per header; a full cache starts over
_MAX_CACHED_TEXT = 1024  # longer CHROM and FILTER texts are checked each time, never kept

# Fast-path value patterns (a strict subset of what the slow path accepts).
_INT = r"[-+]?[0-9]{1,9}"  # 9 digits cannot overflow 32 bits nor hit the reserved values
_UINT = r"\+?[0-9]{1,9}"
_UFLOAT = (r"\+?(?:(?:[0-9]++(?:\.[0-9]++)?|\.[0-9]++)(?:[eE][-+]?[0-9]++)?"  # linear: see spec.FLOAT_PATTERN
           r"|[Ii][Nn][Ff](?:[Ii][Nn][Ii][Tt][Yy])?|[Nn][Aa][Nn])")
# Control characters no column may hold (TAB separates them; a CR ending the line is dropped):
# PostgreSQL text and jsonb refuse NUL, and none of them belongs in a VCF value.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


@dataclass(slots=True)
class _FormatPlan:
    """One FORMAT string, checked once: its keys, their definitions, compiled sample regexes."""

    keys: list[str]
    defs: list[FieldDef | None]
    has_gt: bool
    laa: int = -1  # column of LAA (VCF 4.5 local alleles), -1 when absent
    local: bool = False  # LAA, LGT or an LA/LR/LG field: counts depend on the column's own LAA
    fast: dict[int, re.Pattern[str]] = field(default_factory=dict)  # ALT count -> samples regex
    good: dict[int, set[str]] = field(default_factory=dict)  # ALT count -> sample columns seen valid


@dataclass(slots=True)
class _Compiled:
    """Per-header caches (regexes, checked strings); kept on the ``HeaderCheck``. Checkers of
    chunks read in parallel threads share it: only single dict/set/list operations, no iteration."""

    info_generic: dict[int, re.Pattern[str]] = field(default_factory=dict)
    layouts: dict[tuple[int, int, str], list[re.Pattern[str]]] = field(default_factory=dict)
    layout_counts: dict[tuple[int, str], int] = field(default_factory=dict)
    n_layouts: int = 0
    plans: dict[str, _FormatPlan | Problem] = field(default_factory=dict)
    chrom_problems: dict[str, Problem | None] = field(default_factory=dict)
    good_filters: set[str] = field(default_factory=set)
    good_alts: dict[str, bool] = field(default_factory=dict)


def _without_cr(fields: list[str]) -> list[str]:
    """The columns of a CRLF-terminated line without its CR."""
    if fields and fields[-1].endswith("\r"):
        return fields[:-1] + [fields[-1][:-1]]
    return fields


def contig_key(chrom: str) -> str:
    """The contig a CHROM names: ``<1>`` and ``1`` are one contig."""
    return chrom[1:-1] if chrom.startswith("<") else chrom


class RecordChecker:
    """Checks data lines of one file in file order; ``check`` returns the first violation or None."""

    __slots__ = ("_c", "_chrom", "_chrom_key", "_chrom_length", "_columns", "_contigs", "_dup_keys", "_dup_max",
                 "_filters", "_finished", "_format_key_re", "_formats", "_has_samples", "_info", "_info_key_re",
                 "_last_layout", "_last_pos", "_percent", "_svclaim", "_version", "warning_counts", "warnings")

    def __init__(self, header: HeaderCheck) -> None:
        self._columns = 9 + len(header.samples) if header.samples else 8
        self._has_samples = bool(header.samples)
        self._info = header.info
        self._formats = header.formats
        self._filters = header.filters
        self._contigs = header.contigs
        self._version: Version = header.version
        self._info_key_re = spec.KEY_RE_43 if header.version >= (4, 3) else spec.INFO_KEY_RE_OLD
        self._format_key_re = spec.KEY_RE_43
        self._percent = applies("info.percent", header.version)
        self._svclaim = applies("info.svclaim", header.version)
        # warnings: accepted records that break a rule the ecosystem does not keep (first few per rule)
        self.warnings: list[Violation] = []
        self.warning_counts: dict[str, int] = {}
        # state of this chunk
        self._chrom: str | None = None
        self._chrom_key: str | None = None
        self._chrom_length: int | None = None
        self._last_pos = -1
        self._finished: set[str] = set()
        self._dup_keys: set[tuple[int, str, str]] = set()
        self._dup_max = -1
        # compiled once per header, shared by the checkers of all chunks of a file
        if header.compiled is None:
            header.compiled = _Compiled()
        self._c = header.compiled
        self._last_layout: tuple[int, re.Pattern[str]] | None = None  # the INFO layout that matched last

    def resume(self, lead_in: Sequence[str], lead_in_contig: str | None, finished_contigs: Iterable[str]) -> None:
        """Continue after the records before this chunk, as the chunk planner followed them:
        ``finished_contigs`` are done, ``lead_in_contig`` is current, and the ``lead_in`` lines
        (the last records before the chunk) set the order and duplicate state. Their own
        violations were reported with the chunk before."""
        self._finished.update(finished_contigs)
        if lead_in_contig is not None:
            self._chrom_key = lead_in_contig
            self._chrom_length = self._contigs.get(lead_in_contig) if self._contigs else None
        for text in lead_in:
            self.check(text.rstrip("\r\n").split("\t"), None)

    def record_contig(self, fields: list[str]) -> str | None:
        """The contig a record would make current if its columns and CHROM pass; None when it
        is refused before that (the chunk planner follows the contig order with it)."""
        if len(_without_cr(fields)) != self._columns:
            return None
        return None if self._cached_chrom_problem(fields[0]) else contig_key(fields[0])

    # -- entry point ----------------------------------------------------------------------
    def check(self, fields: list[str], line: int | None) -> Violation | None:
        if len(fields) != self._columns or fields[-1][-1:] == "\r":
            fields = _without_cr(fields)
            if len(fields) != self._columns:
                return self._fail("record.columns", line, fields,
                                  f"{len(fields)} tab-separated columns, the header has {self._columns}")
        control = _CONTROL_RE.search("\t".join(fields[:9]))  # sample columns: below, those not seen valid before
        if control is not None:
            return self._control_problem(control.string.count("\t", 0, control.start()), control.group(), line, fields)
        chrom = fields[0]
        if chrom != self._chrom:
            problem = self._enter_contig(chrom)
            if problem:
                return self._fail(problem[0], line, fields, problem[1])
            if ":" in chrom or "*" in chrom:
                self.warn(self._fail("chrom.name", line, fields,
                                     f"CHROM {shown(chrom)} holds ':' or '*': accepted (GRCh38 HLA contigs)"))
        pos_text = fields[1]
        if not (pos_text.isdigit() and pos_text.isascii()):
            return self._fail("pos.syntax", line, fields, f"POS {shown(pos_text)} is not a non-negative integer")
        pos = int(pos_text)
        if pos > spec.INT32_MAX or (self._chrom_length is not None and pos > self._chrom_length + 1):
            return self._fail("pos.range", line, fields, f"POS {pos} is beyond the contig "
                              f"(length {self._chrom_length if self._chrom_length is not None else 'unknown'})")
        if pos < self._last_pos:
            return self._fail("pos.unsorted", line, fields, f"POS {pos} comes after POS {self._last_pos} on {chrom}")
        self._last_pos = pos
        if pos > self._dup_max and self._dup_keys:
            self._dup_keys.clear()

        ident = fields[2]
        if ident != "." and not self._id_ok(ident):
            rule, message = self._id_problem(ident)
            return self._fail(rule, line, fields, message)
        ref = fields[3]
        if not ref or ref.strip(spec.BASES):
            return self._fail("ref.bases", line, fields, f"REF {shown(ref)} is not made of A, C, G, T, N")

        alt = fields[4]
        if alt == ".":
            alts: list[str] = []
        elif "," not in alt and not alt.strip(spec.BASES) and alt and alt != ref:
            alts = [alt]
        else:
            alts = alt.split(",")
            known = self._c.good_alts.get(alt)
            if known is None:
                problem = self._alt_problem(alts, self._version >= (4, 4))
                if problem:
                    return self._fail(problem[0], line, fields, problem[1])
                if len(self._c.good_alts) > 10_000:
                    self._c.good_alts.clear()
                self._c.good_alts[alt] = True
            if ref in alts:
                return self._fail("alt.duplicate", line, fields, f"ALT {shown(ref)} equals REF")
        n_alt = len(alts)

        qual = fields[5]
        if qual != ".":
            digits = qual.replace(".", "", 1)
            if not (digits.isdigit() and digits.isascii() and qual[-1] != "."):
                if not spec.FLOAT_RE.fullmatch(qual):
                    return self._fail("qual.syntax", line, fields, f"QUAL {shown(qual)} is not a number")
                if qual[0] == "-" and float(qual) < 0:
                    return self._fail("qual.range", line, fields, f"QUAL {shown(qual)} is negative")
        filt = fields[6]
        if filt != "PASS" and filt != "." and filt not in self._c.good_filters:
            problem = self._filter_problem(filt)
            if problem:
                return self._fail(problem[0], line, fields, problem[1])
            if len(filt) <= _MAX_CACHED_TEXT:
                if len(self._c.good_filters) >= _MAX_CACHED:
                    self._c.good_filters.clear()
                self._c.good_filters.add(filt)

        info = fields[7]
        if info != ".":
            if self._percent and "%" in info and _BAD_PERCENT_RE.search(info):
                return self._fail("info.percent", line, fields, "INFO holds a '%' that is not a %XX encoding")
            if self._svclaim and "SVCLAIM=" in info:
                problem = _svclaim_problem(info, alts)
                if problem:
                    return self._fail(problem[0], line, fields, problem[1])
            if self._svclaim and "SVLEN=" in info and alt[:1] == "<":
                problem = (_svlen_problem(info, alt, pos) if n_alt == 1
                           else _cn_svlen_problem(info, alts, fields[8] if self._has_samples else ""))
                if problem:
                    return self._fail(problem[0], line, fields, problem[1])
            last = self._last_layout  # most records repeat the INFO layout of the one before
            if last is None or last[0] != n_alt or not last[1].fullmatch(info) or "END=" in info:
                problem = self._info_problem(info, n_alt, pos)
                if problem:
                    return self._fail(problem[0], line, fields, problem[1])

        if self._has_samples:
            fmt = fields[8]
            plan = self._c.plans.get(fmt)
            if plan is None:
                if len(self._c.plans) >= _MAX_CACHED:  # a FORMAT per record: plans are not kept forever
                    self._c.plans.clear()
                plan = self._c.plans[fmt] = self._plan_format(fmt)
            if type(plan) is _FormatPlan:
                samples = fields[9:]
                good = plan.good.get(n_alt)
                if good is None:
                    good = plan.good.setdefault(n_alt, set())
                if not good.issuperset(samples):
                    unseen = "\t".join([sample for sample in samples if sample not in good])
                    if _CONTROL_RE.search(unseen):
                        column = next(k for k, sample in enumerate(samples) if _CONTROL_RE.search(sample))
                        found = _CONTROL_RE.search(samples[column])
                        return self._control_problem(9 + column, found.group() if found else "", line, fields)
                    fast = plan.fast.get(n_alt)
                    if fast is None:  # local-allele counts depend on each column's LAA: slow path
                        fast = plan.fast[n_alt] = _NEVER if plan.local else _compile_samples(plan, n_alt)
                    if not fast.fullmatch(unseen):
                        problem = self._samples_problem_slow(plan, samples, n_alt)
                        if problem:
                            return self._fail(problem[0], line, fields, problem[1])
                    if len(good) > _MAX_GOOD_SAMPLES:
                        good.clear()
                    good.update(samples)
            elif not (fmt == "." and all(s == "." for s in fields[9:])):
                return self._fail(plan[0], line, fields, plan[1])

        # duplicates: the normalized alleles at this position (single SNV inline, the common case)
        if n_alt == 1 and len(ref) == 1 and len(alt) == 1 and alt != "*":
            key = (pos, ref, alt)
            if key in self._dup_keys:
                return self._fail("record.duplicate", line, fields, f"variant {pos} {ref}>{alt} was already seen")
            self._dup_keys.add(key)
            if pos > self._dup_max:
                self._dup_max = pos
            return None
        return self._register_alleles(pos, ref, alts, line, fields)

    def warn(self, found: Violation) -> None:
        """Keep a warning (the first ``_MAX_WARNINGS`` per rule; all are counted)."""
        seen = self.warning_counts.get(found.rule, 0)
        self.warning_counts[found.rule] = seen + 1
        if seen < _MAX_WARNINGS:
            self.warnings.append(found)

    # -- helpers for fixed columns --------------------------------------------------------
    @staticmethod
    def _fail(rule: str, line: int | None, fields: list[str], message: str) -> Violation:
        chrom = fields[0][:60] if fields else "?"
        pos = fields[1][:20] if len(fields) > 1 else "?"
        return violation(rule, line, f"{chrom}:{pos}: {message}")

    def _control_problem(self, column: int, character: str, line: int | None, fields: list[str]) -> Violation:
        name = spec.FIXED_COLUMNS[column].lstrip("#") if column < 8 else "FORMAT" if column == 8 else f"sample {column - 8}"
        return self._fail("record.control", line, [shown(f)[1:-1] for f in fields[:2]],
                          f"{name} holds the control character {character!r} (column {column + 1})")

    def _cached_chrom_problem(self, chrom: str) -> Problem | None:
        problems = self._c.chrom_problems
        if chrom in problems:
            return problems[chrom]
        problem = self._chrom_problem(chrom)
        if len(chrom) <= _MAX_CACHED_TEXT:
            if len(problems) >= _MAX_CACHED:  # a CHROM per record (hostile): the cache starts over
                problems.clear()
            problems[chrom] = problem
        return problem

    def _enter_contig(self, chrom: str) -> Problem | None:
        problem = self._cached_chrom_problem(chrom)
        if problem:
            return problem
        key = contig_key(chrom)
        if key != self._chrom_key:
            if key in self._finished:
                return "chrom.contiguous", f"records of {chrom} resume after another contig (not one block)"
            if self._chrom_key is not None:
                self._finished.add(self._chrom_key)
            self._chrom_key = key
            self._chrom_length = self._contigs.get(key) if self._contigs else None
            self._last_pos = -1
            self._dup_keys.clear()
            self._dup_max = -1
        self._chrom = chrom
        return None

    def _chrom_problem(self, chrom: str) -> Problem | None:
        bracketed = chrom.startswith("<") and chrom.endswith(">") and len(chrom) > 2
        name = chrom[1:-1] if bracketed else chrom
        if bracketed:
            if any(c.isspace() or c in ",<>" for c in name):
                return "chrom.chars", f"CHROM {shown(chrom)} is not a valid <ID>"
        elif not spec.CONTIG_RE.fullmatch(chrom):
            return "chrom.chars", f"CHROM {shown(chrom)} is not a valid contig name"
        if self._contigs is not None and name not in self._contigs:
            return "chrom.undeclared", f"CHROM {shown(chrom)} has no ##contig line"
        return None

    @staticmethod
    def _id_ok(ident: str) -> bool:
        if not _ID_RE.fullmatch(ident):
            return False
        if ";" in ident:
            parts = ident.split(";")
            return len(set(parts)) == len(parts)
        return True

    @staticmethod
    def _id_problem(ident: str) -> Problem:
        if not _ID_RE.fullmatch(ident):
            return "id.syntax", f"ID {shown(ident)} has whitespace or an empty identifier"
        return "id.duplicate", f"ID {shown(ident)} repeats an identifier"

    @staticmethod
    def _alt_problem(alts: list[str], repeat_symbolic: bool = False) -> Problem | None:
        """Syntax of each ALT allele, and no allele twice (comparison with REF is separate);
        ``repeat_symbolic``: a symbolic allele may repeat (4.4 copy-number alleles, told apart by CN)."""
        for allele in alts:
            if not allele:
                return "alt.bases", "an empty ALT allele (misplaced comma)"
            if not allele.strip(spec.BASES) or allele == "*":
                continue
            if allele == ".":
                if len(alts) > 1:
                    return "alt.bases", "'.' (no ALT) mixed with other ALT alleles"
                continue
            if allele.startswith("<") or allele.endswith(">"):
                inner = allele[1:-1]
                if not (allele.startswith("<") and allele.endswith(">")) or not inner or any(
                        c.isspace() or c in ",<>" for c in inner):
                    return "alt.symbolic", f"ALT {shown(allele)} is not a symbolic <ID>"
                continue
            if "[" in allele or "]" in allele:
                if not _BREAKEND_RE.fullmatch(allele):
                    return "alt.breakend", f"ALT {shown(allele)} is not a breakend (bases[chr:pos[ and the like)"
                continue
            if _SINGLE_BREAKEND_RE.fullmatch(allele):
                continue
            return "alt.bases", f"ALT {shown(allele)} is not made of A, C, G, T, N"
        if len(set(alts)) != len(alts):
            listed = [a for a in alts if not (repeat_symbolic and a.startswith("<"))]
            if len(set(listed)) != len(listed) or not repeat_symbolic:
                return "alt.duplicate", "an ALT allele is listed twice"
        return None

    def _filter_problem(self, filt: str) -> Problem | None:
        codes = filt.split(";")
        for code in codes:
            if not code or code == ".":
                return "filter.syntax", f"FILTER {shown(filt)} has an empty or '.' entry"
            if any(c.isspace() for c in code):
                return "filter.syntax", f"FILTER code {shown(code)} holds whitespace"
            if code == "0":
                return "filter.reserved", "FILTER code '0' is reserved"
            if self._filters is not None and code not in self._filters:
                return "filter.undeclared", f"FILTER code {shown(code)} has no ##FILTER line"
        if len(set(codes)) != len(codes):
            return "filter.duplicate", f"FILTER {shown(filt)} repeats a code"
        return None

    # -- INFO -------------------------------------------------------------------------------
    def _info_problem(self, info: str, n_alt: int, pos: int) -> Problem | None:
        """Tier 1: a regex of an INFO layout seen before (its keys in that order, so no key can
        repeat). Tier 2: the regex of any declared/undeclared keys, plus a duplicate-key test.
        Tier 3: the slow path, which names the problem."""
        last = self._last_layout
        if last is not None and last[0] == n_alt and last[1].fullmatch(info):
            return None if "END=" not in info else self._end_problem(info, n_alt, pos)
        c = self._c
        eq = info.find("=")
        fingerprint = (n_alt, info.count(";"), info[:eq] if eq > 0 else info)
        for layout in c.layouts.get(fingerprint, ()):
            if layout.fullmatch(info):
                self._last_layout = (n_alt, layout)
                return None if "END=" not in info else self._end_problem(info, n_alt, pos)
        generic = c.info_generic.get(n_alt)
        if generic is None:
            generic = c.info_generic[n_alt] = self._compile_info(n_alt)
        if generic.fullmatch(info):
            keys = [entry.partition("=")[0] for entry in info.split(";")]
            if len(keys) == len(set(keys)):
                self._learn_layout(fingerprint, keys, info)
                return None if "END=" not in info else self._end_problem(info, n_alt, pos)
        problem = self._info_problem_slow(info, n_alt, pos)
        if problem is None:  # valid, though beyond the generic regex (quotes, 4.2-only key characters)
            self._learn_layout(fingerprint, [entry.partition("=")[0] for entry in info.split(";")], info)
        return problem

    def _end_problem(self, info: str, n_alt: int, pos: int) -> Problem | None:
        end = _END_RE.search(info)
        if end and end[1].isdigit() and int(end[1]) >= pos:
            return None
        return self._info_problem_slow(info, n_alt, pos)

    def _learn_layout(self, fingerprint: tuple[int, int, str], keys: list[str], info: str) -> None:
        """Compile an ordered-keys regex for a layout seen twice (up to a few hundred layouts)."""
        c = self._c
        layout = (fingerprint[0], ";".join(keys))
        if len(c.layout_counts) > _MAX_LAYOUT_COUNTS:  # files whose every record has its own layout
            c.layout_counts.clear()
        seen = c.layout_counts.get(layout, 0) + 1
        c.layout_counts[layout] = seen
        if seen == 2 and c.n_layouts < _MAX_LAYOUTS:
            generic = r"(?:=[^;\t\"]+)?"
            parts = []
            for key in keys:
                definition = self._info.get(key)
                branch = generic if definition is None else _fast_info_branch(key, definition, fingerprint[0])
                parts.append(re.escape(key) + branch)
            c.layouts.setdefault(fingerprint, []).append(re.compile(";".join(parts)))
            c.n_layouts += 1

    def _info_problem_slow(self, info: str, n_alt: int, pos: int) -> Problem | None:
        seen: set[str] = set()
        for entry in info.split(";"):
            if not entry:
                return "info.syntax", "an empty INFO entry (';;' or a ';' at either end)"
            key, eq, value = entry.partition("=")
            if not (self._info_key_re.fullmatch(key) or key == "1000G"):
                return "info.key", f"INFO key {shown(key)} is not a valid key"
            if key in seen:
                return "info.duplicate", f"INFO key {key} appears twice"
            seen.add(key)
            definition = self._info.get(key)
            if definition is None:  # undeclared and not reserved: only the syntax is known
                if eq and not value:
                    return "info.syntax", f"INFO {key}= has an empty value"
                continue
            if definition.type == "Flag" or definition.number == "0":
                if eq and value not in ("0", "1"):
                    return "info.flag", f"INFO {key} is a Flag but has the value {shown(value)}"
                continue
            if not eq or not value:
                return "info.number", f"INFO {key} has no value (only Flags may stand alone)"
            problem = _values_problem("info", key, value, definition, n_alt, (2,), quoted_ok=True)
            if problem:
                return problem
            if (key in spec.NON_NEGATIVE_INFO and definition.type in ("Integer", "Float")
                    and any(v[0] == "-" and float(v) < 0 for v in value.split(",") if v != ".")):
                return "info.value", f"INFO {key}={shown(value)} is negative (a count or frequency)"
            if key == "CIGAR" and definition.type == "String":
                bad = [v for v in value.split(",") if v != "." and not spec.CIGAR_RE.fullmatch(v)]
                if bad:
                    return "info.value", f"INFO CIGAR {shown(bad[0])} is not a CIGAR string"
            if key == "END" and definition.type == "Integer" and value != "." and int(value) < pos:
                return "info.value", f"INFO END={value} is before POS {pos}"
        return None

    def _compile_info(self, n_alt: int) -> re.Pattern[str]:
        """One regex for a whole INFO column with ``n_alt`` ALT alleles: declared keys by type and
        count, other keys by syntax alone; branches grouped by first letter to keep matching fast."""
        by_first: dict[str, list[str]] = {}
        for key, definition in self._info.items():
            branch = _fast_info_branch(key, definition, n_alt)
            by_first.setdefault(key[0], []).append(re.escape(key[1:]) + branch)
        groups = [re.escape(first) + "(?:" + "|".join(branches) + ")" for first, branches in by_first.items()]
        known = "|".join(re.escape(key) for key in sorted(self._info, key=len, reverse=True))
        generic = (f"(?!(?:{known}){_NOT_KEYS})" if known else "") + r"[A-Za-z_][0-9A-Za-z_.]*(?:=[^;\t\"]+)?"
        entry = "(?:" + "|".join(groups + [generic]) + ")"
        return re.compile(f"{entry}(?:;{entry})*")

    # -- FORMAT and samples ---------------------------------------------------------------
    def _samples_problem_slow(self, plan: _FormatPlan, samples: list[str], n_alt: int) -> Problem | None:
        for sample in samples:
            problem = self._sample_problem_slow(plan, sample, n_alt)
            if problem:
                return problem
        return None

    def _plan_format(self, fmt: str) -> _FormatPlan | Problem:
        keys = fmt.split(":")
        for key in keys:
            if not key:
                return "format.syntax", f"FORMAT {shown(fmt)} has an empty key"
            if not self._format_key_re.fullmatch(key):
                return "format.syntax", f"FORMAT key {shown(key)} is not a valid key"
        if len(set(keys)) != len(keys):
            return "format.syntax", f"FORMAT {shown(fmt)} repeats a key"
        if "GT" in keys and keys[0] != "GT":
            return "format.syntax", f"FORMAT {shown(fmt)}: GT must be the first key"
        defs = [self._formats.get(key) for key in keys]
        local_keys = [k for k, d in zip(keys, defs) if k == "LGT" or (d is not None and d.number in spec.LOCAL_NUMBERS)]
        laa = keys.index("LAA") if "LAA" in keys else -1
        if local_keys and laa >= 0 and applies("sample.laa", self._version):
            misplaced = [k for k in keys[:laa] if k in local_keys]
            if misplaced:
                return "sample.laa", f"FORMAT {shown(fmt)}: LAA must precede {misplaced[0]}"
        local = bool(local_keys or laa >= 0) and applies("sample.local_number", self._version)
        return _FormatPlan(keys, defs, keys[0] == "GT", laa, local)

    def _sample_problem_slow(self, plan: _FormatPlan, sample: str, n_alt: int) -> Problem | None:
        values = sample.split(":")
        if len(values) > len(plan.keys):
            return "sample.fields", f"sample {shown(sample)} has more fields than FORMAT ({len(plan.keys)})"
        ploidies: tuple[int, ...] = (2,)
        start = 0
        if plan.has_gt:
            gt = values[0]
            alleles = _GT_SPLIT_RE.split(gt)
            for allele in alleles:
                if allele == ".":
                    continue
                if not (allele.isdigit() and allele.isascii()):
                    return "gt.syntax", f"GT {shown(gt)} is not allele indexes joined by / or |"
                if n_alt and int(allele) > n_alt:  # ALT '.': files keep their usual GTs
                    return "gt.allele_range", f"GT {shown(gt)} refers to allele {allele}, the record has {n_alt} ALT"
            ploidies = (len(alleles), 2) if all(a == "." for a in alleles) else (len(alleles),)
            start = 1
        local: list[str] | None = None  # the column's LAA, when the FORMAT has local-allele fields
        if plan.local:
            laa = values[plan.laa] if 0 <= plan.laa < len(values) else "."
            local = [] if laa in (".", "") else laa.split(",")
            problem = _laa_problem(local, n_alt)
            if problem:
                return problem
            if sample == "":  # an omitted column: LAA of zero length (the 4.5 suite's zero_length_LAA)
                return None
        for k in range(start, len(values)):
            value, key, definition = values[k], plan.keys[k], plan.defs[k]
            if not value:
                if local is not None and (key == "LAA" or (definition is not None and definition.number == "LA")):
                    continue  # a zero-length vector (4.5: a REF-only site of this sample)
                return "sample.fields", f"FORMAT {key} has an empty value (use '.')"
            if definition is None or value == ".":
                continue
            if local is not None and (key == "LGT" or definition.number in spec.LOCAL_NUMBERS):
                problem = _local_problem(key, value, definition, local, ploidies, plan.keys, values)
                if problem:
                    return problem
                continue
            problem = _values_problem("sample", key, value, definition, n_alt, ploidies, quoted_ok=False)
            if problem:
                return problem
            if (key in spec.NON_NEGATIVE_FORMAT and definition.type == "Integer"
                    and any(v[0] == "-" and int(v) < 0 for v in value.split(",") if v != ".")):
                return "sample.value", f"FORMAT {key}={shown(value)} is negative"
        return None

    # -- duplicates ---------------------------------------------------------------------------
    def _register_alleles(self, pos: int, ref: str, alts: list[str], line: int | None,
                          fields: list[str]) -> Violation | None:
        keys = []
        for allele in alts:
            if len(ref) == 1 and len(allele) == 1:
                if allele == "*" or allele == ".":
                    continue
                key = (pos, ref, allele)
            elif allele.strip(spec.BASES):
                continue  # symbolic, breakend, '*': their identity needs END/SVLEN, not checked here
            else:
                key = trim_alleles(pos, ref, allele)
            if key in self._dup_keys:
                return self._fail("record.duplicate", line, fields,
                                  f"variant {key[0]} {key[1]}>{key[2]} (normalized) was already seen")
            keys.append(key)
        for key in keys:
            self._dup_keys.add(key)
            if key[0] > self._dup_max:
                self._dup_max = key[0]
        return None


def _laa_problem(local: list[str], n_alt: int) -> Problem | None:
    """LAA: distinct 1-based ALT indexes (4.5 section "Local alleles")."""
    for index in local:
        if (not (index.isdigit() and index.isascii()) or len(index) > _MAX_INDEX_DIGITS
                or not 1 <= int(index) <= max(n_alt, 1)):
            return "sample.laa", f"LAA {shown(','.join(local))}: {shown(index)} is not an ALT index 1..{n_alt}"
    if len(set(local)) != len(local):
        return "sample.laa", f"LAA {shown(','.join(local))} repeats an ALT index"
    return None


def _local_problem(key: str, value: str, definition: FieldDef, local: list[str], ploidies: tuple[int, ...],
                   keys: list[str], values: list[str]) -> Problem | None:
    """An LGT or a Number=LA/LR/LG value against the column's LAA (``local``)."""
    n_local = len(local)
    if key == "LGT":
        for allele in _GT_SPLIT_RE.split(value):
            if allele != "." and not (allele.isdigit() and allele.isascii() and len(allele) <= _MAX_INDEX_DIGITS
                                      and int(allele) <= n_local):
                return "sample.lgt", f"LGT {shown(value)} refers to {shown(allele)}, LAA lists {n_local} allele(s)"
        return None
    if keys[0] != "GT" and "LGT" in keys:  # the ploidy of a GT-less column is that of its LGT
        lgt = values[keys.index("LGT")] if keys.index("LGT") < len(values) else "."
        ploidies = (len(_GT_SPLIT_RE.split(lgt)),) if lgt not in (".", "") else (ploidies[0], 2)
    if definition.number == "LA":
        counts: tuple[int, ...] = (n_local,)
    elif definition.number == "LR":
        counts = (n_local + 1,)
    else:
        counts = tuple(spec.genotype_count(n_local + 1, p) for p in ploidies)
    found = len(value.split(","))
    if found not in counts:
        return "sample.local_number", (f"FORMAT {key} has {found} value(s), Number={definition.number} with "
                                       f"LAA {shown(','.join(local) or '(empty)')} expects "
                                       f"{' or '.join(map(str, counts))}")
    return _values_problem("sample", key, value, FieldDef(".", definition.type), 0, ploidies, quoted_ok=False)


def _svlen_problem(info: str, alt: str, pos: int) -> Problem | None:
    """4.4: a DEL, DUP, INV or CNV symbolic allele ends at POS + SVLEN (|SVLEN|: 4.2 wrote
    deletions negative), so an END given with it must agree."""
    if alt[1:-1].split(":", 1)[0] not in _SPANNING:
        return None
    svlen, end = _SVLEN_RE.search(info), _END_RE.search(info)
    if svlen is None or end is None:
        return None
    length, stop = svlen[1].lstrip("-"), end[1]
    if not (length.isdigit() and stop.isdigit()) or len(length) > 10 or len(stop) > 10:
        return None  # typed by the INFO rules
    if pos + int(length) != int(stop):
        return "info.svlen", f"END={stop} is not POS + SVLEN ({pos} + {length}) for {alt}"
    return None


def _cn_svlen_problem(info: str, alts: list[str], fmt: str) -> Problem | None:
    """4.4: with FORMAT CN, the record's CNV, DEL and DUP alleles share one SVLEN."""
    if "CN" not in fmt.split(":"):
        return None
    svlen = _SVLEN_RE.search(info)
    if svlen is None:
        return None
    lengths = svlen[1].split(",")
    if len(lengths) != len(alts):
        return None  # the count is info.number's
    copy_number = {length.lstrip("-") for length, allele in zip(lengths, alts)
                   if allele[1:4] in ("CNV", "DEL", "DUP") and allele[:1] == "<" and length != "."}
    if len(copy_number) > 1:
        return "info.cn_svlen", f"SVLEN={shown(svlen[1])}: CNV, DEL and DUP alleles differ with FORMAT CN"
    return None


def _svclaim_problem(info: str, alts: list[str]) -> Problem | None:
    """4.4 SVCLAIM: one claim per ALT, of those its kind of allele allows (other alleles: any)."""
    found = _SVCLAIM_RE.search(info)
    if found is None:
        return None
    claims = found[1].split(",")
    if found[1] == "." or len(claims) != len(alts):
        return None if found[1] == "." else (
            "info.svclaim", f"SVCLAIM {shown(found[1])} has {len(claims)} value(s) for {len(alts)} ALT")
    for claim, allele in zip(claims, alts):
        if allele.startswith("<"):
            kind = allele[1:-1].split(":", 1)[0]
        elif "[" in allele or "]" in allele or _SINGLE_BREAKEND_RE.fullmatch(allele):
            kind = "BND"
        else:
            kind = ""
        allowed = _SVCLAIMS.get(kind)
        if allowed is None and claim not in ("D", "J", "DJ", "."):
            return "info.svclaim", f"SVCLAIM {shown(claim)} is not D, J, DJ or '.'"
        if allowed is not None and claim not in allowed:
            return "info.svclaim", f"SVCLAIM {shown(claim)} is not allowed for {allele} ({', '.join(sorted(allowed))})"
    return None


def _expected_counts(definition: FieldDef, n_alt: int, ploidies: tuple[int, ...]) -> tuple[int, ...] | None:
    """The value counts a Number allows (None: any)."""
    number = definition.number
    if number.isdigit():
        return (int(number),)
    if number == "A":
        return (n_alt,) if n_alt else None
    if number == "R":
        return (n_alt + 1,)
    if number == "G":
        if not n_alt:  # a monomorphic site: files keep the counts of their variant sites
            return None
        return tuple(spec.genotype_count(n_alt + 1, p) for p in ploidies)
    return None  # '.', and 4.5's P, M and local Numbers (checked against LAA by _local_problem)


def _values_problem(where: str, key: str, value: str, definition: FieldDef, n_alt: int,
                    ploidies: tuple[int, ...], quoted_ok: bool) -> Problem | None:
    """Count and type of one INFO/FORMAT value against its definition (rule ids ``{where}.*``)."""
    label = "INFO" if where == "info" else "FORMAT"
    if quoted_ok and definition.type == "String" and len(value) > 1 and value[0] == '"' == value[-1]:
        values = [value]  # a quoted string is one value, commas included
    else:
        values = value.split(",")
    if value != ".":
        info_g = where == "info" and definition.number == "G"  # INFO has no ploidy: any count
        counts = None if info_g else _expected_counts(definition, n_alt, ploidies)
        if counts is not None and len(values) not in counts:
            return (f"{where}.number", (f"{label} {key} has {len(values)} value(s), Number={definition.number} "
                                        f"expects {' or '.join(map(str, counts))}"))
    kind = definition.type
    for v in values:
        if v == ".":
            continue
        if not v:
            return f"{where}.type", f"{label} {key}={shown(value)} has an empty value in its list"
        if kind == "Integer":
            if not spec.INTEGER_RE.fullmatch(v):
                return f"{where}.type", f"{label} {key} value {shown(v)} is not an Integer"
            number = int(v)
            if number > spec.INT32_MAX or number < spec.INT32_MIN_ALLOWED:
                return f"{where}.integer_range", f"{label} {key} value {v} is outside the 32-bit VCF Integer range"
        elif kind == "Float":
            if not spec.FLOAT_RE.fullmatch(v):
                return f"{where}.type", f"{label} {key} value {shown(v)} is not a Float"
        elif kind == "Character" and len(v) != 1:
            return f"{where}.type", f"{label} {key} value {shown(v)} is not a single Character"
    return None


def _value_pattern(definition: FieldDef, key: str, where: str) -> str:
    kind = definition.type
    non_negative = key in (spec.NON_NEGATIVE_INFO if where == "info" else spec.NON_NEGATIVE_FORMAT)
    if kind == "Integer":
        return "(?:" + (_UINT if non_negative else _INT) + r"|\.)"
    if kind == "Float":
        return "(?:" + (_UFLOAT if non_negative else spec.FLOAT_PATTERN) + r"|\.)"
    stop = ";" if where == "info" else ":"
    if kind == "Character":
        return rf"[^,{stop}\t]"
    if where == "info" and key == "CIGAR":
        return r"(?:\.|(?:[0-9]+[MIDNSHP=X])+)"
    return rf"[^,{stop}\t\"]+"


def _repeat(value: str, counts: tuple[int, ...] | None) -> str:
    if counts is None:
        return f"{value}(?:,{value})*"
    options = []
    for count in sorted(set(counts)):
        if count == 1:
            options.append(value)
        elif count > 1:
            options.append(rf"{value}(?:,{value}){{{count - 1}}}|\.")
        else:
            options.append(r"\.")
    return "(?:" + "|".join(options) + ")"


def _fast_info_branch(key: str, definition: FieldDef, n_alt: int) -> str:
    """Regex for one declared INFO key after its first letter (END is checked against POS later)."""
    if definition.type == "Flag" or definition.number == "0":
        return "(?=;|$)"
    counts = None if definition.number == "G" else _expected_counts(definition, n_alt, (2,))
    return "=" + _repeat(_value_pattern(definition, key, "info"), counts)


def _compile_samples(plan: _FormatPlan, n_alt: int) -> re.Pattern[str]:
    """Regex for all sample columns joined by TAB, for haploid and diploid calls (one branch per
    ploidy only when a Number=G field depends on it)."""
    n_alleles = n_alt + 1
    if n_alleles <= 10:
        allele = f"[0-{n_alleles - 1}.]"
    else:
        allele = "(?:" + spec.int_range_pattern(n_alleles - 1) + r"|\.)"
    by_ploidy = any(d is not None and d.number == "G" for d in plan.defs)
    variants = []
    for ploidy in ((2, 1) if plan.has_gt and by_ploidy else (2,)):
        parts = []
        if plan.has_gt:
            if not by_ploidy:
                parts.append(f"{allele}(?:[/|]{allele})?")
            else:
                parts.append(allele if ploidy == 1 else allele + "[/|]" + allele)
        for key, definition in zip(plan.keys[1:] if plan.has_gt else plan.keys,
                                   plan.defs[1:] if plan.has_gt else plan.defs):
            if definition is None:
                parts.append(r"[^:\t]+")
            else:
                counts = _expected_counts(definition, n_alt, (ploidy,))
                parts.append(_repeat(_value_pattern(definition, key, "sample"), counts))
        pattern = parts[-1]
        for part in reversed(parts[:-1]):
            pattern = f"{part}(?::{pattern})?"
        variants.append(pattern)
    sample = "(?:" + "|".join(variants) + ")"
    return re.compile(f"{sample}(?:\t{sample})*")
