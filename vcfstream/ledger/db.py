"""PostgreSQL connections and the versioned SQL migrations shared by the ledger, dead-letter
table, breaker storage and catalog.

Migrations are the files ``vcfstream/ledger/sql/NNN_name.sql``, applied in order once each, recorded in
``schema_migrations``; a transaction-level advisory lock makes concurrent starters safe.
"""

from __future__ import annotations

from importlib import resources

import psycopg

from vcfstream.errors import LedgerError
from vcfstream.redact import dsn_error_text
from vcfstream.settings import Settings

_MIGRATION_LOCK = 0x7663_6673_7472_6D01  # "vcfstrm" + 1: one lock for all migrators


def connect(settings: Settings, *, autocommit: bool = False) -> psycopg.Connection:
    """A connection to the DSN in force; any failure is a ``LedgerError`` whose text holds no
    piece of the DSN that may be its password (``vcfstream.redact.dsn_error_text``)."""
    dsn = settings.postgres_dsn()
    try:
        return psycopg.connect(dsn, autocommit=autocommit, connect_timeout=10)
    except (psycopg.Error, ValueError) as exc:
        if isinstance(exc, psycopg.OperationalError):
            what = "PostgreSQL unreachable"
        elif isinstance(exc, psycopg.ProgrammingError | ValueError):  # libpq quotes what it cannot parse
            what = "PostgreSQL DSN is malformed"
        else:
            what = "PostgreSQL connection failed"
        raise LedgerError(f"{what} ({exc.__class__.__name__}): {dsn_error_text(exc, dsn)}") from None


def migrations() -> list[tuple[str, str]]:
    """(version, sql) of every migration shipped with the package, in order."""
    folder = resources.files("vcfstream.ledger") / "sql"
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
    return [(f.name.removesuffix(".sql"), f.read_text()) for f in files]


def migrate(settings: Settings) -> list[str]:
    """Apply pending migrations; returns the versions applied now."""
    applied_now: list[str] = []
    with connect(settings) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        for version, sql in migrations():
            if version in done:
                continue
            conn.execute(sql)
            conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
            applied_now.append(version)
    return applied_now

