"""Reading one chunk into an ``AlleleBatch``: validate, split multi-allelics, normalize, key.

Per record: the validator checks the raw line; a record that breaks a rule is quarantined
(kept with its line, rule and message) and the rest of the chunk goes on. Each ALT becomes one
allele row (gVCF placeholders ``<NON_REF>``/``<*>`` are never published; a record with nothing
else is a reference block). INFO and FORMAT values are typed by the header (pysam parses it);
Number=A/R values are cut to the allele and genotypes re-coded for it, as ``bcftools norm -m-``
does (other ALTs become REF in the message's GT; the genotype matrix marks them 2). What needs
the typed values is done per record; keys, SNV normalization, table columns and the message
JSON are then built for the whole chunk by Arrow kernels (see ``_Columns``).
"""

from __future__ import annotations

import operator
import re
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from itertools import chain
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pysam

from tasks.keys import message_ids, variant_key, variant_keys
from tasks.model import ALLELE_SCHEMA, AlleleBatch, Chunk, Quarantined
from tasks.normalize import Normalizer, is_symbolic, variant_type
from tasks.validation import HeaderCheck, check_header
from tasks.vcfio import SourceFile, iter_chunk_lines

MESSAGE_SCHEMA = "vcfstream.variant.v1"
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
        for line in source.header_lines:
            if line.startswith("##"):
                try:
                    header.add_line(line)
                except ValueError:
                    continue  # the validator reports malformed meta lines
        return cls(_field_types(header.info), _field_types(header.formats))


def _field_types(defs: Any) -> dict[str, FieldType]:
    result = {}
    for key, meta in defs.items():
        number = str(meta.number)
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
    _format_plans: dict[str, FormatPlan] = field(default_factory=dict)
    _messages: _Messages | None = None
    _info_entries: dict[str, tuple[str, Any]] = field(default_factory=dict)  # see _parse_info

    def format_plan(self, text: str) -> FormatPlan:
        plan = self._format_plans.get(text)
        if plan is None:
            plan = self._format_plans[text] = FormatPlan.build(text, self.types.formats)
        return plan

    def messages(self) -> _Messages:
        if self._messages is None:
            self._messages = _Messages.build(self)
        return self._messages

    @classmethod
    def open(cls, dataset: str, assembly: str, source: SourceFile, reference: str | None = None) -> ReadContext:
        return cls(dataset, assembly, source, Normalizer(assembly, reference),
                   check_header(source.path, source.header_lines), HeaderTypes.from_source(source))


_CONTEXTS_KEPT = 4  # files whose contexts stay warm in a process
_contexts: OrderedDict[tuple[object, ...], ReadContext] = OrderedDict()
_contexts_lock = threading.Lock()


def kept_context(dataset: str, assembly: str, source: SourceFile, reference: str | None = None) -> ReadContext:
    """``ReadContext.open``, kept for the last few files: opening one checks and types the whole
    header (150 ms for a GRCh38 header of 3,400 contigs), and its FORMAT plans and value caches
    stay warm across chunks. Its caches are not guarded for concurrent reads: share a kept
    context only within a reader process, or where it does not read (the flow's process when
    reader processes parse)."""
    key = (dataset, assembly, source.path, source.digest, reference)
    with _contexts_lock:
        ctx = _contexts.get(key)
        if ctx is not None:
            _contexts.move_to_end(key)
            return ctx
    ctx = ReadContext.open(dataset, assembly, source, reference)
    with _contexts_lock:
        _contexts[key] = ctx
        while len(_contexts) > _CONTEXTS_KEPT:
            _contexts.popitem(last=False)
    return ctx


# What orjson escapes in a string (TAB separates columns, so a field never holds one).
_JSON_ESCAPED = re.compile(r'[\x00-\x08\x0a-\x1f"\\]')


