"""Reading one chunk into an ``AlleleBatch``: validate, split multi-allelics, normalize, key.

Per record: the validator checks the raw line; a record that breaks a rule is quarantined
(kept with its line, rule and message) and the rest of the chunk goes on. Each ALT becomes one
allele row (gVCF placeholders ``<NON_REF>``/``<*>`` are never published; a record with nothing
else is a reference block). INFO and FORMAT values are typed by the header (pysam parses it);
Number=A/R values are cut to the allele and genotypes re-coded for it, as ``bcftools norm -m-``
does (other ALTs become REF in the message's GT; the genotype matrix marks them 2). VCF 4.5
local alleles are cut alike: a sample's Number=LA/LR/LG values are cut to the allele through
its LAA (null where the allele is not local to the sample), its LAA becomes [1] or null, and
its LGT is re-coded as GT is; without GT, the calls (and so the carriers) come from LGT.

The chunk's valid records are built at once (``_columnar``): their columns become Arrow arrays,
each distinct QUAL, INFO entry and sample column is typed once, and keys, normalization, table
columns and the message JSON (``vcfstream.vcf.encode``) are built by Arrow kernels; only the
alleles of records with a symbolic ALT are normalized and keyed one by one (END and SVLEN; CN
too for a symbolic allele its record repeats).
A record holding a value that cannot be typed is quarantined with the value's error.

Bounded work whatever the file holds (``vcfstream.vcf.limits``): a line over the length limit
(``record.line_length``), a record over the ALT limit (``record.alt_count``) or whose ALT count
times its line length is over their limit (``record.alt_line_bytes``) is quarantined before it
is split or checked, and a record the chunk cannot be built with (an Arrow error, a
value out of a column's range) is found by building halves of the chunk and quarantined alone
(``record.encode``): the chunk never fails for one record. A message over the platforms' size
limit (``MessageOptions.max_bytes``) is written compact, then without FORMAT values; a record with
one that still does not fit is quarantined (``message.size``) and the rest of the chunk goes on.
"""

from __future__ import annotations

import hashlib
import operator
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from itertools import chain
from typing import Any, TypeVar

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pysam

from vcfstream.model import ALLELE_SCHEMA, AlleleBatch, Chunk, Quarantined
from vcfstream.runtime.memo import Kept
from vcfstream.vcf.encode import (
    DEFAULT_OPTIONS,
    MessageOptions,
    MessageParts,
    compact_genotypes,
    join,
    json_arrays,
    json_objects,
    message_sizes,
    message_values,
    record_json,
)
from vcfstream.vcf.keys import hex_ids, variant_key, variant_keys
from vcfstream.vcf.normalize import SYMBOLIC, Normalizer, is_symbolic, variant_type
from vcfstream.vcf.source import LongLine, SourceFile, iter_chunk_lines
from vcfstream.vcf.validation import HeaderCheck, RecordChecker, check_header

GVCF_PLACEHOLDERS = frozenset({"<NON_REF>", "<*>", "."})
RAW_LINE_LIMIT = 4096  # bytes of a bad line kept in the dead-letter table

Caster = Callable[[str], Any]


def _int(text: str) -> int | None:
    return None if text == "." else int(text)


def _float(text: str) -> float | None:
    return None if text == "." else float(text)


def _str(text: str) -> str | None:
    return None if text == "." else text


_CASTERS: dict[str, Caster] = {"Integer": _int, "Float": _float, "String": _str, "Character": _str}


@dataclass(frozen=True, slots=True)
class FieldType:
    number: str  # "0", "1", "2", ..., "A", "R", "G", "."
    cast: Caster

    def parse(self, text: str) -> Any:
        if self.number == "1":
            return self.cast(text)
        return [self.cast(part) for part in text.split(",")]

    def converter(self) -> Caster:
        """One call per value: '.' -> None, Number=1 -> scalar, else a list."""
        cast = self.cast
        if self.number == "1":
            return cast
        return lambda text: None if text == "." else [cast(part) for part in text.split(",")]


_DEFAULT_TYPE = FieldType(".", _str)


@dataclass(frozen=True, slots=True)
class HeaderTypes:
    """INFO and FORMAT definitions, as declared in the header."""

    info: dict[str, FieldType]
    formats: dict[str, FieldType]
    info_converters: dict[str, Caster] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.info_converters.update({key: t.converter() for key, t in self.info.items()})

    @classmethod
    def from_source(cls, source: SourceFile) -> HeaderTypes:
        header = pysam.VariantHeader()
        for line in source.header_lines:  # only what types values: each add_line costs O(header)
            if line.startswith(("##INFO=", "##FORMAT=", "##fileformat=")):
                try:
                    header.add_line(line)
                except ValueError:
                    continue  # the validator reports malformed meta lines
        return cls(_field_types(header.info), _field_types(header.formats))


def _field_types(defs: Any) -> dict[str, FieldType]:
    result = {}
    for key, meta in defs.items():
        try:
            number = str(meta.number)
        except IndexError:  # pysam has no name for 4.5's Numbers (LA, LR, LG, P, M): the header's text
            number = str(meta.record.get("Number", "."))
        if meta.type == "Flag":
            number = "0"
        result[key] = FieldType(number, _CASTERS.get(meta.type, _str))
    return result


@dataclass(slots=True)
class ReadContext:
    """What every chunk of one file shares: where it goes, how it is keyed and checked."""

    dataset: str
    assembly: str
    source: SourceFile
    normalizer: Normalizer
    header: HeaderCheck
    types: HeaderTypes
    options: MessageOptions = DEFAULT_OPTIONS
    _format_plans: dict[str, FormatPlan] = field(default_factory=dict)
    _messages: MessageParts | None = None
    _info_entries: dict[str, tuple[str, Any]] = field(default_factory=dict)  # see _parse_info

    def format_plan(self, text: str) -> FormatPlan:
        plan = self._format_plans.get(text)
        if plan is None:
            if len(self._format_plans) >= CACHE_LIMIT:  # a FORMAT per record: plans are not kept forever
                self._format_plans.clear()
            plan = self._format_plans[text] = FormatPlan.build(text, self.types.formats)
        return plan

    def messages(self) -> MessageParts:
        if self._messages is None:
            self._messages = MessageParts.build(self.dataset, self.assembly, self.source)
        return self._messages

    @classmethod
    def open(cls, dataset: str, assembly: str, source: SourceFile, reference: str | None = None,
             options: MessageOptions = DEFAULT_OPTIONS) -> ReadContext:
        return cls(dataset, assembly, source, Normalizer(assembly, reference),
                   check_header(source.path, source.header_lines), HeaderTypes.from_source(source), options)

    @property
    def key(self) -> tuple[object, ...]:
        """Contexts with equal keys read a chunk alike."""
        return context_key(self.dataset, self.assembly, self.source, self.normalizer.reference, self.options)


