"""``vcfstream quarantine``: the dead-letter table, read back."""

from __future__ import annotations

from typing import Any

from vcfstream.ledger import db
from vcfstream.settings import Settings


def list_quarantined(settings: Settings, dataset: str, *, limit: int = 1000) -> list[dict[str, Any]]:
    with db.connect(settings) as conn:
        cur = conn.execute(
            "SELECT source_path, line, rule, message, raw, chunk_id, run_id, created_at FROM dead_letters"
            " WHERE dataset = %s ORDER BY source_path, line NULLS LAST, id LIMIT %s",
            (dataset, limit),
        )
        assert cur.description is not None  # a SELECT has a result
        names = [c.name for c in cur.description]
        rows = [dict(zip(names, row)) for row in cur]
    for row in rows:
        row["path"] = row.pop("source_path")
    return rows


def count_quarantined(settings: Settings, dataset: str, rule: str) -> int:
    """How many records of ``dataset`` are quarantined under ``rule``."""
    with db.connect(settings) as conn:
        row = conn.execute("SELECT count(*) FROM dead_letters WHERE dataset = %s AND rule = %s",
                           (dataset, rule)).fetchone()
    return int(row[0]) if row else 0
