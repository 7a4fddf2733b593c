"""Variant-to-gene links from snpEff ``ANN`` and VEP ``CSQ`` INFO annotations.

Both are lists of ``|``-separated entries, one per (allele, transcript). snpEff's field order
is fixed by its specification; VEP's is declared in the header (``##INFO=<ID=CSQ,...,
Description="... Format: Allele|Consequence|...">``) and varies with the plugins used, so the
CSQ field list is taken from the header when the caller has it (``csq_fields_from_header``).

An entry belongs to an allele row when its Allele (or VEP's ALLELE_NUM) names that ALT; rows of
single-ALT records take every entry, since normalization may have rewritten the ALT. Entries of
one (variant, gene) pair collapse to one link: the distinct consequences joined with ``&`` and
the most severe impact.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

# snpEff ANN: Allele | Annotation | Annotation_Impact | Gene_Name | Gene_ID | Feature_Type | ...
_ANN_ALLELE, _ANN_CONSEQUENCE, _ANN_IMPACT, _ANN_GENE_NAME, _ANN_GENE_ID = 0, 1, 2, 3, 4

# VEP's default CSQ order, used when the header's Format is not given.
VEP_DEFAULT_FIELDS: tuple[str, ...] = (
    "Allele", "Consequence", "IMPACT", "SYMBOL", "Gene", "Feature_type", "Feature", "BIOTYPE",
    "EXON", "INTRON", "HGVSc", "HGVSp", "cDNA_position", "CDS_position", "Protein_position",
    "Amino_acids", "Codons", "Existing_variation", "DISTANCE", "STRAND",
)  # fmt: skip

IMPACT_RANK = {"HIGH": 3, "MODERATE": 2, "LOW": 1, "MODIFIER": 0}

GENE_LINK_SCHEMA = pa.schema(
    [
        ("variant_key", pa.string()),
        ("gene_id", pa.string()),
        ("gene_name", pa.string()),
        ("consequence", pa.string()),
        ("impact", pa.string()),
    ]
)

_CSQ_FORMAT = re.compile(r'##INFO=<ID=CSQ,.*?Format:\s*([^">]+)')


def csq_fields_from_header(header_text: str) -> list[str] | None:
    """The CSQ field order declared by VEP in a VCF header, or None when there is none."""
    match = _CSQ_FORMAT.search(header_text)
    return [name.strip() for name in match.group(1).split("|")] if match else None


def gene_links(table: pa.Table, csq_fields: Sequence[str] | None = None) -> pa.Table:
    """(variant_key, gene_id, gene_name, consequence, impact) rows for the annotated alleles.

    Only rows whose INFO mentions ANN or CSQ are parsed (found with a vectorized substring
    test), so unannotated batches cost one pass over the INFO column.
    """
    if table.num_rows == 0:
        return GENE_LINK_SCHEMA.empty_table()
    info = table.column("info")
    mentioned = pc.or_(pc.match_substring(info, '"ANN"'), pc.match_substring(info, '"CSQ"'))
    rows = np.flatnonzero(pc.fill_null(mentioned, False).to_numpy(zero_copy_only=False))
    if rows.size == 0:
        return GENE_LINK_SCHEMA.empty_table()
    csq = _CsqLayout(csq_fields or VEP_DEFAULT_FIELDS)
    subset = table.take(pa.array(rows)).select(["variant_key", "ref", "alt", "allele_index", "n_alts", "info"])
    links: dict[tuple[str, str], list[Any]] = {}
    for key, ref, alt, allele_index, n_alts, text in zip(*(c.to_pylist() for c in subset.columns), strict=True):
        values = orjson.loads(text)
        accept_all = (n_alts or 1) <= 1
        for gene_id, gene_name, consequence, impact in (
            *_ann_genes(values.get("ANN"), alt, accept_all),
            *csq.genes(values.get("CSQ"), ref, alt, allele_index, accept_all),
        ):
            link = links.get((key, gene_id))
            if link is None:
                links[(key, gene_id)] = [gene_name, [consequence], impact]
                continue
            if consequence not in link[1]:
                link[1].append(consequence)
            if IMPACT_RANK.get(impact, -1) > IMPACT_RANK.get(link[2], -1):
                link[2] = impact
    return pa.Table.from_pylist(
        [
            {"variant_key": key, "gene_id": gene_id, "gene_name": name,
             "consequence": "&".join(c for c in consequences if c), "impact": impact}
            for (key, gene_id), (name, consequences, impact) in links.items()
        ],
        schema=GENE_LINK_SCHEMA,
    )  # fmt: skip


def _entries(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [v for v in value if isinstance(v, str)]


def _ann_genes(value: Any, alt: str, accept_all: bool) -> list[tuple[str, str, str, str]]:
    genes = []
    for entry in _entries(value):
        fields = entry.split("|")
        if len(fields) <= _ANN_GENE_ID or not (accept_all or fields[_ANN_ALLELE] == alt):
            continue
        gene_id = fields[_ANN_GENE_ID] or fields[_ANN_GENE_NAME]
        if gene_id:
            genes.append((gene_id, fields[_ANN_GENE_NAME], fields[_ANN_CONSEQUENCE], fields[_ANN_IMPACT]))
    return genes


class _CsqLayout:
    """Positions of the CSQ fields vcfstream uses, from the header's declared order."""

    def __init__(self, fields: Sequence[str]) -> None:
        position = {name: i for i, name in enumerate(fields)}
        self.allele = position.get("Allele", 0)
        self.allele_num = position.get("ALLELE_NUM")
        self.consequence = position.get("Consequence")
        self.impact = position.get("IMPACT")
        self.symbol = position.get("SYMBOL")
        self.gene = position.get("Gene")

    def genes(
        self, value: Any, ref: str, alt: str, allele_index: int | None, accept_all: bool
    ) -> list[tuple[str, str, str, str]]:
        names = {alt, _vep_allele(ref, alt)}
        genes = []
        for entry in _entries(value):
            fields = entry.split("|")
            if not (accept_all or self._same_allele(fields, names, allele_index)):
                continue
            gene_id, symbol = self._get(fields, self.gene), self._get(fields, self.symbol)
            if gene_id or symbol:
                consequence, impact = self._get(fields, self.consequence), self._get(fields, self.impact)
                genes.append((gene_id or symbol, symbol, consequence, impact))
        return genes

    def _same_allele(self, fields: list[str], names: set[str], allele_index: int | None) -> bool:
        if self.allele_num is not None and allele_index is not None:
            return self._get(fields, self.allele_num) == str(allele_index)
        return self._get(fields, self.allele) in names

    @staticmethod
    def _get(fields: list[str], position: int | None) -> str:
        return fields[position] if position is not None and position < len(fields) else ""


def _vep_allele(ref: str, alt: str) -> str:
    """VEP drops the shared first base of indels and writes a deletion as ``-``."""
    if len(ref) != len(alt) and ref[:1] == alt[:1]:
        return alt[1:] or "-"
    return alt