def context_key(dataset: str, assembly: str, source: SourceFile, reference: str | None,
                options: MessageOptions = DEFAULT_OPTIONS) -> tuple[object, ...]:
    return (dataset, assembly, source.path, source.digest, reference, source.limits, options)


_contexts: Kept[ReadContext] = Kept(4)  # files whose contexts stay warm in a process


def kept_context(dataset: str, assembly: str, source: SourceFile, reference: str | None = None,
                 options: MessageOptions = DEFAULT_OPTIONS) -> ReadContext:
    """``ReadContext.open``, kept for the last few files: opening one checks and types the whole
    header (150 ms for a GRCh38 header of 3,400 contigs), and its FORMAT plans and value caches
    stay warm across chunks. Its caches are not guarded for concurrent reads: share a kept
    context only within a reader process, or where it does not read (the flow's process when
    reader processes parse)."""
    return _contexts.get(context_key(dataset, assembly, source, reference, options),
                         lambda: ReadContext.open(dataset, assembly, source, reference, options))


def _compact(data: bytes) -> bytes:
    """A copy of orjson output that is kept (its own bytes keep a 4 KiB allocation)."""
    return bytes(memoryview(data))


@dataclass(slots=True)
class ChunkRead:
    """A chunk as read: its alleles, its quarantined records, and ``digest``, the BLAKE2b-256 (hex)
    of its record lines as read (each line then a newline; a line over the length limit counts
    as its kept head), in the order read: the same for every read of the same chunk of the
    same file, whatever the container (text, BGZF, BCF rendered as text)."""

    batch: AlleleBatch
    quarantined: list[Quarantined]
    records: int = 0
    reference_blocks: int = 0
    digest: str = ""


@dataclass(slots=True)
class _Plain:
    """The chunk's valid records, kept as split (``_columnar`` does the rest per chunk)."""

    fields: list[list[str]] = field(default_factory=list)
    read: list[tuple[int | None, bytes]] = field(default_factory=list)  # (line number, raw line)
    order: list[int] = field(default_factory=list)  # the record's place among the chunk's records
    symbolic: list[bool] = field(default_factory=list)  # the record has a symbolic ALT


def _place(record: Any, index: Any) -> Any:
    """An allele's place in the chunk: its record's place, then its ALT index."""
    return record << 16 | index


def _plain_alts(text: str) -> bool:
    """True when every ALT in the column is made of bases (none is symbolic); a quick test."""
    return bool(text) and not text.strip("ACGTNacgtn,") and text[0] != "," and text[-1] != "," and ",," not in text


def _wanted(alt_column: str) -> list[tuple[int, str]]:
    """The publishable ALTs of a record with their 1-based indexes (gVCF placeholders left out)."""
    return [(i, alt) for i, alt in enumerate(alt_column.split(","), 1) if alt not in GVCF_PLACEHOLDERS]


def read_chunk(ctx: ReadContext, chunk: Chunk,
               lines: Iterable[tuple[int | None, bytes]] | None = None) -> ChunkRead:
    """Read, validate, split and key every record of one chunk (``lines``: its raw lines, if read already).

    Records are checked one by one, in file order. A valid record is kept as split; the
    chunk is then built at once (``_columnar``), each distinct value typed once. A
    record holding a value that cannot be typed is quarantined with the value's error."""
    source = ctx.source
    checker = RecordChecker(ctx.header)
    if chunk.lead_in or chunk.lead_in_contig or chunk.finished_contigs:
        checker.resume(chunk.lead_in, chunk.lead_in_contig, chunk.finished_contigs)
    plain = _Plain()
    quarantined: list[tuple[int, Quarantined]] = []  # (record's place, what was kept of it)
    records = reference_blocks = 0
    limits = source.limits
    digest = hashlib.blake2b(digest_size=32)
    for item in iter_chunk_lines(source, chunk) if lines is None else lines:
        records += 1
        line_no, raw = item
        digest.update(raw)
        digest.update(b"\n")
        if type(raw) is LongLine or len(raw) > limits.max_line_bytes:
            length = raw.length if isinstance(raw, LongLine) else len(raw)
            quarantined.append((records, _quarantine(
                source.path, line_no, "record.line_length",
                f"the line is {length:,} bytes, over the limit of {limits.max_line_bytes:,} "
                f"(VCFSTREAM_MAX_LINE_BYTES); its first {min(length, RAW_LINE_LIMIT)} bytes are kept", raw)))
            continue
        try:
            text = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as exc:
            quarantined.append((records, _quarantine(source.path, line_no, "record.encoding",
                                                     f"bytes that are not UTF-8 at column {exc.start + 1}", raw)))
            continue
        fields = text.split("\t")
        alts = fields[4].count(",") + 1 if len(fields) > 4 else 0
        if alts > limits.max_alts:
            quarantined.append((records, _quarantine(
                source.path, line_no, "record.alt_count", f"{alts:,} ALT alleles, over the "
                f"limit of {limits.max_alts:,} (VCFSTREAM_MAX_ALTS)", raw)))
            continue
        if alts * len(raw) > limits.max_alt_line_bytes:  # each ALT: a message carrying the record's calls
            quarantined.append((records, _quarantine(
                source.path, line_no, "record.alt_line_bytes", f"{alts:,} ALT alleles x {len(raw):,} bytes of line = "
                f"{alts * len(raw):,}, over the limit of {limits.max_alt_line_bytes:,} (VCFSTREAM_MAX_ALT_LINE_BYTES): "
                f"one message per ALT would carry the record's calls", raw)))
            continue
        violation = checker.check(fields, line_no)
        if violation is not None:
            quarantined.append((records, _quarantine(source.path, line_no, violation.rule, violation.message, raw)))
            continue
        try:
            pos = int(fields[1])
            mismatch = ctx.normalizer.check_ref(fields[0], pos, fields[3])
            if mismatch is not None:
                quarantined.append((records, _quarantine(source.path, line_no, "ref.mismatch", mismatch, raw)))
                continue
            symbolic = False
            if not _plain_alts(fields[4]):
                wanted = _wanted(fields[4])
                if not wanted:
                    reference_blocks += 1
                    continue
                symbolic = any(is_symbolic(alt) for _, alt in wanted)
            plain.fields.append(fields)
            plain.read.append(item)
            plain.order.append(records)
            plain.symbolic.append(symbolic)
        except (ValueError, IndexError) as exc:  # a value the validator let through but cannot be typed
            quarantined.append((records, _unparseable(source.path, line_no, exc, raw)))
    part, plain, unencodable = _build(ctx, plain)
    part, oversized = _fit(ctx, part, plain)
    quarantined += oversized
    for k in part.refused:
        (line_no, raw), fields = plain.read[k], plain.fields[k]
        quarantined.append((plain.order[k], _unparseable(source.path, line_no, _typing_error(ctx, fields), raw)))
    for place, (line_no, raw), error in unencodable:
        quarantined.append((place, _quarantine(source.path, line_no, "record.encode",
                                               f"the record cannot be encoded: {type(error).__name__}: {error}", raw)))
    quarantined.sort(key=operator.itemgetter(0))
    return ChunkRead(_to_batch(ctx, part), [q for _, q in quarantined], records, reference_blocks, digest.hexdigest())


