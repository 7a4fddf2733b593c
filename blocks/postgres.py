"""``PostgresConnection``: the PostgreSQL server that holds the ledger, dead letters, breaker
state and the catalog."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, SecretStr

from blocks.base import SettingsBlock
from vcfstream.settings import Settings

if TYPE_CHECKING:
    import psycopg


def embedded_dsn(settings: Settings) -> str:
    """The DSN of the server ``vcfstream services up`` runs (whether or not it runs now)."""
    from vcfstream.devservices.services import PG_DATABASE, PG_SUPERUSER

    return f"postgresql://{PG_SUPERUSER}@127.0.0.1:{settings.pg_port}/{PG_DATABASE}"


class PostgresConnection(SettingsBlock):
    """The PostgreSQL DSN of the dedup ledger and catalog (the whole DSN is kept secret).

    Args:
        dsn: ``postgresql://user:password@host:5432/db?sslmode=verify-full&sslrootcert=/ca.pem``.

    Returns:
        ``settings_overrides()`` -> ``{"pg_dsn": SecretStr}``; ``get_connection(settings)`` -> an
        open ``psycopg.Connection`` (``LedgerError`` naming the failure, never the DSN).

    Example:
        >>> from vcfstream.settings import Settings
        >>> block = PostgresConnection(dsn="postgresql://vcf:s3cret@db.internal:5432/vcfstream")
        >>> block.apply_to(Settings()).pg_dsn
        SecretStr('**********')
    """

    _block_type_name = "vcfstream Postgres Connection"
    _description = "PostgreSQL server of the vcfstream ledger, dead letters, breaker state and catalog."
    default_name: ClassVar[str] = "vcfstream-postgres"

    dsn: SecretStr = Field(
        default=SecretStr("postgresql://postgres@127.0.0.1:5433/vcfstream"),
        description="libpq URI or key=value DSN, credentials and TLS options included.",
    )

    @classmethod
    def from_settings(cls, settings: Settings) -> PostgresConnection:
        return cls(dsn=settings.pg_dsn or SecretStr(embedded_dsn(settings)))

    def settings_overrides(self) -> dict[str, Any]:
        return {"pg_dsn": self.dsn}

    def get_connection(self, settings: Settings, *, autocommit: bool = False) -> psycopg.Connection:
        """A connection to this server (the caller closes it)."""
        from vcfstream.ledger import db

        return db.connect(self.apply_to(settings), autocommit=autocommit)