@dataclass(slots=True)
class _Messages:
    """Per-file parts of the message JSON and of the message id.

    The columnar way writes messages from these text pieces (the same bytes orjson writes for
    the message dict, see ``_row``)."""

    message_id: Callable[[str], bytes]
    head: str  # up to the message id
    source: str  # from after the message id to the source line number
    assembly: str  # JSON
    raw_keys: bool  # the assembly needs no escaping, so keys can be written as text pieces
    sample_keys: list[bytes]  # '"NA12878":' per sample
    unique_samples: bool
    quals: dict[str, tuple[float | None, str]] = field(default_factory=dict)  # QUAL text -> value, JSON

    @classmethod
    def build(cls, ctx: ReadContext) -> _Messages:
        names = ctx.source.samples
        source = orjson.dumps({"path": ctx.source.path, "sha256": ctx.source.digest}).decode()[:-1]
        return cls(message_ids(ctx.dataset, ctx.source.digest),
                   '{"schema":' + orjson.dumps(MESSAGE_SCHEMA).decode() + ',"message_id":"',
                   '","dataset":' + orjson.dumps(ctx.dataset).decode() + ',"source":' + source + ',"line":',
                   orjson.dumps(ctx.assembly).decode(), _JSON_ESCAPED.search(ctx.assembly) is None,
                   [orjson.dumps(name) + b":" for name in names], len(set(names)) == len(names))

    def qual(self, text: str) -> tuple[float | None, str]:
        known = self.quals.get(text)
        if known is None:
            value = None if text == "." else float(text)
            if len(self.quals) >= CACHE_LIMIT:
                self.quals.clear()
            known = self.quals[text] = (value, orjson.dumps(value).decode())
        return known


def _compact(data: bytes) -> bytes:
    """A copy of orjson output that is kept (its own bytes keep a 4 KiB allocation)."""
    return bytes(memoryview(data))


@dataclass(slots=True)
class ChunkRead:
    batch: AlleleBatch
    quarantined: list[Quarantined]
    records: int = 0
    reference_blocks: int = 0


# The table columns of one allele row, in ``_Columns.rows`` order (assembly is added at the end).
_ROW_FIELDS = ("message_id", "variant_key", "contig", "pos", "ref", "alt", "end", "variant_type", "allele_index",
               "vcf_id", "qual", "filters", "info", "af", "line", "value", "n_alts")

_ROW_TYPE = pa.struct([ALLELE_SCHEMA.field(name) for name in _ROW_FIELDS])


@dataclass(slots=True)
class _Columns:
    """The alleles of one chunk, appended while reading; turned into Arrow/numpy once.

    Most records go the columnar way: the record keeps its split columns (``recs``) and each of
    its alleles only what needs the parsed INFO and FORMAT (ALT, INFO and samples JSON, AF); keys,
    SNV normalization, table columns and the message JSON are then built for the whole chunk by
    Arrow kernels (``_columnar_table``). A record whose JSON needs escaping, whose sample names
    repeat or that has a symbolic allele goes row by row instead (``rows``, ``_ROW_FIELDS``
    order). ``*_order`` is each allele's place in the chunk. Per sample and for every allele in
    chunk order, ``gt`` holds the re-coded calls as int8 bytes and ``tails`` the (phased, DP,
    GQ) of ``_TAIL``.
    """

    recs: list[tuple[str, str, str, str, str]] = field(default_factory=list)  # _RECORD_COLUMNS
    pos: list[int] = field(default_factory=list)
    lines: list[int | None] = field(default_factory=list)
    quals: list[float | None] = field(default_factory=list)
    qual_json: list[str] = field(default_factory=list)
    rec: list[int] = field(default_factory=list)  # per columnar allele: its record in ``recs``
    index: list[int] = field(default_factory=list)
    alt: list[str] = field(default_factory=list)
    info_json: list[str] = field(default_factory=list)
    af: list[float | None] = field(default_factory=list)
    samples_json: list[bytes] = field(default_factory=list)
    columnar_order: list[int] = field(default_factory=list)
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    row_order: list[int] = field(default_factory=list)
    gt: list[tuple[bytes, ...]] = field(default_factory=list)
    tails: list[tuple[bytes | tuple[bool, int, int], ...]] = field(default_factory=list)


_RECORD_COLUMNS = operator.itemgetter(0, 2, 3, 4, 6)  # CHROM, ID, REF, ALT, FILTER


def _plain_alts(text: str) -> bool:
    """True when every ALT in the column is made of bases (none is symbolic); a quick test."""
    return bool(text) and not text.strip("ACGTNacgtn,") and text[0] != "," and text[-1] != "," and ",," not in text


