"""``PostgresConnection``: the PostgreSQL server that holds the ledger, dead letters, breaker
state and the catalog."""

from __future__ import annotations

from typing import ClassVar

from pydantic import SecretStr

from blocks.base import VcfstreamBlock
from vcfstream.settings import PostgresSettings, Settings


class PostgresConnection(VcfstreamBlock, PostgresSettings):
    """The PostgreSQL DSN of the dedup ledger and catalog (the whole DSN is kept secret).

    Args:
        dsn: ``postgresql://user:password@host:5432/db?sslmode=verify-full&sslrootcert=/ca.pem``.

    Example:
        >>> from vcfstream.settings import Settings
        >>> block = PostgresConnection(dsn="postgresql://vcf:s3cret@db.internal:5432/vcfstream")
        >>> Settings().with_groups(postgres=block).postgres_dsn()
        'postgresql://vcf:s3cret@db.internal:5432/vcfstream'
    """

    _block_type_name = "vcfstream Postgres Connection"
    _description = "PostgreSQL server of the vcfstream ledger, dead letters, breaker state and catalog."
    default_name: ClassVar[str] = "vcfstream-postgres"
    group: ClassVar[str] = "postgres"

    @classmethod
    def from_settings(cls, settings: Settings) -> PostgresConnection:
        """The DSN in force, also when it is the one ``vcfstream services up`` wrote."""
        return cls(dsn=SecretStr(settings.postgres_dsn()))
