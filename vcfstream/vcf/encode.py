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
``tests/vcf/test_golden.py`` keeps the bytes from changing silently: a change of the format bumps the
schema version (here and the schema file) and regenerates its digests in the same commit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from vcfstream.vcf.keys import message_ids
from vcfstream.vcf.source import SourceFile

MESSAGE_SCHEMA = "vcfstream.variant.v1"
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
    quals: dict[str, tuple[float | None, str]] = field(default_factory=dict)  # QUAL text -> value, JSON

    @classmethod
    def build(cls, dataset: str, assembly: str, source: SourceFile) -> MessageParts:
        last = {name: k for k, name in enumerate(source.samples)}  # insertion order: first occurrence
        path_digest = orjson.dumps({"path": source.path, "sha256": source.digest}).decode()[:-1]
        return cls(message_ids(dataset, source.digest),
                   '{"schema":' + orjson.dumps(MESSAGE_SCHEMA).decode() + ',"message_id":"',
                   '","dataset":' + orjson.dumps(dataset).decode() + ',"source":' + path_digest + ',"line":',
                   orjson.dumps(assembly).decode(),
                   [orjson.dumps(name).decode() + ":" for name in last], list(last.values()))

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
                   record: pa.Array, allele_index: pa.Array, info: pa.Array, samples: pa.Array) -> pa.Array:
    """The message of each allele (binary): ``ids_hex`` the message ids as hex, ``line`` int64
    (null when unknown), ``pos``, ``end`` int64, ``allele_index`` int16, ``record``, ``info`` and
    ``samples`` JSON; the other columns strings."""
    value = join(
        parts.head, ids_hex, parts.source, pc.fill_null(line.cast(pa.string()), "null"),
        '},"variant":{"key":', json_strings(key), ',"assembly":', parts.assembly, ',"contig":', json_strings(contig),
        ',"pos":', pos.cast(pa.string()), ',"ref":', json_strings(ref), ',"alt":', json_strings(alt),
        ',"end":', end.cast(pa.string()), ',"type":', json_strings(vtype), '},"record":', record,
        ',"allele_index":', allele_index.cast(pa.string()), ',"info":', info, ',"samples":', samples, "}")
    return value.cast(pa.binary())