def read_chunk(ctx: ReadContext, chunk: Chunk,
               lines: Iterable[tuple[int | None, bytes]] | None = None) -> ChunkRead:
    """Read, validate, split and key every record of one chunk (``lines``: its raw lines, if read already)."""
    source = ctx.source
    checker = ctx.header.record_checker()
    if chunk.lead_in or chunk.lead_in_contig or chunk.finished_contigs:
        checker.resume(chunk.lead_in, chunk.lead_in_contig, chunk.finished_contigs)
    samples = source.samples
    cols = _Columns()
    quarantined: list[Quarantined] = []
    records = reference_blocks = 0
    for line_no, raw in iter_chunk_lines(source, chunk) if lines is None else lines:
        records += 1
        try:
            text = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as exc:
            quarantined.append(_quarantine(source.path, line_no, "record.encoding",
                                           f"bytes that are not UTF-8 at column {exc.start + 1}", raw))
            continue
        fields = text.split("\t")
        violation = checker.check(fields, line_no)
        if violation is not None:
            quarantined.append(_quarantine(source.path, line_no, violation.rule, violation.message, raw))
            continue
        try:
            pos = int(fields[1])
            mismatch = ctx.normalizer.check_ref(fields[0], pos, fields[3])
            if mismatch is not None:
                quarantined.append(_quarantine(source.path, line_no, "ref.mismatch", mismatch, raw))
                continue
            if not _append_record(ctx, text, fields, pos, line_no, cols):
                reference_blocks += 1
        except (ValueError, IndexError) as exc:  # a value the validator let through but cannot be typed
            quarantined.append(_quarantine(source.path, line_no, "record.parse", f"unparseable value: {exc}", raw))
    return ChunkRead(_to_batch(ctx, cols, samples), quarantined, records, reference_blocks)


def _quarantine(path: str, line: int | None, rule: str, message: str, raw: bytes) -> Quarantined:
    where = f"line {line}" if line else "record " + ":".join(raw[:200].decode("latin-1").split("\t")[:2])
    text = raw[:RAW_LINE_LIMIT].decode("utf-8", errors="replace")
    return Quarantined(path, line, rule, f"{path}: {where}: [{rule}] {message}", text)


_DEFAULT_CONVERTER = _DEFAULT_TYPE.converter()


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
                key, eq, value = entries[i].partition("=")
                pairs[i] = pair = (key, converters.get(key, _DEFAULT_CONVERTER)(value) if eq else True)
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


def _genotype_index(a: int, b: int) -> int:
    """VCF order of the unphased diploid genotype a/b (a <= b)."""
    return b * (b + 1) // 2 + a


# Per sample and record: phased, DP, GQ (-1 missing), native int32 like the numpy matrices.
_TAIL = struct.Struct("=Bii")
_TAIL_DTYPE = np.dtype([("phased", "u1"), ("dp", "=i4"), ("gq", "=i4")])
CACHE_LIMIT = 50_000  # entries per cache below; a full cache starts over
_MAX_SLOTS = 16  # (ALT count, allele) slots per FORMAT string before starting over

