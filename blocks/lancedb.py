"""``LanceDBStore``: where vcfstream keeps variant feature vectors (LanceDB)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from blocks.base import SettingsBlock
from vcfstream.settings import Settings

if TYPE_CHECKING:
    from vcfstream.stores.lance import LanceStore


class LanceDBStore(SettingsBlock):
    """The LanceDB database URI: a local folder or an object store (``s3://bucket/prefix``).

    Object-store credentials are not stored here: LanceDB takes them from the worker's standard
    cloud credentials (instance role, ``AWS_*`` / ``GOOGLE_APPLICATION_CREDENTIALS``).

    Args:
        uri: database folder or object-store URI; empty = ``<VCFSTREAM_HOME>/lancedb``.
        index_min_rows: build the vector index once the table holds this many rows.

    Returns:
        ``settings_overrides()`` -> ``lancedb_uri``, ``lance_index_min_rows``;
        ``get_store(settings)`` -> a ``LanceStore`` (close it, or use ``open_store``).

    Example:
        >>> from vcfstream.settings import Settings
        >>> LanceDBStore(uri="s3://genomics/vcfstream/lancedb").apply_to(Settings()).lancedb_location
        's3://genomics/vcfstream/lancedb'
    """

    _block_type_name = "vcfstream LanceDB Store"
    _description = "LanceDB database (local folder or object store) of vcfstream variant feature vectors."
    default_name: ClassVar[str] = "vcfstream-lancedb"

    uri: str | None = Field(default=None, description="Folder or s3://, gs://, az:// URI; empty = <home>/lancedb.")
    index_min_rows: int = Field(default=100_000, ge=1, description="Rows before the vector index is built.")

    @classmethod
    def from_settings(cls, settings: Settings) -> LanceDBStore:
        return cls(uri=settings.lancedb_location, index_min_rows=settings.lance_index_min_rows)

    def settings_overrides(self) -> dict[str, Any]:
        return {"lancedb_uri": self.uri or None, "lance_index_min_rows": self.index_min_rows}

    def get_store(self, settings: Settings) -> LanceStore:
        from vcfstream.stores.lance import LanceStore

        return LanceStore(self.apply_to(settings))
