"""Genotype facts of a whole batch at once, with numpy (no loop over calls).

``AlleleBatch.gt`` is coded per allele row: 0 = REF, 1 = this ALT, 2 = another ALT of the
record, -1 = missing, -2 = no such ploidy slot. A *call* is a (sample, allele) cell with at
least one non-missing allele; a *carrier* has a 1 in its GT.
"""

from __future__ import annotations

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
