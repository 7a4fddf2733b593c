"""Prefect blocks: one module per external service, each builds its configured client.

``settings_from_blocks`` builds the flow's one ``Settings`` object: environment, then the named
blocks, then explicit flow parameters / CLI flags on top.

Example:
    >>> settings = settings_from_blocks(kafka="vcfstream-kafka", chunk_size=10_000)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from blocks.base import BlockNotFound, SettingsBlock, merge_settings
from blocks.iggy import IggyConnection
from blocks.kafka import KafkaConnection
from blocks.kuzu import KuzuStore
from blocks.lancedb import LanceDBStore
from blocks.postgres import PostgresConnection
from blocks.routing import RoutingPolicy
from vcfstream.settings import Settings, load_settings

# Parameter name (``<name>_block`` in the flows) -> block class.
BLOCK_TYPES: dict[str, type[SettingsBlock]] = {
    "kafka": KafkaConnection,
    "iggy": IggyConnection,
    "postgres": PostgresConnection,
    "lancedb": LanceDBStore,
    "kuzu": KuzuStore,
    "routing": RoutingPolicy,
}

BlockRef = str | SettingsBlock | None

__all__ = [
    "BLOCK_TYPES", "BlockNotFound", "IggyConnection", "KafkaConnection", "KuzuStore", "LanceDBStore",
    "PostgresConnection", "RoutingPolicy", "SettingsBlock", "settings_from_blocks",
]


def settings_from_blocks(*, kafka: BlockRef = None, iggy: BlockRef = None, postgres: BlockRef = None,
                         lancedb: BlockRef = None, kuzu: BlockRef = None, routing: BlockRef = None,
                         base: Settings | None = None, **overrides: Any) -> Settings:
    """The one ``Settings``: ``base`` (default: the environment) < named blocks < ``overrides``.

    Args:
        kafka, iggy, postgres, lancedb, kuzu, routing: a block document name (loaded from the
            Prefect server), a block instance, or None (that service keeps its ``base`` values).
        base: starting settings; None = ``load_settings()`` (``VCFSTREAM_*`` environment).
        overrides: explicit ``Settings`` fields (flow parameters, CLI flags); None values are
            "not given" and ignored.

    Returns:
        A validated ``Settings``.

    Raises:
        BlockNotFound: a named block does not exist on the server.

    Example:
        >>> s = settings_from_blocks(kafka=KafkaConnection(bootstrap_servers="k:9092"), chunk_size=7)
        >>> s.kafka_bootstrap, s.chunk_size
        ('k:9092', 7)
    """
    values: dict[str, Any] = {}
    refs = {"kafka": kafka, "iggy": iggy, "postgres": postgres, "lancedb": lancedb, "kuzu": kuzu,
            "routing": routing}
    for kind, ref in refs.items():
        if ref is None or ref == "":
            continue
        block = BLOCK_TYPES[kind].load_named(ref) if isinstance(ref, str) else ref
        if not isinstance(block, BLOCK_TYPES[kind]):
            raise TypeError(f"{kind}: expected a {BLOCK_TYPES[kind].__name__}, got {type(block).__name__}")
        values.update(block.settings_overrides())
    values.update({key: value for key, value in overrides.items() if value is not None})
    return merge_settings(base if base is not None else load_settings(), values)
