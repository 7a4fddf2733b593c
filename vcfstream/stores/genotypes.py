"""Genotype facts of a whole batch at once, with numpy (no loop over calls).

``AlleleBatch.gt`` is coded per allele row: 0 = REF, 1 = this ALT, 2 = another ALT of the
record, -1 = missing, -2 = no such ploidy slot. A *call* is a (sample, allele) cell with at
least one non-missing allele; a *carrier* has a 1 in its GT. ``pack_genotypes`` turns allele rows'
calls into the fixed-width byte rows the catalog keeps, one per allele, in sample order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vcfstream.model import AlleleBatch

_ABSENT = -2
_SYMBOLS = {-1: ".", 0: "0", 1: "1", 2: "2"}


def called(gt: np.ndarray) -> np.ndarray:
    """(alleles, samples) bool: the cell has at least one non-missing allele."""
    return _any_slot(gt >= 0)


def carrying(gt: np.ndarray) -> np.ndarray:
    """(alleles, samples) bool: the sample carries this ALT."""
    return _any_slot(gt == 1)


def homozygous_alt(gt: np.ndarray) -> np.ndarray:
    """(alleles, samples) bool: every present slot is this ALT (1/1, 1|1, haploid 1)."""
    return carrying(gt) & ~_any_slot((gt != 1) & (gt != _ABSENT))


def _any_slot(cells: np.ndarray) -> np.ndarray:
    """``cells.any(axis=2)`` as an OR over the few ploidy slots: numpy's reduction along a
    last axis of length 2 costs about 20 times more (10 ms against 0.5 for 250k x 3 cells)."""
    out = np.zeros(cells.shape[:2], dtype=bool)
    for slot in range(cells.shape[2]):
        out |= cells[:, :, slot]
    return out


def gt_text(gt: np.ndarray, phased: np.ndarray) -> pa.Array:
    """VCF-style GT strings ("0/1", "1|2", "./1", "1") for calls given as (calls, ploidy) slots.

    Distinct genotypes are few, so each is rendered once and gathered by index.
    """
    if gt.shape[0] == 0:
        return pa.array([], pa.string())
    ploidy = gt.shape[1]
    weights = 5 ** np.arange(ploidy, dtype=np.int64)
    code = (gt.astype(np.int64) + 2) @ weights + phased.astype(np.int64) * 5**ploidy
    distinct, position = np.unique(code, return_inverse=True)
    vocabulary = [_render(int(value), ploidy) for value in distinct]
    return pc.take(pa.array(vocabulary, pa.string()), pa.array(position.astype(np.int32)))


def _render(code: int, ploidy: int) -> str:
    slots = [(code // 5**i) % 5 - 2 for i in range(ploidy)]
    separator = "|" if code // 5**ploidy else "/"
    return separator.join(_SYMBOLS[slot] for slot in slots if slot != _ABSENT)


def calls_table(batch: AlleleBatch, mask: np.ndarray) -> pa.Table:
    """One row per ``mask`` cell: variant_key, sample, gt, phased, dp, gq (-1 becomes null)."""
    rows, cols = np.nonzero(mask)
    dp = batch.dp[rows, cols]
    gq = batch.gq[rows, cols]
    phased = batch.phased[rows, cols]
    return pa.table(
        {
            "variant_key": pc.take(batch.table.column("variant_key"), pa.array(rows)),
            "sample": pc.take(pa.array(batch.samples, pa.string()), pa.array(cols)),
            "gt": gt_text(batch.gt[rows, cols], phased),
            "phased": pa.array(phased, pa.bool_()),
            "dp": pa.array(dp, pa.int32(), mask=dp < 0),
            "gq": pa.array(gq, pa.int32(), mask=gq < 0),
        }
    )


def restrict_rows(mask: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``mask`` with every allele row outside ``rows`` cleared."""
    if rows.shape[0] == mask.shape[0]:
        return mask
    keep = np.zeros(mask.shape[0], dtype=bool)
    keep[rows] = True
    return mask & keep[:, None]


@dataclass(frozen=True, slots=True)
class PackedGenotypes:
    """Allele rows' calls as fixed-width byte rows, every sample in the batch's sample order.

    Per row: ``carriers`` and ``phased`` one bit per sample (bit j of byte j // 8, least
    significant first, as PostgreSQL's ``get_bit`` counts), ``gt`` the int8 codes sample-major
    (sample j's ``ploidy`` slots at j * ploidy), ``dp`` and ``gq`` little-endian int16 per sample
    (int32 when a value needs it; None when no sample has one), -1 missing; ``called`` how many
    samples have a non-missing allele.
    """

    ploidy: int
    called: np.ndarray  # int32 (rows,)
    carriers: np.ndarray  # uint8 (rows, ceil(samples / 8))
    gt: np.ndarray  # uint8 (rows, samples * ploidy)
    phased: np.ndarray  # uint8 (rows, ceil(samples / 8))
    dp: np.ndarray | None  # uint8 (rows, samples * 2 or 4)
    gq: np.ndarray | None

    def __len__(self) -> int:
        return int(self.called.shape[0])


def pack_genotypes(batch: AlleleBatch, rows: np.ndarray) -> PackedGenotypes:
    """The calls of the allele ``rows`` of ``batch``, packed (see ``PackedGenotypes``)."""
    gt = batch.gt[rows]
    n = gt.shape[0]
    return PackedGenotypes(
        ploidy=gt.shape[2],
        called=called(gt).sum(axis=1, dtype=np.int32),
        carriers=np.packbits(carrying(gt), axis=1, bitorder="little"),
        gt=np.ascontiguousarray(gt).view(np.uint8).reshape(n, -1),
        phased=np.packbits(batch.phased[rows], axis=1, bitorder="little"),
        dp=_packed_ints(batch.dp[rows]),
        gq=_packed_ints(batch.gq[rows]),
    )


def _packed_ints(values: np.ndarray) -> np.ndarray | None:
    """(rows, samples) int32, -1 missing, as little-endian int16 bytes per row (int32 if a
    value does not fit); None when every value is missing."""
    if values.size == 0 or (values == -1).all():
        return None
    narrow = values.min() >= -(2**15) and values.max() < 2**15
    packed = values.astype("<i2" if narrow else "<i4")
    return packed.view(np.uint8).reshape(values.shape[0], -1)


def unpack_ints(packed: bytes | None, samples: int) -> np.ndarray:
    """The inverse of the packing of dp or gq: int32 (samples,), -1 missing."""
    if packed is None:
        return np.full(samples, -1, dtype=np.int32)
    width = len(packed) // samples if samples else 4
    return np.frombuffer(packed, dtype="<i2" if width == 2 else "<i4").astype(np.int32)


def unpack_bits(packed: bytes, samples: int) -> np.ndarray:
    """Bool (samples,) of a carriers or phased bit row."""
    return np.unpackbits(np.frombuffer(packed, dtype=np.uint8), count=samples, bitorder="little").astype(bool)