# What one sample column becomes for one allele: its JSON object, the re-coded calls as int8
# bytes, and its ``_TAIL`` (a (phased, DP, GQ) tuple instead when a value does not fit int32).
SampleEntry = tuple[bytes, bytes, "bytes | tuple[bool, int, int]"]


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
    has_gt: bool
    dp: int  # column of DP, -1 when absent
    gq: int
    json_keys: list[bytes] = field(default_factory=list)  # '"AD":' per key
    slots: dict[tuple[int, int], _Slot] = field(default_factory=dict)

    @classmethod
    def build(cls, text: str, formats: dict[str, FieldType]) -> FormatPlan:
        keys = [] if text == "." else text.split(":")
        types = [formats.get(k, _DEFAULT_TYPE) for k in keys]
        converters = [t.converter() for t in types]
        if keys and keys[0] == "GT":
            converters[0] = str  # GT is rebuilt per allele from the parsed calls
        return cls(keys, types, converters, bool(keys) and keys[0] == "GT",
                   keys.index("DP") if "DP" in keys else -1, keys.index("GQ") if "GQ" in keys else -1,
                   [orjson.dumps(k) + b":" for k in keys])

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
        if self.has_gt:
            gts = slot.gts
            if len(gts) > CACHE_LIMIT:
                gts.clear()
            calls = [gts.get(values[0]) or _gt_entry(gts, values[0], n_alts, index) for values in rows]
        else:
            calls = [(b"", b"", False)] * len(rows)
        dp = _int_column(rows, self.dp)
        gq = _int_column(rows, self.gq)
        caches = slot.values
        entries = []
        for values, (gt_json, codes, phased), dp_s, gq_s in zip(rows, calls, dp, gq):
            jsons = list(map(dict.get, caches, values))
            if self.has_gt:
                jsons[0] = gt_json
            if None in jsons:
                for k, found in enumerate(jsons):
                    if found is None:
                        jsons[k] = self._value_json(caches[k], k, values[k], n_alts, index)
            doc = b"{" + b",".join(map(operator.add, self.json_keys, jsons)) + b"}"  # type: ignore[arg-type]
            try:
                tail: bytes | tuple[bool, int, int] = _TAIL.pack(phased, dp_s, gq_s)
            except struct.error:  # beyond int32: kept as numbers, the matrices refuse them as before
                tail = (phased, dp_s, gq_s)
            entries.append((doc, codes, tail))
        return entries

    def _value_json(self, cache: dict[str, bytes], k: int, text: str, n_alts: int, index: int) -> bytes:
        """JSON of one typed FORMAT value; Number=A/R/G lists are cut to ALT ``index``."""
        value = None if text == "" else self.converters[k](text)
        if n_alts > 1 and isinstance(value, list):
            number = self.types[k].number
            if number == "G" and len(value) == (n_alts + 1) * (n_alts + 2) // 2:  # diploid
                value = [value[0], value[_genotype_index(0, index)], value[_genotype_index(index, index)]]
            else:
                value = _allele_value(value, number, index)
        if len(cache) >= CACHE_LIMIT:
            cache.clear()
        cache[text] = out = _compact(orjson.dumps(value))
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


def _int_column(sample_values: list[list[str]], col: int) -> list[int]:
    if col < 0:
        return [-1] * len(sample_values)
    out = []
    for values in sample_values:
        text = values[col] if col < len(values) else "."
        out.append(int(text) if text != "." and text else -1)
    return out


def _append_record(ctx: ReadContext, text: str, fields: list[str], pos: int, line_no: int | None,
                   cols: _Columns) -> bool:
    """Append the publishable ALTs of one record; False when the record is a reference block.
    Everything that can raise (typing QUAL, INFO, the sample columns) runs before anything is
    appended, so a record that fails leaves nothing behind."""
    if "," in fields[4]:
        alts = fields[4].split(",")
        wanted = [(i, alt) for i, alt in enumerate(alts, 1) if alt not in GVCF_PLACEHOLDERS]
    else:
        alts = [fields[4]]
        wanted = [] if fields[4] in GVCF_PLACEHOLDERS else [(1, fields[4])]
    if not wanted:
        return False
    msg = ctx.messages()
    qual, qual_json = msg.qual(fields[5])
    info = _parse_info(fields[7], ctx.types.info_converters, ctx._info_entries)
    n_alts = len(alts)
    plan = ctx.format_plan(fields[8]) if len(fields) > 8 else None
    texts = fields[9:]
    entries = [plan.sample_entries(texts, n_alts, index) for index, _ in wanted] if plan is not None else None
    order = len(cols.gt)
    # columns 1-7 go into the message as they are when nothing in them needs escaping
    if not (msg.raw_keys and msg.unique_samples
            and _JSON_ESCAPED.search(text, 0, sum(map(len, fields[:7])) + 6) is None
            and (_plain_alts(fields[4]) or not any(is_symbolic(a) for _, a in wanted))):
        rows = [_row(ctx, msg, fields, pos, line_no, alts, qual, info, index, alt, None if entries is None else entries[k])
                for k, (index, alt) in enumerate(wanted)]
        for row, codes, tails in rows:
            cols.rows.append(row)
            cols.gt.append(codes)
            cols.tails.append(tails)
        cols.row_order.extend(range(order, order + len(rows)))
        return True
    record = len(cols.recs)
    cols.recs.append(_RECORD_COLUMNS(fields))
    cols.pos.append(pos)
    cols.lines.append(line_no)
    cols.quals.append(qual)
    cols.qual_json.append(qual_json)
    for k, (index, alt) in enumerate(wanted):
        allele_info = info if n_alts == 1 else _allele_info(ctx, info, index)
        docs, codes, tails = zip(*entries[k]) if entries else ((), (), ())
        cols.rec.append(record)
        cols.index.append(index)
        cols.alt.append(alt)
        cols.info_json.append(orjson.dumps(allele_info).decode())  # a str: orjson's bytes hold 4 KiB
        cols.af.append(_allele_frequency(allele_info))
        # the columnar way has unique sample names (see _samples_json)
        cols.samples_json.append(b"{" + b",".join(map(operator.add, msg.sample_keys, docs)) + b"}"
                                 if entries is not None else b"{}")
        cols.columnar_order.append(order + k)
        cols.gt.append(codes)
        cols.tails.append(tails)
    return True