# What building a chunk's columns raises for a record it cannot hold (Arrow's offsets and types,
# numpy's integer ranges); MemoryError is not one of them.
_ENCODE_ERRORS = (pa.ArrowException, ArithmeticError, ValueError, LookupError, TypeError)


def _build(ctx: ReadContext, plain: _Plain) -> tuple[_Part, _Plain, list[tuple[int, tuple[int | None, bytes], Exception]]]:
    """``_columnar`` of the chunk's valid records; when it fails, of halves of them, down to the
    single records that fail alone (quarantined: their place, line and error). Returns the part,
    the records it holds (its ``refused`` index them) and the records left out."""
    try:
        return _columnar(ctx, plain), plain, []
    except _ENCODE_ERRORS as exc:
        if len(plain.fields) == 1:
            return _Part.empty(len(ctx.source.samples)), _Plain(), [(plain.order[0], plain.read[0], exc)]
    half = len(plain.fields) // 2
    first, first_plain, first_bad = _build(ctx, _subset(plain, slice(0, half)))
    second, second_plain, second_bad = _build(ctx, _subset(plain, slice(half, None)))
    kept = _Plain(first_plain.fields + second_plain.fields, first_plain.read + second_plain.read,
                  first_plain.order + second_plain.order, first_plain.symbolic + second_plain.symbolic)
    return _Part.concat(first, second, len(first_plain.fields)), kept, first_bad + second_bad


def _subset(plain: _Plain, part: slice | list[int]) -> _Plain:
    if isinstance(part, slice):
        return _Plain(plain.fields[part], plain.read[part], plain.order[part], plain.symbolic[part])
    return _Plain([plain.fields[k] for k in part], [plain.read[k] for k in part], [plain.order[k] for k in part],
                  [plain.symbolic[k] for k in part])


def _fit(ctx: ReadContext, part: _Part, plain: _Plain) -> tuple[_Part, list[tuple[int, Quarantined]]]:
    """``part`` with every message within ``ctx.options.max_bytes`` (``message_sizes``). A message
    over it is written again in the next form that may fit (its record built again): full, then
    compact, then compact without FORMAT values (``"format":null``); an allele whose message is
    still over it is left out, and its record quarantined (``message.size``) with the alleles
    left out. Returns the part and those records (their place, what is kept of them)."""
    limit = ctx.options.max_bytes
    if limit is None or not len(part.order):
        return part, []
    table = part.table
    sizes = message_sizes(table.column("value"), table.column("variant_key"), ctx.dataset, ctx.source.path)
    over = sizes > limit
    if not over.any():
        return part, []
    first_sizes = sizes.copy()
    place_of = {place: k for k, place in enumerate(plain.order)}
    smaller = [] if ctx.options.compact(len(ctx.source.samples)) else [ctx.options.format_values]
    smaller += [False] if ctx.options.format_values else []  # format values in the compact form
    for format_values in smaller:
        if not over.any():
            break
        records = sorted({place_of[int(place) >> 16] for place in part.order[over]})
        rebuilt = _columnar(ctx, _subset(plain, records), compact=True, format_values=format_values)
        rows = np.flatnonzero(np.isin(part.order, rebuilt.order))  # both in chunk order
        mask = np.zeros(len(part.order), dtype=bool)
        mask[rows] = True
        values = pc.replace_with_mask(table.column("value").combine_chunks(), pa.array(mask),
                                      rebuilt.table.column("value").combine_chunks())
        table = table.set_column(table.schema.get_field_index("value"), "value", values)
        sizes[rows] = message_sizes(rebuilt.table.column("value"), rebuilt.table.column("variant_key"),
                                    ctx.dataset, ctx.source.path)
        over = sizes > limit
    part = _Part(table, part.order, part.gt, part.tails, part.with_gt, part.refused)
    if not over.any():
        return part, []
    kept = ~over
    dropped: dict[int, list[str]] = {}
    alts = table.column("alt").to_pylist()
    for row in np.flatnonzero(over).tolist():
        place = int(part.order[row])
        dropped.setdefault(place >> 16, []).append(
            f"ALT {place & 0xFFFF} ({alts[row][:40]}): {int(sizes[row]):,} bytes"
            + (f" ({int(first_sizes[row]):,} as first written)" if first_sizes[row] != sizes[row] else ""))
    quarantined = []
    for record_place, texts in dropped.items():
        line_no, raw = plain.read[place_of[record_place]]
        quarantined.append((record_place, _quarantine(
            ctx.source.path, line_no, "message.size",
            f"a message over the limit of {limit:,} bytes even in the compact form without FORMAT values (the "
            f"smallest message size limit of the configured platforms, VCFSTREAM_KAFKA_MESSAGE_MAX_BYTES): "
            f"{'; '.join(texts)}; not published", raw)))
    part = _Part(table.filter(pa.array(kept)), part.order[kept], part.gt[kept], part.tails[kept], part.with_gt,
                 part.refused)
    return part, quarantined


def _quarantine(path: str, line: int | None, rule: str, message: str, raw: bytes) -> Quarantined:
    where = f"line {line}" if line else "record " + ":".join(raw[:200].decode("latin-1").split("\t")[:2])
    text = raw[:RAW_LINE_LIMIT].decode("utf-8", errors="replace").replace("\0", "\ufffd")  # PostgreSQL text refuses NUL
    return Quarantined(path, line, rule, f"{path}: {where}: [{rule}] {message}".replace("\0", "\ufffd"), text)


def _unparseable(path: str, line: int | None, exc: Exception | None, raw: bytes) -> Quarantined:
    return _quarantine(path, line, "record.parse", f"unparseable value: {exc}", raw)


def _typing_error(ctx: ReadContext, fields: list[str]) -> Exception | None:
    """The error of the first value of a record that cannot be typed: QUAL, INFO entries in
    order, then the sample columns for each publishable ALT (``FormatPlan.sample_entries``)."""
    try:
        ctx.messages().qual(fields[5])
        _parse_info(fields[7], ctx.types.info_converters, ctx._info_entries)
        if len(fields) > 8:
            plan, n_alts = ctx.format_plan(fields[8]), fields[4].count(",") + 1
            for index, _ in _wanted(fields[4]):
                plan.sample_entries(fields[9:], n_alts, index)
    except (ValueError, IndexError) as exc:
        return exc
    return None


