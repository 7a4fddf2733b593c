"""What every vcfstream block shares: it contributes its values to the one ``Settings`` object.

A block holds the configuration and secrets of one external service (Kafka, Iggy, PostgreSQL,
LanceDB, Kuzu) or policy (routing). ``settings_overrides()`` names the ``Settings`` fields it
sets; ``apply_to(settings)`` returns a validated copy of ``settings`` with them applied, which is
what each block's client builder (``get_publisher``, ``get_store``, ...) hands to domain code.
Secrets stay ``SecretStr`` all the way into ``Settings``; only the client builders reveal them.
"""

from __future__ import annotations

from typing import Any, ClassVar

from prefect.blocks.core import Block
from pydantic import ConfigDict

from vcfstream.errors import VcfstreamError
from vcfstream.settings import Settings


class BlockNotFound(VcfstreamError):
    """A block named by a flow parameter or CLI flag is not on the Prefect server."""

    def __init__(self, block_type: str, name: str, detail: str = "") -> None:
        self.block_type, self.name = block_type, name
        super().__init__(
            f"block {name!r} of type {block_type!r} is not on the Prefect server{detail}; create it with "
            f"`vcfstream blocks register` (defaults) or in the UI under Blocks"
        )


class SettingsBlock(Block):
    """Base of the vcfstream blocks: a block that maps onto ``Settings`` fields."""

    # A refused value is not repeated in the error: it may be (or hold) a secret.
    model_config = ConfigDict(hide_input_in_errors=True)

    # The block document name ``vcfstream blocks register`` saves the defaults under.
    default_name: ClassVar[str] = ""

    def settings_overrides(self) -> dict[str, Any]:
        """The ``Settings`` fields this block sets (secrets as ``SecretStr``)."""
        raise NotImplementedError

    @classmethod
    def from_settings(cls, settings: Settings) -> SettingsBlock:
        """The block whose values reproduce ``settings`` (used for the registered defaults)."""
        raise NotImplementedError

    def apply_to(self, settings: Settings) -> Settings:
        """A validated copy of ``settings`` with this block's values applied."""
        return merge_settings(settings, self.settings_overrides())

    @classmethod
    def load_named(cls, name: str) -> SettingsBlock:
        """``Block.load`` with a clear error naming the block when it does not exist."""
        try:
            return cls.load(name)
        except ValueError as exc:  # Prefect: "Unable to find block document named ..."
            if "Unable to find" in str(exc) or "not found" in str(exc).lower():
                raise BlockNotFound(cls.get_block_type_slug(), name) from None
            raise


def merge_settings(settings: Settings, overrides: dict[str, Any]) -> Settings:
    """``settings`` with ``overrides`` applied and validated, without re-reading the environment."""
    unknown = sorted(set(overrides) - set(Settings.model_fields))
    if unknown:
        raise ValueError(f"not Settings fields: {', '.join(unknown)}")
    values = settings.model_dump()
    values.update(overrides)
    return Settings.model_validate(values)