def _allele_info(ctx: ReadContext, info: dict[str, Any], index: int) -> dict[str, Any]:
    """INFO of a multi-allelic record for ALT ``index``: Number=A/R values cut to it."""
    types = ctx.types.info
    return {key: _allele_value(v, types.get(key, _DEFAULT_TYPE).number, index) for key, v in info.items()}


def _samples_json(ctx: ReadContext, msg: _Messages, has_format: bool, docs: tuple[bytes, ...]) -> bytes:
    if not has_format:
        return b"{}"
    if msg.unique_samples:
        return b"{" + b",".join(map(operator.add, msg.sample_keys, docs)) + b"}"
    # repeated names: the last column wins, as in a dict
    return _compact(orjson.dumps(dict(zip(ctx.source.samples, map(orjson.Fragment, docs)))))


def _row(ctx: ReadContext, msg: _Messages, fields: list[str], pos: int, line_no: int | None, alts: list[str],
         qual: float | None, info: dict[str, Any], index: int, alt: str, entries: list[SampleEntry] | None,
         ) -> tuple[tuple[Any, ...], tuple[bytes, ...], tuple[bytes | tuple[bool, int, int], ...]]:
    """One allele's table row (``_ROW_FIELDS``, its message written by orjson), calls and tails:
    the way of records that need escaping, repeat a sample name or have a symbolic ALT."""
    chrom, ref = fields[0], fields[3]
    allele_info = info if len(alts) == 1 else _allele_info(ctx, info, index)
    info_json = orjson.dumps(allele_info).decode()
    docs, codes, tails = zip(*entries) if entries else ((), (), ())
    samples_json = _samples_json(ctx, msg, entries is not None, docs)
    filters = [] if fields[6] == "." else fields[6].split(";")
    vcf_id = None if fields[2] == "." else fields[2]
    ncontig, npos, nref, nalt = ctx.normalizer.normalize(chrom, pos, ref, alt)
    vtype = variant_type(nref, nalt)
    symbolic = vtype == "symbolic"
    end = info["END"] if symbolic and isinstance(info.get("END"), int) else npos + len(nref) - 1
    svlen = None
    if symbolic and "SVLEN" in info:
        raw_svlen = _allele_value(info["SVLEN"], "A", index)
        svlen = ",".join(str(v) for v in raw_svlen) if isinstance(raw_svlen, list) else str(raw_svlen)
    key = variant_key(ctx.assembly, ncontig, npos, nref, nalt, end if symbolic else None, svlen)
    mid = msg.message_id(key)
    value = _compact(orjson.dumps({
        "schema": MESSAGE_SCHEMA,
        "message_id": mid.hex(),
        "dataset": ctx.dataset,
        "source": {"path": ctx.source.path, "sha256": ctx.source.digest, "line": line_no},
        "variant": {"key": key, "assembly": ctx.assembly, "contig": ncontig, "pos": npos,
                    "ref": nref, "alt": nalt, "end": end, "type": vtype},
        "record": {"chrom": chrom, "pos": pos, "id": vcf_id, "ref": ref, "alts": alts, "qual": qual,
                   "filters": filters},
        "allele_index": index,
        "info": orjson.Fragment(info_json),
        "samples": orjson.Fragment(samples_json),
    }))
    row = (mid, key, ncontig, npos, nref, nalt, end, vtype, index, vcf_id, qual, filters,
           info_json, _allele_frequency(allele_info), line_no, value, len(alts))
    return row, codes, tails


