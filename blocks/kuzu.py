"""``KuzuStore``: where vcfstream keeps the sample/variant/gene graph (Kuzu)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from blocks.base import SettingsBlock
from vcfstream.settings import Settings

if TYPE_CHECKING:
    from vcfstream.stores.graph import GraphStore


class KuzuStore(SettingsBlock):
    """The Kuzu database path. Kuzu is embedded and single-writer: every worker that writes the
    graph must see the same path (one host, or a shared file system with working locks).

    Args:
        path: database path; empty = ``<VCFSTREAM_HOME>/kuzu/graph.kuzu``.
        lock_timeout_s: how long a writer waits for another writer of the graph.

    Returns:
        ``settings_overrides()`` -> ``kuzu_path``, ``store_lock_timeout_s``;
        ``get_store(settings)`` -> a ``GraphStore`` (close it, or use ``open_store``).

    Example:
        >>> from vcfstream.settings import Settings
        >>> str(KuzuStore(path="/data/graph.kuzu").apply_to(Settings()).kuzu_location)
        '/data/graph.kuzu'
    """

    _block_type_name = "vcfstream Kuzu Store"
    _description = "Kuzu graph database (embedded, single writer) of vcfstream samples, variants and genes."
    default_name: ClassVar[str] = "vcfstream-kuzu"

    path: str | None = Field(default=None, description="Database path; empty = <home>/kuzu/graph.kuzu.")
    lock_timeout_s: float = Field(default=600.0, gt=0, description="Wait this long for another writer.")

    @classmethod
    def from_settings(cls, settings: Settings) -> KuzuStore:
        return cls(path=str(settings.kuzu_location), lock_timeout_s=settings.store_lock_timeout_s)

    def settings_overrides(self) -> dict[str, Any]:
        return {"kuzu_path": Path(self.path) if self.path else None, "store_lock_timeout_s": self.lock_timeout_s}

    def get_store(self, settings: Settings) -> GraphStore:
        from vcfstream.stores.graph import GraphStore

        return GraphStore(self.apply_to(settings))
