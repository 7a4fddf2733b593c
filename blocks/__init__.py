"""Prefect blocks: one module per external service; each block IS its settings group.

``BlockNames`` is the one flow parameter that names the saved blocks a run uses; they are loaded
inside the run (``resolve``), so no secret is ever a run parameter.

Example:
    >>> from vcfstream.settings import Settings
    >>> settings = resolve(BlockNames(), Settings())  # no names: the environment's settings
    >>> settings.kafka.bootstrap_servers
    '127.0.0.1:9092'
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from blocks.base import BlockNotFound, VcfstreamBlock
from blocks.iggy import IggyConnection
from blocks.kafka import KafkaConnection
from blocks.kuzu import KuzuStore
from blocks.lancedb import LanceDBStore
from blocks.postgres import PostgresConnection
from blocks.routing import RoutingPolicy
from vcfstream.settings import Group, Settings

# Settings group -> block class.
BLOCK_TYPES: dict[str, type[VcfstreamBlock]] = {
    "kafka": KafkaConnection,
    "iggy": IggyConnection,
    "postgres": PostgresConnection,
    "lancedb": LanceDBStore,
    "kuzu": KuzuStore,
    "routing": RoutingPolicy,
}

__all__ = [
    "BLOCK_TYPES", "BlockNames", "BlockNotFound", "IggyConnection", "KafkaConnection", "KuzuStore",
    "LanceDBStore", "PostgresConnection", "RoutingPolicy", "VcfstreamBlock", "resolve",
]


class BlockNames(BaseModel):
    """Saved vcfstream blocks a run uses, by document name; empty = the worker's environment."""

    kafka: str | None = Field(default=None, description="A vcfstream Kafka Connection, e.g. vcfstream-kafka.")
    iggy: str | None = Field(default=None, description="A vcfstream Iggy Connection, e.g. vcfstream-iggy.")
    postgres: str | None = Field(default=None, description="A vcfstream Postgres Connection.")
    lancedb: str | None = Field(default=None, description="A vcfstream LanceDB Store.")
    kuzu: str | None = Field(default=None, description="A vcfstream Kuzu Store.")
    routing: str | None = Field(default=None, description="A vcfstream Routing Policy.")

    @classmethod
    def defaults(cls) -> BlockNames:
        """The names ``vcfstream blocks register`` saves the defaults under."""
        return cls(**{group: block.default_name for group, block in BLOCK_TYPES.items()})


def resolve(names: BlockNames | None, settings: Settings) -> Settings:
    """``settings`` with each named block loaded in place of its group.

    Raises:
        BlockNotFound: a named block does not exist on the server.
    """
    if names is None:
        return settings
    loaded: dict[str, Group] = {}
    for group, name in names.model_dump().items():
        if name:
            block = BLOCK_TYPES[group].load_named(name)
            assert isinstance(block, Group)  # every block class subclasses its settings group
            loaded[group] = block
    return settings.with_groups(**loaded) if loaded else settings
