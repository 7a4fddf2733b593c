"""PostgreSQL connections and the versioned SQL migrations shared by the ledger, dead-letter
table, breaker storage and catalog.

Migrations are the files ``vcfstream/ledger/sql/NNN_name.sql``, applied in order once each, recorded in
``schema_migrations``; a transaction-level advisory lock makes concurrent starters safe.
"""

from __future__ import annotations

from importlib import resources

import psycopg

from vcfstream.errors import LedgerError
from vcfstream.settings import Settings

_MIGRATION_LOCK = 0x7663_6673_7472_6D01  # "vcfstrm" + 1: one lock for all migrators


def connect(settings: Settings, *, autocommit: bool = False) -> psycopg.Connection:
    try:
        return psycopg.connect(settings.postgres_dsn(), autocommit=autocommit, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise LedgerError(f"PostgreSQL unreachable ({exc.__class__.__name__}): {_first_line(exc)}") from None


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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__
