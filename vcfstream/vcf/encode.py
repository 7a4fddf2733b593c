"""The published message: one JSON document per allele, written for a whole chunk by Arrow kernels.

The message is documented by ``vcfstream/vcf/schemas/variant-message.v1.json``; ``MESSAGE_SCHEMA``
names its version. Its bytes are those ``orjson.dumps`` writes for the message as a dict (keys in
the order below, no spaces, strings escaped only where JSON requires it: '"', backslash and
control characters; other characters as UTF-8), built column by column from text pieces::

    {"schema":..,"message_id":"<32 hex>","dataset":..,"source":{"path":..,"sha256":..,"line":..},
     "variant":{"key":..,"assembly":..,"contig":..,"pos":..,"ref":..,"alt":..,"end":..,"type":..},
     "record":{"chrom":..,"pos":..,"id":..,"ref":..,"alts":[..],"qual":..,"filters":[..]},
     "allele_index":..,"info":{..},"samples":{..}}

The reader types the INFO and sample values and hands their JSON in (``message_values``).
Wide records get the compact form (``vcfstream/vcf/schemas/variant-message.v2.json``,
``COMPACT_SCHEMA``): the same document up to ``info``, then the calls of every sample column as
one array in the order of the file's sample list, which is a message of its own
(``sample_list_message``, ``vcfstream/vcf/schemas/sample-list.v1.json``) that the compact
message names by id, and the other FORMAT values as one array per key (or null)::

    ..,"info":{..},"genotypes":{"sample_list":"<32 hex>","samples":..,"ploidy":..,"calls":[..],
     "phased":..},"format":{"DP":[..],..}}

``MessageOptions`` says which form a file's records get (``full``, ``compact``, or ``auto``:
compact above ``compact_above_samples`` sample columns) and the largest message the platforms take.

``tests/vcf/test_golden.py`` keeps the bytes from changing silently: a change of the format bumps the
schema version (here and the schema file) and regenerates its digests in the same commit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from vcfstream.vcf.keys import message_ids
from vcfstream.vcf.source import SourceFile

MESSAGE_SCHEMA = "vcfstream.variant.v1"  # the full form
COMPACT_SCHEMA = "vcfstream.variant.v2"  # the compact form
SAMPLE_LIST_SCHEMA = "vcfstream.samples.v1"
SAMPLE_LIST_KEY = "sample-list:"  # + the source's sha256: never a variant key (those hold 4 or more ':')
# Above this many sample columns ``auto`` writes the compact form. A full-form message spends 20
# (GT) to 70 (GT:AD:DP:GQ:PL) bytes per sample on names and keys, so 7 kB at 100 samples and
# 1 MB (Kafka's default limit) at about 14,500; the compact form spends 4 to 6 bytes per call.
COMPACT_ABOVE_SAMPLES = 100
MessageForm = Literal["auto", "full", "compact"]
FRAMING_BYTES = 512  # a message's framing and header names, on any platform (vcfstream.publish.limits)
QUAL_CACHE_LIMIT = 50_000  # distinct QUAL texts kept; a full cache starts over

_ESCAPED = r'[\x00-\x1f"\\]'  # what JSON (and orjson) escapes in a string


def join(*parts: Any) -> pa.Array:
    """Element-wise concatenation of string arrays and scalars (Arrow's kernel, no Python per row)."""
    return pc.binary_join_element_wise(*parts, "")


def _needs_escaping(values: pa.Array) -> bool:
    return bool(pc.any(pc.match_substring_regex(values, _ESCAPED)).as_py())


def _each_distinct(values: pa.Array, encode: Callable[[str], bytes]) -> pa.Array:
    """``encode`` of each value, called once per distinct value (null stays null)."""
    encoded = pc.dictionary_encode(values)
    texts = [encode(text).decode() for text in encoded.dictionary.to_pylist()]
    return pa.array(texts, pa.string()).take(encoded.indices)


def json_strings(values: pa.Array) -> pa.Array:
    """Each value as a JSON string (quoted, escaped as orjson escapes it); null stays null."""
    if not _needs_escaping(values):
        return join('"', values, '"')
    return _each_distinct(values, orjson.dumps)


def json_string_lists(values: pa.Array, separator: str) -> pa.Array:
    """Each value split on ``separator``, as a JSON list of strings; null stays null."""
    if not _needs_escaping(values):
        return join('["', pc.replace_substring(values, separator, '","'), '"]')
    return _each_distinct(values, lambda text: orjson.dumps(text.split(separator)))


def json_objects(offsets: pa.Array, members: pa.Array) -> pa.Array:
    """JSON objects from their members (``"key":value`` texts), object k holding
    ``members[offsets[k]:offsets[k + 1]]``."""
    return join("{", pc.binary_join(pa.ListArray.from_arrays(offsets, members), ","), "}")


@dataclass(frozen=True, slots=True)
class MessageOptions:
    """Which form a file's messages take, and how large one may be.

    ``form``: ``full`` (per-sample objects, schema v1), ``compact`` (schema v2) or ``auto``
    (compact above ``compact_above_samples`` sample columns). ``format_values``: the compact form
    carries the FORMAT values other than GT. ``max_bytes``: the largest message (value, key and
    headers) every configured platform takes, None for no limit. A full-form message over it is
    written compact; one that still does not fit is quarantined (``message.size``).
    """

    form: MessageForm = "auto"
    compact_above_samples: int = COMPACT_ABOVE_SAMPLES
    format_values: bool = True
    max_bytes: int | None = None

    def compact(self, samples: int) -> bool:
        """Whether a file with ``samples`` sample columns gets the compact form."""
        return self.form == "compact" or (self.form == "auto" and samples > self.compact_above_samples)


def message_sizes(values: pa.Array, keys: pa.Array, dataset: str, source_path: str) -> np.ndarray:
    """What each message weighs against a platform's limit: its value, its key twice (Kafka's key,
    Iggy's ``variant_key`` header), its dataset and source headers and ``FRAMING_BYTES``."""
    fixed = len(dataset.encode()) + len(source_path.encode()) + 16 + FRAMING_BYTES
    return (pc.binary_length(values).to_numpy(zero_copy_only=False).astype(np.int64)
            + 2 * pc.binary_length(keys).to_numpy(zero_copy_only=False).astype(np.int64) + fixed)


DEFAULT_OPTIONS = MessageOptions()  # auto, no size limit


def sample_list_key(source_digest: str) -> str:
    """The key (Kafka key, ledger variant key) of the sample list of a source file."""
    return SAMPLE_LIST_KEY + source_digest


@dataclass(frozen=True, slots=True)
class SampleListMessage:
    """The sample list of one source file in one dataset: what compact messages refer to."""

    message_id: bytes
    key: str
    value: bytes


def sample_list_message(dataset: str, source: SourceFile) -> SampleListMessage:
    """The sample-list message of ``source``: its id is ``message_ids`` of its key, so the same
    file in the same dataset always has the same sample list id.

        {"schema":"vcfstream.samples.v1","message_id":..,"dataset":..,"source":{"path":..,"sha256":..},
         "samples":[..every sample column's name, in file order..]}
    """
    key = sample_list_key(source.digest)
    mid = message_ids(dataset, source.digest)(key)
    value = orjson.dumps({"schema": SAMPLE_LIST_SCHEMA, "message_id": mid.hex(), "dataset": dataset,
                          "source": {"path": source.path, "sha256": source.digest}, "samples": list(source.samples)})
    return SampleListMessage(mid, key, value)


@dataclass(slots=True)
class MessageParts:
    """What the messages of one file share: the text around their per-allele values, the
    message id function, each sample's ``"name":`` and QUAL texts already typed."""

    message_id: Callable[[str], bytes]
    head: str  # up to the message id
    source: str  # from after the message id to the source line number
    assembly: str  # JSON
    sample_keys: list[str]  # '"NA12878":' per sample written
    # the sample columns written, in order: every column, unless names repeat (then, as in a
    # dict, each name once where it first occurs, holding its last column)
    sample_columns: list[int]
    compact_head: str  # ``head`` of the compact form
    genotypes_head: str  # the compact form's '"genotypes":{' up to its ploidy
    quals: dict[str, tuple[float | None, str]] = field(default_factory=dict)  # QUAL text -> value, JSON

    @classmethod
    def build(cls, dataset: str, assembly: str, source: SourceFile) -> MessageParts:
        last = {name: k for k, name in enumerate(source.samples)}  # insertion order: first occurrence
        path_digest = orjson.dumps({"path": source.path, "sha256": source.digest}).decode()[:-1]
        sample_list = sample_list_message(dataset, source).message_id.hex()
        return cls(message_ids(dataset, source.digest),
                   '{"schema":' + orjson.dumps(MESSAGE_SCHEMA).decode() + ',"message_id":"',
                   '","dataset":' + orjson.dumps(dataset).decode() + ',"source":' + path_digest + ',"line":',
                   orjson.dumps(assembly).decode(),
                   [orjson.dumps(name).decode() + ":" for name in last], list(last.values()),
                   '{"schema":' + orjson.dumps(COMPACT_SCHEMA).decode() + ',"message_id":"',
                   f',"genotypes":{{"sample_list":"{sample_list}","samples":{len(source.samples)},"ploidy":')

    def qual(self, text: str) -> tuple[float | None, str]:
        """QUAL typed: (value, its JSON); raises ValueError for a value that is not a number."""
        known = self.quals.get(text)
        if known is None:
            value = None if text == "." else float(text)
            if len(self.quals) >= QUAL_CACHE_LIMIT:
                self.quals.clear()
            known = self.quals[text] = (value, orjson.dumps(value).decode())
        return known


def record_json(chrom: pa.Array, pos: pa.Array, vcf_id: pa.Array, ref: pa.Array, alts: pa.Array,
                qual_json: pa.Array, filters: pa.Array) -> pa.Array:
    """The message's ``record`` object per record, from its VCF columns (text; ``pos`` as int64,
    ``qual_json`` already JSON)."""
    no_id, no_filter = pc.equal(vcf_id, "."), pc.equal(filters, ".")
    return join(
        '{"chrom":', json_strings(chrom), ',"pos":', pos.cast(pa.string()),
        ',"id":', pc.if_else(no_id, "null", json_strings(vcf_id)), ',"ref":', json_strings(ref),
        ',"alts":', json_string_lists(alts, ","), ',"qual":', qual_json,
        ',"filters":', pc.if_else(no_filter, "[]", json_string_lists(filters, ";")), "}")


def message_values(parts: MessageParts, ids_hex: pa.Array, line: pa.Array, key: pa.Array, contig: pa.Array,
                   pos: pa.Array, ref: pa.Array, alt: pa.Array, end: pa.Array, vtype: pa.Array,
                   record: pa.Array, allele_index: pa.Array, info: pa.Array, samples: pa.Array,
                   compact: bool = False) -> pa.Array:
    """The message of each allele (binary): ``ids_hex`` the message ids as hex, ``line`` int64
    (null when unknown), ``pos``, ``end`` int64, ``allele_index`` int16, ``record``, ``info`` JSON;
    the other columns strings. ``samples``: the full form's samples object, or with ``compact``
    the compact form's text after ``info`` (``compact_genotypes``)."""
    value = join(
        parts.compact_head if compact else parts.head, ids_hex, parts.source, pc.fill_null(line.cast(pa.string()), "null"),
        '},"variant":{"key":', json_strings(key), ',"assembly":', parts.assembly, ',"contig":', json_strings(contig),
        ',"pos":', pos.cast(pa.string()), ',"ref":', json_strings(ref), ',"alt":', json_strings(alt),
        ',"end":', end.cast(pa.string()), ',"type":', json_strings(vtype), '},"record":', record,
        ',"allele_index":', allele_index.cast(pa.string()), ',"info":', info,
        *((samples,) if compact else (',"samples":', samples)), "}")
    return value.cast(pa.binary())


_CODE_TEXTS = pa.array(["-2", "-1", "0", "1", "2"], pa.string())  # call codes -2..2


def json_arrays(texts: pa.Array, per_row: int, rows: int) -> pa.Array:
    """``rows`` JSON arrays of ``per_row`` elements each from ``texts`` (JSON values, row-major)."""
    offsets = pa.array(np.arange(0, rows * per_row + 1, per_row, dtype=np.int32) if per_row
                       else np.zeros(rows + 1, dtype=np.int32))
    return join("[", pc.binary_join(pa.ListArray.from_arrays(offsets, texts), ","), "]")


def compact_genotypes(parts: MessageParts, calls: np.ndarray, phased: np.ndarray,
                      format_values: pa.Array | None) -> pa.Array:
    """The compact form's ``,"genotypes":{..},"format":..`` per allele (string), from its calls
    (int8 (alleles, samples, ploidy): 0 REF, 1 this ALT, 2 another ALT, -1 missing, -2 no such
    slot), whether each call is phased (bool (alleles, samples)) and the ``format`` objects (JSON;
    None: ``"format":null``). Each allele's ploidy is its widest call (0 without GT), so its text
    does not depend on the other records of the chunk."""
    n, m = phased.shape
    width = calls.shape[2] if calls.ndim == 3 else 0
    used = (calls != -2).any(axis=1) if n and width else np.zeros((n, width), dtype=bool)
    ploidy = np.where(used.any(axis=1), width - np.argmax(used[:, ::-1], axis=1), 0) if width else np.zeros(n, np.int64)
    pieces = []
    for p in np.unique(ploidy).tolist():
        rows = np.flatnonzero(ploidy == p)
        codes = calls[rows, :, :p].astype(np.int32).ravel() + 2
        pieces.append((rows, json_arrays(_CODE_TEXTS.take(pa.array(codes)), m * p, len(rows))))
    texts = pa.array([], pa.string())
    if pieces:  # back in allele order
        where = np.empty(n, dtype=np.int64)
        where[np.concatenate([rows for rows, _ in pieces])] = np.arange(n)
        texts = pa.concat_arrays([array for _, array in pieces]).take(pa.array(where))
    all_phased, none_phased = phased.all(axis=1) & (m > 0), ~phased.any(axis=1)
    mixed = np.flatnonzero(~(all_phased | none_phased))
    flags = pa.array(np.where(all_phased, "true", "false"), pa.string())
    if mixed.size:
        bits = json_arrays(pa.array(np.where(phased[mixed].ravel(), "1", "0"), pa.string()), m, len(mixed))
        mask = np.zeros(n, dtype=bool)
        mask[mixed] = True
        flags = pc.replace_with_mask(flags, pa.array(mask), bits)
    formats = pa.repeat(pa.scalar("null"), n) if format_values is None else format_values
    return join(parts.genotypes_head, pa.array(ploidy, pa.int64()).cast(pa.string()), ',"calls":', texts,
                ',"phased":', flags, '},"format":', formats)


def decode_compact(message: dict[str, Any], samples: list[str]) -> dict[str, dict[str, Any]]:
    """The full form's ``samples`` object of a compact message (parsed), given its sample list's
    ``samples``: per sample name its GT text (re-coded for the allele as in the full form:
    another ALT is written 0) first, then its other FORMAT values (when the message carries
    them). A name the list repeats holds its last column, where the name first occurs. Calls a
    VCF 4.5 file gives as LGT without GT (the full form's ``LGT``) come back as ``GT``.

    Example:
        >>> decode_compact({"genotypes": {"samples": 2, "ploidy": 2, "calls": [0, 1, -1, -1],
        ...                               "phased": False}, "format": {"DP": [7, None]}}, ["A", "B"])
        {'A': {'GT': '0/1', 'DP': 7}, 'B': {'GT': './.', 'DP': None}}
    """
    genotypes, formats = message["genotypes"], message.get("format") or {}
    m, ploidy, calls = genotypes["samples"], genotypes["ploidy"], genotypes["calls"]
    if len(samples) != m:
        raise ValueError(f"the sample list has {len(samples)} samples, the message {m}")
    phased = genotypes["phased"]
    out: dict[str, dict[str, Any]] = {}
    for j, name in enumerate(samples):
        entry: dict[str, Any] = {}
        if ploidy:
            codes = [c for c in calls[j * ploidy:(j + 1) * ploidy] if c != -2]
            is_phased = phased[j] if isinstance(phased, list) else phased
            entry["GT"] = ("|" if is_phased else "/").join("." if c < 0 else "1" if c == 1 else "0" for c in codes)
        for key, values in formats.items():
            entry[key] = values[j]
        out[name] = entry
    return out
