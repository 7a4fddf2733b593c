"""``LanceDBStore``: where vcfstream keeps variant feature vectors (LanceDB)."""

from __future__ import annotations

from typing import ClassVar

from blocks.base import VcfstreamBlock
from vcfstream.settings import LanceDBSettings


class LanceDBStore(VcfstreamBlock, LanceDBSettings):
    """The LanceDB database URI: a local folder or an object store (``s3://bucket/prefix``).

    Object-store credentials are not stored here: LanceDB takes them from the worker's standard
    cloud credentials (instance role, ``AWS_*`` / ``GOOGLE_APPLICATION_CREDENTIALS``).

    Args:
        uri: database folder or object-store URI; empty = ``<VCFSTREAM_HOME>/lancedb``.
        index_min_rows: build the vector index once the table holds this many rows.

    Example:
        >>> from vcfstream.settings import Settings
        >>> Settings().with_groups(lancedb=LanceDBStore(uri="s3://genomics/vcfstream/lancedb")).lancedb_location
        's3://genomics/vcfstream/lancedb'
    """

    _block_type_name = "vcfstream LanceDB Store"
    _description = "LanceDB database (local folder or object store) of vcfstream variant feature vectors."
    default_name: ClassVar[str] = "vcfstream-lancedb"
    group: ClassVar[str] = "lancedb"