_DEFAULT_CONVERTER = _DEFAULT_TYPE.converter()


def _type_entry(entry: str, converters: dict[str, Caster]) -> tuple[str, Any]:
    """One INFO entry (``KEY=value``, or a flag's ``KEY``) typed by the header: (key, value)."""
    key, eq, value = entry.partition("=")
    return key, converters.get(key, _DEFAULT_CONVERTER)(value) if eq else True


def _parse_info(text: str, converters: dict[str, Caster], seen: dict[str, tuple[str, Any]]) -> dict[str, Any]:
    """INFO typed by the header. ``seen`` keeps INFO entry text -> (key, typed value): entries
    repeat (AN=6, AC=1), and their values are shared between records, never modified."""
    if text == "." or not text:
        return {}
    entries = text.split(";")
    pairs = list(map(seen.get, entries))
    if None in pairs:
        for i, pair in enumerate(pairs):
            if pair is None:
                pairs[i] = pair = _type_entry(entries[i], converters)
                if len(seen) >= CACHE_LIMIT:
                    seen.clear()
                seen[entries[i]] = pair
    return dict(pairs)  # type: ignore[arg-type]


def _allele_value(value: Any, number: str, index: int) -> Any:
    """Cut a Number=A/R value to one ALT (1-based ``index``); others pass unchanged."""
    if not isinstance(value, list):
        return value
    if number == "A" and len(value) >= index:
        return [value[index - 1]]
    if number == "R" and len(value) > index:
        return [value[0], value[index]]
    return value


_LOCAL_NUMBERS = frozenset({"LA", "LR", "LG"})


def _local_laa(text: str) -> list[int]:
    """A sample's LAA (1-based ALT indexes); missing or empty: none."""
    return [] if text in (".", "") else [int(part) for part in text.split(",")]


def _local_value(value: Any, number: str, index: int, laa: list[int]) -> Any:
    """A Number=LA/LR/LG value cut to ALT ``index`` through the sample's LAA, in the shape of the
    Number=A/R/G cut (1, 2 or 3 values); null where the allele is not local to the sample."""
    if not isinstance(value, list):
        return value
    j = laa.index(index) + 1 if index in laa else 0  # the allele's local index, 0: not local
    if number == "LA":
        return [value[j - 1] if j and len(value) >= j else None]
    if number == "LR":
        return [value[0], value[j] if j and len(value) > j else None]
    n_local = len(laa)
    if len(value) == (n_local + 1) * (n_local + 2) // 2:  # diploid
        if not j:
            return [value[0], None, None]
        return [value[0], value[_genotype_index(0, j)], value[_genotype_index(j, j)]]
    return value


def _global_gt(lgt: str, laa: list[int]) -> str:
    """An LGT written with the ALT indexes of the record (local index k is LAA's k-th entry)."""
    def allele(part: str) -> str:
        if part == ".":
            return "."
        k = int(part)
        return "0" if k == 0 else str(laa[k - 1]) if k <= len(laa) else "."
    separator = "|" if "|" in lgt else "/"
    return separator.join(allele(part) for part in lgt.replace("|", "/").split("/"))


def _genotype_index(a: int, b: int) -> int:
    """VCF order of the unphased diploid genotype a/b (a <= b)."""
    return b * (b + 1) // 2 + a


# Per sample and record: phased, DP, GQ (-1 missing), native int32 like the numpy matrices.
_TAIL = struct.Struct("=Bii")
_TAIL_DTYPE = np.dtype([("phased", "u1"), ("dp", "=i4"), ("gq", "=i4")])
CACHE_LIMIT = 50_000  # entries per cache below; a full cache starts over
_MAX_SLOTS = 16  # (ALT count, allele) slots per FORMAT string before starting over

# What one sample column becomes for one allele: its JSON object, the re-coded calls as int8
# bytes, its ``_TAIL`` (a (phased, DP, GQ) tuple instead when a value does not fit int32), and
# each FORMAT value's JSON (the compact form's ``format`` arrays).
SampleEntry = tuple[bytes, bytes, "bytes | tuple[bool, int, int]", tuple[bytes, ...]]