def _allele_frequency(info: dict[str, Any]) -> float | None:
    af = info.get("AF")
    if isinstance(af, list) and af and isinstance(af[0], float):
        return af[0]
    if isinstance(af, float):
        return af
    ac, an = info.get("AC"), info.get("AN")
    if isinstance(ac, list) and ac and isinstance(ac[0], int) and isinstance(an, int) and an > 0:
        return ac[0] / an
    return None


def _to_batch(ctx: ReadContext, cols: _Columns, samples: list[str]) -> AlleleBatch:
    n, m = len(cols.gt), len(samples)
    table = _columnar_table(ctx, cols)
    if cols.rows:
        rows = pa.RecordBatch.from_struct_array(pa.array(cols.rows, type=_ROW_TYPE))  # transposed by Arrow
        by_row = pa.Table.from_batches([rows]).append_column("assembly", pa.repeat(ctx.assembly, len(cols.rows)))
        table = pa.concat_tables([table, by_row.select(ALLELE_SCHEMA.names)])
        if cols.rec:  # both ways: back to chunk order
            table = table.take(np.argsort(np.array(cols.columnar_order + cols.row_order), kind="stable"))
    gt = _genotype_matrix(cols.gt, n, m)
    phased = np.zeros((n, m), dtype=bool)
    dp = np.full((n, m), -1, dtype=np.int32)
    gq = np.full((n, m), -1, dtype=np.int32)
    if n and m:
        with_gt = all(row and row[0] for row in cols.gt)  # phased stays all False unless every row has calls
        try:
            packed = b"".join(chain.from_iterable(cols.tails))  # type: ignore[arg-type]
        except TypeError:  # a DP/GQ beyond int32: as numbers, which the int32 matrices refuse
            packed = b""
        if len(packed) == n * m * _TAIL.size:
            tails = np.frombuffer(packed, dtype=_TAIL_DTYPE).reshape(n, m)
            if with_gt:
                phased[:] = tails["phased"]
            dp[:] = tails["dp"]
            gq[:] = tails["gq"]
        else:
            rows = [[t if isinstance(t, tuple) else _TAIL.unpack(t) for t in row] for row in cols.tails]
            if with_gt:
                phased[:] = [[bool(t[0]) for t in row] for row in rows]
            dp[:] = [[t[1] for t in row] for row in rows]
            gq[:] = [[t[2] for t in row] for row in rows]
    return AlleleBatch(ctx.dataset, ctx.source.path, ctx.source.digest, samples, table, gt, phased, dp, gq)


def _join(*parts: Any) -> pa.Array:
    """Element-wise concatenation of string arrays and scalars (Arrow's kernel, no Python per row)."""
    return pc.binary_join_element_wise(*parts, "")


_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _hex(ids: list[bytes]) -> pa.Array:
    """The lower-case hex text of 16-byte ids, as one string array (numpy instead of a ``hex()`` per id)."""
    raw = np.frombuffer(b"".join(ids), dtype=np.uint8).reshape(-1, 16)
    text = np.empty((len(ids), 32), dtype=np.uint8)
    text[:, 0::2] = _HEX_DIGITS[raw >> 4]
    text[:, 1::2] = _HEX_DIGITS[raw & 15]
    offsets = np.arange(0, 32 * len(ids) + 1, 32, dtype=np.int32)
    return pa.Array.from_buffers(pa.string(), len(ids), [None, pa.py_buffer(offsets), pa.py_buffer(text)])


