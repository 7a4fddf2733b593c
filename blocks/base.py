"""What every vcfstream block shares: it IS one settings group (``vcfstream.settings``).

A block holds the configuration and secrets of one external service (Kafka, Iggy, PostgreSQL,
LanceDB, Kuzu) or policy (routing). ``KafkaConnection`` subclasses both Prefect's ``Block`` and
``KafkaSettings``, so a loaded block replaces its group in ``Settings`` as it is; secrets stay
``SecretStr`` until the client that needs them reveals them.
"""

from __future__ import annotations

from typing import ClassVar, Self

from prefect.blocks.core import Block
from pydantic import ConfigDict

from vcfstream.errors import ConfigurationError
from vcfstream.settings import Settings


class BlockNotFound(ConfigurationError):
    """A block named by a flow parameter or CLI flag is not on the Prefect server."""

    def __init__(self, block_type: str, name: str) -> None:
        self.block_type, self.name = block_type, name
        super().__init__(
            f"block {name!r} of type {block_type!r} is not on the Prefect server; create it with "
            f"`vcfstream blocks register` (defaults) or in the UI under Blocks"
        )


class VcfstreamBlock(Block):
    """Base of the vcfstream blocks: ``group`` names the settings group the block is."""

    # A refused value is not repeated in the error: it may be (or hold) a secret.
    model_config = ConfigDict(hide_input_in_errors=True)

    default_name: ClassVar[str] = ""  # the document name `vcfstream blocks register` saves defaults under
    group: ClassVar[str] = ""  # the Settings group this block is

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """The block holding ``settings``' values of its group (the registered defaults)."""
        return cls.model_validate(getattr(settings, cls.group).model_dump())

    @classmethod
    def load_named(cls, name: str) -> Self:
        """``Block.load`` with a clear error naming the block when it does not exist."""
        try:
            block = cls.load(name)
        except ValueError as exc:  # Prefect: "Unable to find block document named ..."
            if "Unable to find" in str(exc) or "not found" in str(exc).lower():
                raise BlockNotFound(cls.get_block_type_slug(), name) from None
            raise
        if not isinstance(block, cls):
            raise ConfigurationError(f"block {name!r}: expected a {cls.__name__}, got {type(block).__name__}")
        return block
