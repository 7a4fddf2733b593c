"""Stable identity of a variant allele.

variant key = ``assembly:contig:pos:ref:alt`` after normalization (canonical contig, trimmed,
left-aligned when a reference is given); symbolic alleles add their END (and SVLEN when given),
e.g. ``GRCh38:chr1:1000:N:<DEL>:END=2000``.

message id = the first 128 bits of BLAKE2b(dataset, variant key, source content digest), as 16
big-endian bytes; never zero (Iggy reserves id 0 for "assign one for me"). The same allele of
the same file in the same dataset always gets the same id, so the ledger and consumers dedup by it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_SEP = b"\x1f"  # unit separator: cannot occur in dataset names, keys or hex digests


def variant_key(assembly: str, contig: str, pos: int, ref: str, alt: str, end: int | None = None,
                svlen: str | None = None) -> str:
    key = f"{assembly}:{contig}:{pos}:{ref}:{alt}"
    if alt.startswith("<") or "[" in alt or "]" in alt:
        if end is not None:
            key += f":END={end}"
        if svlen:
            key += f":SVLEN={svlen}"
    return key


def variant_keys(assembly: str, contig: pa.Array, pos: pa.Array, ref: pa.Array, alt: pa.Array) -> pa.Array:
    """``variant_key`` of many alleles at once (string arrays; ``pos`` as text), for alleles that
    are not symbolic (those carry END/SVLEN: use ``variant_key``)."""
    return pc.binary_join_element_wise(assembly, contig, pos, ref, alt, ":")


def message_id(dataset: str, key: str, source_digest: str) -> bytes:
    return message_ids(dataset, source_digest)(key)


def message_ids(dataset: str, source_digest: str) -> Callable[[str], bytes]:
    """``message_id`` for one dataset and source, as a function of the key (the hash state after
    the shared prefix is computed once and copied)."""
    prefix = hashlib.blake2b(dataset.encode() + _SEP, digest_size=16)
    suffix = _SEP + source_digest.encode()

    def of(key: str) -> bytes:
        state = prefix.copy()
        state.update(key.encode() + suffix)
        digest = state.digest()
        return digest if any(digest) else b"\x00" * 15 + b"\x01"

    return of


_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def hex_ids(ids: Sequence[bytes]) -> pa.Array:
    """The lower-case hex text of 16-byte ids, as one string array (numpy instead of a ``hex()`` per id)."""
    raw = np.frombuffer(b"".join(ids), dtype=np.uint8).reshape(-1, 16)
    text = np.empty((len(ids), 32), dtype=np.uint8)
    text[:, 0::2] = _HEX_DIGITS[raw >> 4]
    text[:, 1::2] = _HEX_DIGITS[raw & 15]
    offsets = np.arange(0, 32 * len(ids) + 1, 32, dtype=np.int32)
    return pa.Array.from_buffers(pa.string(), len(ids), [None, pa.py_buffer(offsets), pa.py_buffer(text)])


def message_id_bytes(column: pa.ChunkedArray) -> list[bytes]:
    """A table's message id column (16-byte fixed-size binary, no nulls) as bytes objects: slices
    of one copy of its data, 4x faster than ``to_pylist``, which makes a scalar per value."""
    array = column.combine_chunks()
    width = array.type.byte_width
    data = array.buffers()[1].to_pybytes()[array.offset * width:(array.offset + len(array)) * width]
    return [data[i:i + width] for i in range(0, len(data), width)]