@dataclass(slots=True)
class _Slot:
    """Caches of one FORMAT string for one (ALT count, allele index): sample column text ->
    ``SampleEntry``, and per FORMAT key, value text -> its JSON (GT: text -> JSON, codes, phased).
    Only values that typed without error are kept, so a cached text never raises."""

    samples: dict[str, SampleEntry]
    values: list[dict[str, bytes]]
    gts: dict[str, tuple[bytes, bytes, bool]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FormatPlan:
    """How to read one FORMAT string (e.g. ``GT:AD:DP:GQ``); built once per distinct string.

    Sample columns repeat a lot (0/0, ./., common depths and qualities), so each distinct column,
    and each distinct value of a key, is typed and serialized once per slot (``_Slot``)."""

    keys: list[str]
    types: list[FieldType]
    converters: list[Caster]
    has_gt: bool  # the samples have calls: GT, or (4.5) LGT without GT
    dp: int  # column of DP, -1 when absent
    gq: int
    json_keys: list[bytes] = field(default_factory=list)  # '"AD":' per key
    slots: dict[tuple[int, int], _Slot] = field(default_factory=dict)
    calls: int = 0  # column of the calls: GT (0), or LGT when there is no GT
    laa: int = -1  # column of LAA (4.5 local alleles), -1 when absent
    local: frozenset[int] = frozenset()  # columns whose value depends on the sample's LAA

    @classmethod
    def build(cls, text: str, formats: dict[str, FieldType]) -> FormatPlan:
        keys = [] if text == "." else text.split(":")
        types = [formats.get(k, _DEFAULT_TYPE) for k in keys]
        converters = [t.converter() for t in types]
        laa = keys.index("LAA") if "LAA" in keys else -1
        calls = 0 if keys and keys[0] == "GT" else keys.index("LGT") if "LGT" in keys and laa >= 0 else -1
        if calls >= 0:
            converters[calls] = str  # GT (LGT) is rebuilt per allele from the parsed calls
        local = frozenset(k for k, t in enumerate(types) if t.number in _LOCAL_NUMBERS and laa >= 0)
        if laa >= 0 and "LGT" in keys:
            local |= {keys.index("LGT")}
        return cls(keys, types, converters, calls >= 0,
                   keys.index("DP") if "DP" in keys else -1, keys.index("GQ") if "GQ" in keys else -1,
                   [orjson.dumps(k) + b":" for k in keys], calls=calls, laa=laa, local=local)

    def sample_entries(self, texts: list[str], n_alts: int, index: int) -> list[SampleEntry]:
        """One entry per sample column for ALT ``index`` of ``n_alts``. Raises the ValueError or
        IndexError of the first value that cannot be typed (GT of every column, then DP, GQ, then
        the values column by column)."""
        slot = self.slots.get((n_alts, index))
        if slot is None:
            if len(self.slots) >= _MAX_SLOTS:
                self.slots.clear()
            slot = self.slots.setdefault((n_alts, index), _Slot({}, [{} for _ in self.keys]))
        cache = slot.samples
        entries = list(map(cache.get, texts))
        if None in entries:
            missing = [s for s, entry in enumerate(entries) if entry is None]
            if len(cache) + len(missing) > CACHE_LIMIT:
                cache.clear()
            for s, entry in zip(missing, self._type_samples(slot, [texts[s] for s in missing], n_alts, index)):
                entries[s] = cache[texts[s]] = entry
        return entries  # type: ignore[return-value]

    def _type_samples(self, slot: _Slot, texts: list[str], n_alts: int, index: int) -> list[SampleEntry]:
        width = len(self.keys)
        rows = []
        for text in texts:
            values = text.split(":")
            if len(values) != width:  # trailing FORMAT fields may be dropped: missing
                values = (values + ["."] * (width - len(values)))[:width]
            rows.append(values)
        if self.has_gt and self.calls == 0:
            gts = slot.gts
            if len(gts) > CACHE_LIMIT:
                gts.clear()
            calls = [gts.get(values[0]) or _gt_entry(gts, values[0], n_alts, index) for values in rows]
        elif self.has_gt:  # LGT: the same text means other calls under another LAA
            gts = slot.gts
            if len(gts) > CACHE_LIMIT:
                gts.clear()
            calls = [gts.get(values[self.calls] + "\t" + values[self.laa])
                     or _lgt_entry(gts, values[self.calls], values[self.laa], n_alts, index) for values in rows]
        else:
            calls = [(b"", b"", False)] * len(rows)
        dp = _int_column(rows, self.dp)
        gq = _int_column(rows, self.gq)
        caches = slot.values
        entries: list[SampleEntry] = []
        for values, (gt_json, codes, phased), dp_s, gq_s in zip(rows, calls, dp, gq):
            lookup = values
            if self.local:  # a local value's JSON depends on the sample's LAA too
                lookup = [v + "\t" + values[self.laa] if k in self.local else v for k, v in enumerate(values)]
            jsons = list(map(dict.get, caches, lookup))
            if self.has_gt:
                jsons[self.calls] = gt_json
            if None in jsons:
                for k, found in enumerate(jsons):
                    if found is None:
                        jsons[k] = self._value_json(caches[k], k, values[k], n_alts, index, lookup[k],
                                                    values[self.laa] if self.laa >= 0 else ".")
            doc = b"{" + b",".join(map(operator.add, self.json_keys, jsons)) + b"}"
            try:
                tail: bytes | tuple[bool, int, int] = _TAIL.pack(phased, dp_s, gq_s)
            except struct.error:  # beyond int32: kept as numbers, the matrices refuse them as before
                tail = (phased, dp_s, gq_s)
            entries.append((doc, codes, tail, tuple(jsons)))  # type: ignore[arg-type]  # no None left in jsons
        return entries

    def _value_json(self, cache: dict[str, bytes], k: int, text: str, n_alts: int, index: int, cache_key: str,
                    laa: str) -> bytes:
        """JSON of one typed FORMAT value; Number=A/R/G lists are cut to ALT ``index``, and so are
        Number=LA/LR/LG lists through the sample's ``laa``; LAA becomes [1] (local) or null."""
        value = None if text == "" else self.converters[k](text)
        if k in self.local:
            value = _local_value(value, self.types[k].number, index, _local_laa(laa))
        elif k == self.laa:
            value = [1] if index in _local_laa(text) else None
        elif n_alts > 1 and isinstance(value, list):
            number = self.types[k].number
            if number == "G" and len(value) == (n_alts + 1) * (n_alts + 2) // 2:  # diploid
                value = [value[0], value[_genotype_index(0, index)], value[_genotype_index(index, index)]]
            else:
                value = _allele_value(value, number, index)
        if len(cache) >= CACHE_LIMIT:
            cache.clear()
        cache[cache_key] = out = _compact(orjson.dumps(value))
        return out


def _gt_entry(cache: dict[str, tuple[bytes, bytes, bool]], gt: str, n_alts: int,
              index: int) -> tuple[bytes, bytes, bool]:
    """A GT re-coded for ALT ``index``: its JSON string, int8 codes (0 REF, 1 this ALT, 2 another
    ALT, -1 missing) and whether it is phased. The message's GT writes other ALTs as REF."""
    phased = "|" in gt
    calls = [None if p == "." else int(p) for p in gt.replace("|", "/").split("/")]
    if n_alts == 1:
        codes = [-1 if a is None else 1 if a else 0 for a in calls]
    else:
        codes = [-1 if a is None else 0 if a == 0 else 1 if a == index else 2 for a in calls]
    text = ("|" if phased else "/").join("." if c < 0 else "1" if c == 1 else "0" for c in codes)
    cache[gt] = entry = (_compact(orjson.dumps(text)), bytes(c & 0xFF for c in codes), phased)
    return entry


def _lgt_entry(cache: dict[str, tuple[bytes, bytes, bool]], lgt: str, laa: str, n_alts: int,
               index: int) -> tuple[bytes, bytes, bool]:
    """``_gt_entry`` of an LGT, read through the sample's LAA (kept under LGT TAB LAA)."""
    entry = _gt_entry({}, _global_gt(lgt, _local_laa(laa)), n_alts, index)
    cache[lgt + "\t" + laa] = entry
    return entry


def _int_column(sample_values: list[list[str]], col: int) -> list[int]:
    if col < 0:
        return [-1] * len(sample_values)
    out = []
    for values in sample_values:
        text = values[col] if col < len(values) else "."
        out.append(int(text) if text != "." and text else -1)
    return out


def _af_value(af: Any) -> float | None:
    """INFO/AF of one allele: a float, or the first of a list of them; else None."""
    if isinstance(af, list) and af and isinstance(af[0], float):
        return af[0]
    return af if isinstance(af, float) else None


def _ac_value(ac: Any) -> int | None:
    return ac[0] if isinstance(ac, list) and ac and isinstance(ac[0], int) else None


def _an_value(an: Any) -> int | None:
    return an if isinstance(an, int) and an > 0 else None


def _to_batch(ctx: ReadContext, part: _Part) -> AlleleBatch:
    """The chunk's alleles (in chunk order) with their genotype matrices."""
    samples = ctx.source.samples
    gt, tails = part.gt, part.tails
    if gt.shape[2] == 0:  # no calls: two ploidy slots, as a record without GT
        gt = np.full((len(gt), len(samples), 2), -2, dtype=np.int8)
    phased = tails["phased"].astype(bool) if part.with_gt else np.zeros(tails.shape, dtype=bool)
    return AlleleBatch(ctx.dataset, ctx.source.path, ctx.source.digest, samples, part.table, gt, phased,
                       tails["dp"].astype(np.int32), tails["gq"].astype(np.int32))


def _tails(values: list[bytes | tuple[bool, int, int]]) -> np.ndarray:
    """``_TAIL``s as one ``_TAIL_DTYPE`` array (a DP or GQ beyond int32, kept as numbers, makes numpy raise)."""
    try:
        return np.frombuffer(b"".join(values), dtype=_TAIL_DTYPE)  # type: ignore[arg-type]
    except TypeError:
        return np.array([t if isinstance(t, tuple) else _TAIL.unpack(t) for t in values], dtype=_TAIL_DTYPE)


@dataclass(slots=True)
class _Part:
    """The chunk's alleles: table rows, places (``_place``), calls (``ploidy``: the widest
    call, 0 without GT) and ``_TAIL``s; ``refused``: the records (indexes into ``_Plain``)
    holding a value that could not be typed, quarantined (``_typing_error``)."""

    table: pa.Table
    order: np.ndarray  # int64 (alleles,)
    gt: np.ndarray  # int8 (alleles, samples, ploidy)
    tails: np.ndarray  # _TAIL_DTYPE (alleles, samples)
    with_gt: bool = True  # every allele has calls
    refused: list[int] = field(default_factory=list)

    @classmethod
    def empty(cls, m: int) -> _Part:
        return cls(ALLELE_SCHEMA.empty_table(), np.zeros(0, dtype=np.int64), np.zeros((0, m, 0), dtype=np.int8),
                   np.zeros((0, m), dtype=_TAIL_DTYPE))

    @classmethod
    def concat(cls, first: _Part, second: _Part, first_records: int) -> _Part:
        """``first`` then ``second`` (built from the records after ``first_records`` others)."""
        refused = first.refused + [k + first_records for k in second.refused]
        if not len(second.order) or not len(first.order):
            part = second if len(second.order) else first
            return cls(part.table, part.order, part.gt, part.tails, part.with_gt, refused)
        ploidy = max(first.gt.shape[2], second.gt.shape[2])
        gt = np.full((len(first.order) + len(second.order), first.gt.shape[1], ploidy), -2, dtype=np.int8)
        gt[: len(first.order), :, : first.gt.shape[2]] = first.gt
        gt[len(first.order):, :, : second.gt.shape[2]] = second.gt
        return cls(pa.concat_tables([first.table, second.table]), np.concatenate([first.order, second.order]), gt,
                   np.concatenate([first.tails, second.tails]), first.with_gt and second.with_gt, refused)


_T = TypeVar("_T")


def _typed_distinct(values: pa.Array, type_all: Callable[[list[str]], list[_T]],
                    ) -> tuple[np.ndarray, list[_T | None], np.ndarray]:
    """Each distinct value typed once: (each value's distinct number, the typed distinct values,
    which of them could not be typed: None in the list)."""
    encoded = pc.dictionary_encode(values)
    distinct = encoded.dictionary.to_pylist()
    failed = np.zeros(len(distinct), dtype=bool)
    try:
        typed: list[_T | None] = list(type_all(distinct))
    except (ValueError, IndexError):  # which ones: one by one
        typed = []
        for k, text in enumerate(distinct):
            try:
                typed.append(type_all([text])[0])
            except (ValueError, IndexError):
                typed.append(None)
                failed[k] = True
    return encoded.indices.to_numpy(), typed, failed


_PLACEHOLDERS = pa.array(sorted(GVCF_PLACEHOLDERS), pa.string())


def _columnar(ctx: ReadContext, plain: _Plain, compact: bool | None = None,
              format_values: bool | None = None) -> _Part:
    """The alleles of the chunk's valid records, built for the whole chunk by Arrow kernels (the
    alleles of records with a symbolic ALT are normalized and keyed one by one: ``_symbolic``).
    Their messages take the form ``ctx.options`` gives the file, unless ``compact`` and
    ``format_values`` say otherwise."""
    m = len(ctx.source.samples)
    if compact is None:
        compact = ctx.options.compact(m)
    if format_values is None:
        format_values = ctx.options.format_values
    n_rec = len(plain.fields)
    if not n_rec:
        return _Part.empty(m)
    msg = ctx.messages()
    columns = list(zip(*plain.fields))
    chrom, pos_text, vcf_id, ref, alts, qual_text, filters, info = (pa.array(c, pa.string()) for c in columns[:8])
    refused = np.zeros(n_rec, dtype=bool)

    # one allele per ALT that is not a gVCF placeholder: its record and 1-based ALT index
    alt_lists = pc.split_pattern(alts, ",")
    n_alts = pc.list_value_length(alt_lists).to_numpy().astype(np.int64)
    flat = pc.list_flatten(alt_lists)
    rec = np.repeat(np.arange(n_rec), n_alts)
    index = np.arange(len(flat)) - (np.cumsum(n_alts) - n_alts)[rec] + 1
    wanted = np.logical_not(pc.is_in(flat, value_set=_PLACEHOLDERS).to_numpy(zero_copy_only=False))
    rec, index, alt = rec[wanted], index[wanted], flat.filter(pa.array(wanted))

    codes, typed, failed = _typed_distinct(qual_text, lambda texts: [msg.qual(t) for t in texts])
    refused |= failed[codes]
    quals = pa.array([None if t is None else t[0] for t in typed], pa.float64()).take(codes)
    qual_json = pa.array(["null" if t is None else t[1] for t in typed], pa.string()).take(codes)
    info_json, af = _columnar_info(ctx, info, rec, index, n_alts, refused)
    samples_json, gt, tails, with_gt = _columnar_samples(ctx, columns, rec, index, n_alts, refused,
                                                         compact and format_values)
    if refused.any():
        kept = np.logical_not(refused[rec])
        mask = pa.array(kept)
        rec, index, gt, tails = rec[kept], index[kept], gt[kept], tails[kept]
        alt, info_json, af, samples_json = (a.filter(mask) for a in (alt, info_json, af, samples_json))

    pos = pc.cast(pos_text, pa.int64())
    lines = pa.array([line for line, _ in plain.read], pa.int64())
    no_id, no_filter = pc.equal(vcf_id, "."), pc.equal(filters, ".")
    records = record_json(chrom, pos, vcf_id, ref, alts, qual_json, filters)

    n = len(rec)
    by_rec = pa.array(rec)
    normalized = ctx.normalizer.normalize_many(chrom.take(by_rec), pos.take(by_rec), ref.take(by_rec), alt)
    contig_a, npos, nref, nalt, vtype = normalized
    end = pc.subtract(pc.add(npos, pc.utf8_length(nref).cast(pa.int64())), 1)
    key = variant_keys(ctx.assembly, contig_a, npos.cast(pa.string()), nref, nalt)
    odd = np.flatnonzero(np.array(plain.symbolic, dtype=bool)[rec])
    if odd.size:
        contig_a, npos, nref, nalt, vtype, end, key = _symbolic(ctx, plain, rec[odd], index[odd], alt.take(odd), odd,
                                                                (*normalized, end, key))
    mids = list(map(msg.message_id, key.to_pylist()))
    index_a = pa.array(index, pa.int16())
    line_a = lines.take(by_rec)
    if compact:
        samples_json = compact_genotypes(msg, gt, tails["phased"].astype(bool),
                                         samples_json if format_values else None)
    value = message_values(msg, hex_ids(mids), line_a, key, contig_a, npos, nref, nalt, end, vtype,
                           records.take(by_rec), index_a, info_json, samples_json, compact)
    filter_lists = pc.fill_null(pc.split_pattern(pc.if_else(no_filter, pa.scalar(None, pa.string()), filters), ";"),
                                pa.scalar([], pa.list_(pa.string())))
    table = {
        "message_id": pa.array(mids, pa.binary(16)), "variant_key": key, "assembly": pa.repeat(ctx.assembly, n),
        "contig": contig_a, "pos": npos, "ref": nref, "alt": nalt, "end": end, "variant_type": vtype,
        "allele_index": index_a, "n_alts": pa.array(n_alts, pa.int16()).take(by_rec),
        "vcf_id": pc.if_else(no_id, pa.scalar(None, pa.string()), vcf_id).take(by_rec),
        "qual": quals.take(by_rec), "filters": filter_lists.take(by_rec), "info": info_json, "af": af,
        "line": line_a, "value": value,
    }
    order = _place(np.array(plain.order, dtype=np.int64)[rec], index)
    return _Part(pa.table([table[name] for name in ALLELE_SCHEMA.names], schema=ALLELE_SCHEMA), order, gt, tails,
                 with_gt, np.flatnonzero(refused).tolist())


def _symbolic(ctx: ReadContext, plain: _Plain, rec: np.ndarray, index: np.ndarray, alts: pa.Array, at: np.ndarray,
              columns: tuple[pa.Array, ...]) -> tuple[pa.Array, ...]:
    """``columns`` (contig, pos, ref, alt, type, end, key) with the alleles ``at`` of records that
    have a symbolic ALT (``rec``, ``index``, ``alts``: theirs) normalized and keyed one by one: a
    symbolic allele ends at INFO/END when given, and its key adds END and SVLEN."""
    values = []
    for r, i, written in zip(rec.tolist(), index.tolist(), alts.to_pylist()):
        fields = plain.fields[r]
        info = _parse_info(fields[7], ctx.types.info_converters, ctx._info_entries)
        contig, pos, ref, alt = ctx.normalizer.normalize(fields[0], int(fields[1]), fields[3], written)
        vtype = variant_type(ref, alt)
        symbolic = vtype == SYMBOLIC
        end = info["END"] if symbolic and isinstance(info.get("END"), int) else pos + len(ref) - 1
        svlen = None
        if symbolic and "SVLEN" in info:
            raw_svlen = _allele_value(info["SVLEN"], "A", i)
            svlen = ",".join(str(v) for v in raw_svlen) if isinstance(raw_svlen, list) else str(raw_svlen)
        key = variant_key(ctx.assembly, contig, pos, ref, alt, end if symbolic else None, svlen)
        if symbolic and fields[4].split(",").count(written) > 1:
            key += _repeated_allele_key(fields[7], i)
        values.append((contig, pos, ref, alt, vtype, end, key))
    mask = np.zeros(len(columns[0]), dtype=bool)
    mask[at] = True
    return tuple(pc.replace_with_mask(column, pa.array(mask), pa.array(new, column.type))
                 for column, new in zip(columns, zip(*values)))


def _repeated_allele_key(info_text: str, index: int) -> str:
    """What tells apart a symbolic allele its record lists more than once (4.4 copy-number
    alleles, ``<CNV>,<CNV>`` with CN=1,2): its INFO CN as written, else its ALT index. Earlier
    versions refuse a repeated ALT, so no key published before changes."""
    for entry in info_text.split(";"):
        if entry.startswith("CN="):
            values = entry[3:].split(",")
            if len(values) >= index and values[index - 1] not in (".", ""):
                return f":CN={values[index - 1]}"
    return f":ALT={index}"


def _columnar_info(ctx: ReadContext, info: pa.Array, rec: np.ndarray, index: np.ndarray, n_alts: np.ndarray,
                   refused: np.ndarray) -> tuple[pa.Array, pa.Array]:
    """Each allele's INFO JSON and AF (``_allele_frequency``). Each distinct entry is typed once,
    and once more per ALT index for records with several ALTs (Number=A/R values cut)."""
    converters, types = ctx.types.info_converters, ctx.types.info
    empty = pc.or_(pc.equal(info, "."), pc.equal(info, ""))
    lists = pc.split_pattern(pc.if_else(empty, pa.scalar(None, pa.string()), info), ";")
    counts = pc.fill_null(pc.list_value_length(lists), 0).to_numpy().astype(np.int64)
    codes, typed, failed = _typed_distinct(pc.list_flatten(lists),
                                           lambda entries: [_type_entry(e, converters) for e in entries])
    refused[np.repeat(np.arange(len(counts)), counts)[failed[codes]]] = True
    # each allele's entries: those of its record
    a_counts = counts[rec]
    a_offsets = np.concatenate([[0], np.cumsum(a_counts)])
    slots = np.repeat((np.cumsum(counts) - counts)[rec] - a_offsets[:-1], a_counts) + np.arange(a_offsets[-1])
    piece = codes[slots].astype(np.int64)
    pieces: list[tuple[str, Any] | None] = typed
    several = np.repeat(n_alts[rec] > 1, a_counts)
    if several.any():
        pairs, inverse = np.unique(piece[several] << 16 | np.repeat(index, a_counts)[several], return_inverse=True)
        pieces = typed + [_cut_entry(typed[p >> 16], p & 0xFFFF, types) for p in pairs.tolist()]
        piece[several] = len(typed) + inverse
    texts = pa.array(["" if p is None else orjson.dumps(p[0]).decode() + ":" + orjson.dumps(p[1]).decode()
                      for p in pieces], pa.string()).take(piece)
    info_json = json_objects(pa.array(a_offsets, pa.int32()), texts)
    return info_json, _frequencies(pieces, piece, a_counts)


def _cut_entry(entry: tuple[str, Any] | None, index: int, types: dict[str, FieldType]) -> tuple[str, Any] | None:
    """A typed INFO entry cut to ALT ``index`` (Number=A/R values); None stays None (not typed)."""
    if entry is None:
        return None
    key, value = entry
    return key, _allele_value(value, types.get(key, _DEFAULT_TYPE).number, index)


def _frequencies(pieces: list[tuple[str, Any] | None], piece: np.ndarray, a_counts: np.ndarray) -> pa.Array:
    """``_allele_frequency`` of each allele from the typed entries (``pieces``) it has (``piece``)."""
    n = len(a_counts)
    allele = np.repeat(np.arange(n), a_counts)
    found = []
    for name, of in (("AF", _af_value), ("AC", _ac_value), ("AN", _an_value)):
        values, has = np.zeros(len(pieces)), np.zeros(len(pieces), dtype=bool)
        for k, p in enumerate(pieces):
            if p is not None and p[0] == name and (v := of(p[1])) is not None:
                values[k], has[k] = v, True
        hit = has[piece]
        a_values, a_has = np.zeros(n), np.zeros(n, dtype=bool)
        a_values[allele[hit]], a_has[allele[hit]] = values[piece[hit]], True
        found.append((a_values, a_has))
    (af, has_af), (ac, has_ac), (an, has_an) = found
    with np.errstate(divide="ignore", invalid="ignore"):
        frequency = np.where(has_af, af, ac / an)
    return pa.array(frequency, pa.float64(), mask=~(has_af | (has_ac & has_an)))


def _columnar_samples(ctx: ReadContext, columns: list[tuple[str, ...]], rec: np.ndarray, index: np.ndarray,
                      n_alts: np.ndarray, refused: np.ndarray, compact: bool = False,
                      ) -> tuple[pa.Array, np.ndarray, np.ndarray, bool]:
    """Each allele's samples JSON (with ``compact``: its ``format`` object of arrays), calls and
    ``_TAIL``s, and whether every allele has calls. Alleles are grouped by FORMAT string, ALT
    count and ALT index (what a sample column means depends on), and each distinct sample column
    of a group is typed once (``FormatPlan``)."""
    n, m = len(rec), len(ctx.source.samples)
    if len(columns) <= 8:  # no FORMAT column, no samples
        return pa.repeat(pa.scalar("{}"), n), np.zeros((n, m, 0), dtype=np.int8), np.zeros((n, m), _TAIL_DTYPE), False
    n_rec = len(columns[0])
    formats = pc.dictionary_encode(pa.array(columns[8], pa.string()))
    format_texts = formats.dictionary.to_pylist()
    cells = pa.array(list(chain.from_iterable(columns[9:])), pa.string())  # sample j of record r at j * n_rec + r
    msg = ctx.messages()
    names = pa.array(msg.sample_keys, pa.string())  # '"NA12878":' per sample column written
    written = np.array(msg.sample_columns, dtype=np.int64)
    k = len(written)
    group_keys, group = np.unique(formats.indices.to_numpy().astype(np.int64)[rec] << 32 | n_alts[rec] << 16 | index,
                                  return_inverse=True)
    by_group = np.argsort(group, kind="stable")
    ends = np.cumsum(np.bincount(group, minlength=len(group_keys)))
    docs, parts, with_gt = [], [], True
    for key, start, end in zip(group_keys.tolist(), (ends - np.bincount(group)).tolist(), ends.tolist()):
        members = by_group[start:end]
        plan = ctx.format_plan(format_texts[key >> 32])
        n_a, allele = key >> 16 & 0xFFFF, key & 0xFFFF
        picked = (np.arange(m) * n_rec + rec[members][:, None]).ravel()  # (alleles, samples)
        codes, entries, failed = _typed_distinct(cells.take(pa.array(picked)),
                                                 partial(plan.sample_entries, n_alts=n_a, index=allele))
        refused[rec[members[failed[codes].reshape(-1, m).any(axis=1)]]] = True
        untyped = (b"{}", b"", _TAIL.pack(0, -1, -1), (b"null",) * len(plan.keys))
        typed = [untyped if e is None else e for e in entries]
        if compact:
            docs.append(_format_arrays(plan, typed, codes, len(members), m))
        else:
            doc = pa.array([e[0] for e in typed], pa.binary()).cast(pa.string()).take(codes)
            if k != m:  # repeated names: each once
                doc = doc.take(pa.array((np.arange(len(members))[:, None] * m + written).ravel()))
            docs.append(json_objects(pa.array(np.arange(0, len(members) * k + 1, k), pa.int32()),
                                     join(names.take(pa.array(np.tile(np.arange(k), len(members)))), doc)))
        calls = _calls([e[1] for e in typed])
        parts.append((members, calls[codes].reshape(len(members), m, calls.shape[1]),
                      _tails([e[2] for e in typed])[codes].reshape(len(members), m)))
        with_gt = with_gt and plan.has_gt
    ploidy = max(calls.shape[2] for _, calls, _ in parts)
    gt = np.full((n, m, ploidy), -2, dtype=np.int8)
    tails = np.zeros((n, m), dtype=_TAIL_DTYPE)
    for members, calls, tail in parts:
        gt[members, :, : calls.shape[2]] = calls
        tails[members] = tail
    in_order = np.empty(n, dtype=np.int64)
    in_order[by_group] = np.arange(n)
    return pa.concat_arrays(docs).take(pa.array(in_order)), gt, tails, with_gt


def _format_arrays(plan: FormatPlan, typed: list[SampleEntry], codes: np.ndarray, alleles: int, m: int) -> pa.Array:
    """The compact form's ``format`` object of each of ``alleles`` alleles: per FORMAT key but the
    calls' (GT, or LGT), the values of every sample column in order, as typed for the full form."""
    keys = [k for k in range(len(plan.keys)) if not (plan.has_gt and k == plan.calls)]
    if not keys:
        return pa.repeat(pa.scalar("{}"), alleles)
    parts: list[Any] = []
    for j, k in enumerate(keys):
        values = pa.array([e[3][k] for e in typed], pa.binary()).cast(pa.string()).take(codes)
        parts += [("," if j else "{") + plan.json_keys[k].decode(), json_arrays(values, m, alleles)]
    return join(*parts, "}")


def _calls(codes: list[bytes], ploidy: int | None = None) -> np.ndarray:
    """(values, ploidy) int8 of re-coded calls (``ploidy``: the widest unless given); -2 pads
    shorter calls, and calls of a record without GT."""
    width = max(map(len, codes), default=0) if ploidy is None else ploidy
    if all(len(call) == width for call in codes):
        return np.frombuffer(b"".join(codes), dtype=np.int8).reshape(len(codes), width)
    matrix = np.full((len(codes), width), -2, dtype=np.int8)
    for k, call in enumerate(codes):
        matrix[k, : len(call)] = np.frombuffer(call, dtype=np.int8)
    return matrix