def _columnar_table(ctx: ReadContext, cols: _Columns) -> pa.Table:
    """The table rows of the columnar alleles (see ``_Columns``), with the same values and message
    bytes as the row way writes for them: plain records (nothing to escape, no symbolic ALT)."""
    n = len(cols.rec)
    if not n:
        return ALLELE_SCHEMA.empty_table()
    msg = ctx.messages()
    chrom, vcf_id, ref, alts, filters = ([r[k] for r in cols.recs] for k in range(5))  # _RECORD_COLUMNS
    vcf_id_r = pa.array(vcf_id, pa.string())
    alts_r, filters_r = pa.array(alts, pa.string()), pa.array(filters, pa.string())
    pos_r = pa.array(cols.pos, pa.int64())
    lines_r = pa.array(cols.lines, pa.int64())
    no_id, no_filter = pc.equal(vcf_id_r, "."), pc.equal(filters_r, ".")
    record_r = _join(
        '{"chrom":"', pa.array(chrom, pa.string()), '","pos":', pos_r.cast(pa.string()),
        ',"id":', pc.if_else(no_id, "null", _join('"', vcf_id_r, '"')),
        ',"ref":"', pa.array(ref, pa.string()), '","alts":["', pc.replace_substring(alts_r, ",", '","'),
        '"],"qual":', pa.array(cols.qual_json, pa.string()),
        ',"filters":[', pc.if_else(no_filter, "", _join('"', pc.replace_substring(filters_r, ";", '","'), '"')),
        "]}")

    rec = np.array(cols.rec, dtype=np.int64)
    contig_a, npos, nref, nalt, vtype = ctx.normalizer.normalize_many(
        pa.array(chrom, pa.string()).take(rec), pos_r.take(rec), pa.array(ref, pa.string()).take(rec),
        pa.array(cols.alt, pa.string()))
    end = pc.subtract(pc.add(npos, pc.utf8_length(nref).cast(pa.int64())), 1)
    npos_text = npos.cast(pa.string())
    key = variant_keys(ctx.assembly, contig_a, npos_text, nref, nalt)
    mids = list(map(msg.message_id, key.to_pylist()))
    index = pa.array(cols.index, pa.int16())
    info = pa.array(cols.info_json, pa.string())
    value = _join(
        msg.head, _hex(mids), msg.source,
        pc.fill_null(lines_r.cast(pa.string()), "null").take(rec),
        '},"variant":{"key":"', key, '","assembly":', msg.assembly, ',"contig":"', contig_a,
        '","pos":', npos_text, ',"ref":"', nref, '","alt":"', nalt, '","end":', end.cast(pa.string()),
        ',"type":"', vtype, '"},"record":', record_r.take(rec), ',"allele_index":', index.cast(pa.string()),
        ',"info":', info, ',"samples":', pa.array(cols.samples_json, pa.binary()).cast(pa.string()), "}")
    n_alts = pc.add(pc.count_substring(alts_r, ","), 1).cast(pa.int16())
    filter_lists = pc.fill_null(pc.split_pattern(pc.if_else(no_filter, pa.scalar(None, pa.string()), filters_r), ";"),
                                pa.scalar([], pa.list_(pa.string())))
    columns = {
        "message_id": pa.array(mids, pa.binary(16)), "variant_key": key, "assembly": pa.repeat(ctx.assembly, n),
        "contig": contig_a, "pos": npos, "ref": nref, "alt": nalt, "end": end, "variant_type": vtype,
        "allele_index": index, "n_alts": n_alts.take(rec),
        "vcf_id": pc.if_else(no_id, pa.scalar(None, pa.string()), vcf_id_r).take(rec),
        "qual": pa.array(cols.quals, pa.float64()).take(rec), "filters": filter_lists.take(rec), "info": info,
        "af": pa.array(cols.af, pa.float64()), "line": lines_r.take(rec), "value": value.cast(pa.binary()),
    }
    return pa.table([columns[name] for name in ALLELE_SCHEMA.names], schema=ALLELE_SCHEMA)


def _genotype_matrix(rows: list[tuple[bytes, ...]], n: int, m: int) -> np.ndarray:
    """(alleles, samples, ploidy) int8; -2 pads calls shorter than the widest (and rows without GT)."""
    calls = list(chain.from_iterable(rows))
    widths = set(map(len, calls))
    if n and m and len(widths) == 1 and min(widths) > 0 and set(map(len, rows)) == {m}:  # one ploidy throughout
        return np.frombuffer(b"".join(calls), dtype=np.int8).reshape(n, m, len(calls[0])).copy()
    ploidy = max(widths, default=0) or 2
    matrix = np.full((n, m, ploidy), -2, dtype=np.int8)
    for r, row in enumerate(rows):
        widths = set(map(len, row))
        if len(row) == m and len(widths) == 1 and min(widths) > 0:
            matrix[r, :, : len(row[0])] = np.frombuffer(b"".join(row), dtype=np.int8).reshape(m, -1)
        else:  # haploid and diploid calls in one record, or no GT
            for s, call in enumerate(row[:m]):
                matrix[r, s, : len(call)] = np.frombuffer(call, dtype=np.int8)
    return matrix
