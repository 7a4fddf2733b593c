"""``KuzuStore``: where vcfstream keeps the sample/variant/gene graph (Kuzu)."""

from __future__ import annotations

from typing import ClassVar

from blocks.base import VcfstreamBlock
from vcfstream.settings import KuzuSettings


class KuzuStore(VcfstreamBlock, KuzuSettings):
    """The Kuzu database path. Kuzu is embedded and single-writer: every worker that writes the
    graph must see the same path (one host, or a shared file system with working locks).

    Args:
        path: database path; empty = ``<VCFSTREAM_HOME>/kuzu/graph.kuzu``.
        lock_timeout_s: how long a writer waits for another writer of the graph.
    """

    _block_type_name = "vcfstream Kuzu Store"
    _description = "Kuzu graph database (embedded, single writer) of vcfstream samples, variants and genes."
    default_name: ClassVar[str] = "vcfstream-kuzu"
    group: ClassVar[str] = "kuzu"
