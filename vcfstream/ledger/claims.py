"""The PostgreSQL dedup ledger: decides which messages are new, records where each went.

A ``LedgerSession`` lives for one chunk attempt on one connection. It holds a session-level
advisory lock on a random ``claim_token``; rows it claims carry that token. Another attempt
finding rows claimed but never published takes them over only if it can take the token's lock,
i.e. only when the claimant's connection is gone (crashed, killed, failed and closed). So:
- two runs of one file at once: the second waits on the first's uncommitted claim inserts,
  then sees them claimed by a live attempt and leaves them: each message is published once;
- a crashed or failed chunk: its retry takes over the unpublished rows and publishes them.

Claiming is one COPY into a temporary table plus one INSERT per batch (a plain one, and when an
id exists ``INSERT ... ON CONFLICT DO NOTHING`` instead), never a query per variant; when some
ids already existed (or repeat in the batch), one more query finds the rows this transaction
inserted and one takes over dead claims. Rows are inserted in id order, so two claimers of
overlapping batches lock rows in the same order and cannot deadlock. The claim keeps each of
its rows' ctid in a session table, and marking them published goes by ctid (a TID scan, not a
primary-key descent per row: 9-10 -> 5 us of server CPU per row at 50M rows). The unique key is
(hash of dataset and source digest, message id): one ingest's rows share a range of its index.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import psycopg
import pyarrow as pa
import pyarrow.compute as pc

from vcfstream.errors import LedgerError
from vcfstream.ledger import db
from vcfstream.model import Acks, ChunkSummary, Quarantined
from vcfstream.settings import Settings
from vcfstream.vcf.keys import hex_ids


@dataclass(frozen=True, slots=True)
class Claim:
    """Indexes (into the claimed batch) of the messages this attempt must publish."""

    to_publish: list[int]
    duplicates: int  # already published, in doubt, or being published by a live attempt
    taken_over: int  # claimed by a dead attempt and now ours


# The first batch index of each id that ``claim_in`` shares with {} (a CTE or the ledger,
# filtered by {}), as one int array (NULL when none): a record repeated in a batch is sent once.
_FIRST_INDEXES = ("SELECT array_agg(i) FROM (SELECT min(c.i) AS i FROM claim_in c JOIN {} USING (message_id) {}"
                  " GROUP BY c.message_id) first")

# The ledger's unique key (migration 007): a hash of dataset and source digest, then the message
# id. A query that looks rows up by id names them too, in this form, so the key's index serves it.
_OF_SOURCE = ("hashtextextended({0}dataset || {0}source_digest, 0) = hashtextextended(%s || %s, 0)"
              " AND {0}dataset = %s AND {0}source_digest = %s")

# Claim every id of ``claim_in`` not in the ledger yet, in id order, and keep where each new row
# is (``claimed_rows``: message id, ctid) so marking finds it without the primary key.
_INSERT = ("WITH ins AS (INSERT INTO ledger (message_id, dataset, variant_key, source_digest, chunk_id, run_id,"
           " claim_token, state) SELECT DISTINCT ON (message_id) message_id, %s, variant_key, %s, %s, %s, %s,"
           " 'claimed' FROM claim_in ORDER BY message_id {} RETURNING message_id, ctid)"
           " INSERT INTO claimed_rows SELECT message_id, ctid FROM ins")
_INSERT_ALL = _INSERT.format("")  # fails on the first id that exists
_INSERT_NEW = _INSERT.format("ON CONFLICT (hashtextextended(dataset || source_digest, 0), message_id) DO NOTHING")

# Marking: the claimed rows by their ctid (a TID scan), checked against id and token. The acks
# meet their ctids first, in a materialized CTE (claimed_rows' primary key tells the planner the
# join gives one row per ack). Joined in one statement, the planner expected a single row out of
# the filtered TID scan and, from about 20k acks on, scanned acks_in again for every claimed row:
# quadratic (20k acks took 25 to 50 s; now 0.2 s, 200k 2.1 s).
_MARK = ("{}UPDATE ledger l SET state = %s, platform = %s, \"partition\" = a.p, \"offset\" = a.o,"
         " in_doubt_platforms = %s, published_at = now() FROM {} WHERE {}"
         " AND l.message_id = a.message_id AND l.claim_token = %s")
_MARK_BY_CTID = _MARK.format("WITH a AS MATERIALIZED (SELECT t.tid, a.message_id, a.p, a.o FROM acks_in a"
                             " JOIN claimed_rows t USING (message_id)) ", "a", "l.ctid = a.tid")
_MARK_BY_ID = _MARK.format("", "acks_in a", _OF_SOURCE.format("l."))


def _single_value(cur: psycopg.Cursor) -> Any:
    """The value of a query that returns exactly one row of one column (an aggregate, a lock)."""
    row = cur.fetchone()
    assert row is not None
    return row[0]


def _copy_text(*columns: pa.Array) -> pa.Buffer:
    """Rows of tab-separated text columns as one buffer for COPY (Arrow's join, no string per row)."""
    lines = pc.binary_join_element_wise(*[part for column in columns for part in (column, "\t")][:-1], "\n", "")
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)
    return lines.buffers()[2][offsets[lines.offset]:offsets[lines.offset + len(lines)]]


class LedgerSession:
    """One chunk attempt's view of the ledger. Use as a context manager."""

    def __init__(self, settings: Settings, *, dataset: str, source_digest: str, source_path: str,
                 chunk_id: str, run_id: str) -> None:
        self.dataset, self.source_digest, self.source_path = dataset, source_digest, source_path
        self.chunk_id, self.run_id = chunk_id, run_id
        self.token = secrets.randbits(62) + 1
        self._claimed_rows = False  # the session's temporary table of claimed rows exists
        self._source = (dataset, source_digest, dataset, source_digest)  # the parameters of _OF_SOURCE
        self.conn = db.connect(settings, autocommit=True)
        try:
            self.conn.execute("SELECT pg_advisory_lock(%s)", (self.token,))
        except psycopg.Error as exc:
            self.conn.close()
            raise LedgerError(f"cannot lock claim token: {exc}") from None

    def __enter__(self) -> LedgerSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Closing the connection releases the token: unpublished claims become takeable."""
        if not self.conn.closed:
            self.conn.close()

    # -- chunk bookkeeping --------------------------------------------------------------
    def chunk_started(self) -> None:
        self._chunk_state("running", None, None)

    def chunk_finished(self, summary: ChunkSummary) -> None:
        self._chunk_state("completed", summary, None)

    def chunk_failed(self, error: str, summary: ChunkSummary | None = None) -> None:
        self._chunk_state("failed", summary, error)

    def _chunk_state(self, state: str, summary: ChunkSummary | None, error: str | None) -> None:
        payload = orjson.dumps(summary.to_dict()).decode() if summary is not None else None
        self._execute(
            "INSERT INTO ledger_chunks (dataset, source_digest, chunk_id, source_path, run_id, state,"
            " summary, error) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (dataset, source_digest, chunk_id) DO UPDATE SET run_id = EXCLUDED.run_id,"
            " state = EXCLUDED.state, summary = COALESCE(EXCLUDED.summary, ledger_chunks.summary),"
            " error = EXCLUDED.error, updated_at = now()",
            (self.dataset, self.source_digest, self.chunk_id, self.source_path, self.run_id, state,
             payload, error),
        )

    # -- claims -------------------------------------------------------------------------
    def claim(self, message_ids: Sequence[bytes], variant_keys: Sequence[str]) -> Claim:
        """Claim the batch; return which messages this attempt must publish."""
        if not message_ids:
            return Claim([], 0, 0)
        # Rows carry their index in the batch and PostgreSQL answers with indexes (one int
        # array), so no UUID object is made per row on this side. Only keys can hold a backslash
        # or CR (never TAB or LF: records are TAB-split lines).
        n = len(message_ids)
        keys = pc.replace_substring(pc.replace_substring(pa.array(variant_keys, pa.string()), "\\", "\\\\"),
                                    "\r", "\\r")
        buffer = _copy_text(pa.array(np.arange(n)).cast(pa.string()), hex_ids(message_ids), keys)
        params = (self.dataset, self.source_digest, self.chunk_id, self.run_id, self.token)
        try:
            with self.conn.transaction():
                cur = self.conn.cursor()
                cur.execute("CREATE TEMP TABLE claim_in (i integer, message_id uuid, variant_key text) ON COMMIT DROP")
                with cur.copy("COPY claim_in FROM STDIN") as copy:
                    copy.write(buffer)
                if self._claimed_rows:
                    cur.execute("TRUNCATE claimed_rows")
                else:
                    cur.execute("CREATE TEMP TABLE IF NOT EXISTS claimed_rows (message_id uuid PRIMARY KEY, tid tid)")
                    self._claimed_rows = True
                # A plain INSERT first: when every id is new (a file's first ingest) it skips ON
                # CONFLICT's speculative insertion (~2.5 us of server CPU per row); an id that
                # exists (or is being claimed by a concurrent attempt, once that commits) undoes
                # it at that row, and the ON CONFLICT insert runs instead.
                try:
                    with self.conn.transaction():
                        cur.execute(_INSERT_ALL, params)
                except psycopg.errors.UniqueViolation:
                    cur.execute(_INSERT_NEW, params)
                if cur.rowcount == n:  # every id new and none repeated (the usual first ingest)
                    return Claim(list(range(n)), 0, 0)
                # Ours now: the rows this transaction inserted.
                cur.execute(_FIRST_INDEXES.format("claimed_rows", ""))
                mine = set(_single_value(cur) or ())
                taken = self._take_over_dead_claims(cur)
        except psycopg.Error as exc:
            raise LedgerError(f"claiming {n} messages of chunk {self.chunk_id}: {exc}") from None
        to_publish = sorted(mine | taken)
        return Claim(to_publish, n - len(to_publish), len(taken))

    def _take_over_dead_claims(self, cur: psycopg.Cursor) -> set[int]:
        """Batch indexes of rows whose claimant is gone, now claimed by this attempt."""
        cur.execute(
            "SELECT DISTINCT l.claim_token FROM ledger l JOIN claim_in c USING (message_id)"
            f" WHERE {_OF_SOURCE.format('l.')} AND l.state IN ('claimed', 'failed') AND l.claim_token <> %s",
            (*self._source, self.token),
        )
        taken: set[int] = set()
        for (other,) in cur.fetchall():
            cur.execute("SELECT pg_try_advisory_lock(%s)", (other,))
            if not _single_value(cur):
                continue  # its attempt is alive and will publish them
            try:
                cur.execute(
                    "WITH taken AS (UPDATE ledger l SET claim_token = %s, run_id = %s, chunk_id = %s,"
                    " state = 'claimed', error = NULL, claimed_at = now() FROM claim_in c"
                    f" WHERE l.message_id = c.message_id AND {_OF_SOURCE.format('l.')} AND l.claim_token = %s"
                    " AND l.state IN ('claimed', 'failed') RETURNING l.message_id, l.ctid),"
                    " kept AS (INSERT INTO claimed_rows SELECT message_id, ctid FROM taken)"
                    f" {_FIRST_INDEXES.format('taken', '')}",
                    (self.token, self.run_id, self.chunk_id, *self._source, other),
                )
                taken.update(_single_value(cur) or ())
            finally:
                cur.execute("SELECT pg_advisory_unlock(%s)", (other,))
        return taken

    def mark_published(self, acks: Acks, *, in_doubt_platforms: Sequence[str] = ()) -> None:
        """Record delivery; with ``in_doubt_platforms`` the rows say the message may be on each."""
        if not len(acks):
            return
        buffer = _copy_text(hex_ids(acks.message_ids), pa.array(acks.partitions, pa.int64()).cast(pa.string()),
                            pa.array(acks.offsets, pa.int64()).cast(pa.string()))
        state = "in_doubt" if in_doubt_platforms else "published"
        platforms = sorted({*in_doubt_platforms, acks.platform}) if in_doubt_platforms else None
        try:
            with self.conn.transaction():
                cur = self.conn.cursor()
                cur.execute("CREATE TEMP TABLE acks_in (message_id uuid, p integer, o bigint) ON COMMIT DROP")
                with cur.copy("COPY acks_in FROM STDIN") as copy:
                    copy.write(buffer)
                params = (state, acks.platform, platforms, self.token)
                if self._claimed_rows:
                    cur.execute(_MARK_BY_CTID, params)
                if not self._claimed_rows or cur.rowcount != len(acks):  # rows not of the last claim
                    cur.execute(_MARK_BY_ID, (state, acks.platform, platforms, *self._source, self.token))
                if cur.rowcount != len(acks):
                    raise LedgerError(f"chunk {self.chunk_id}: {len(acks)} acknowledgements but "
                                      f"{cur.rowcount} ledger rows held by this attempt")
        except psycopg.Error as exc:
            raise LedgerError(f"recording {len(acks)} deliveries of chunk {self.chunk_id}: {exc}") from None

    def mark_failed(self, message_ids: Sequence[bytes], error: str) -> None:
        if not message_ids:
            return
        self._execute(
            f"UPDATE ledger SET state = 'failed', error = %s WHERE message_id = ANY(%s) AND {_OF_SOURCE.format('')}"
            " AND claim_token = %s",
            (error[:2000], [db_uuid(m) for m in message_ids], *self._source, self.token),
        )

    # -- dead letters -------------------------------------------------------------------
    def record_dead_letters(self, rows: Sequence[Quarantined]) -> int:
        """Store quarantined records; returns how many were new."""
        if not rows:
            return 0
        params = [
            (self.dataset, r.path, self.source_digest, self.chunk_id, r.line, r.rule, r.message,
             r.raw.replace("\x00", "\ufffd"), hashlib.blake2b(r.raw.encode(), digest_size=16).digest(),
             self.run_id)
            for r in rows
        ]
        try:
            with self.conn.transaction():
                cur = self.conn.cursor()
                cur.executemany(
                    "INSERT INTO dead_letters (dataset, source_path, source_digest, chunk_id, line, rule,"
                    " message, raw, record_hash, run_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (dataset, source_digest, record_hash, rule) DO NOTHING",
                    params,
                )
                return max(cur.rowcount, 0)
        except psycopg.Error as exc:
            raise LedgerError(f"recording {len(rows)} dead letters of chunk {self.chunk_id}: {exc}") from None

    def _execute(self, sql: str, params: tuple[object, ...]) -> None:
        try:
            self.conn.execute(sql, params)
        except psycopg.Error as exc:
            raise LedgerError(f"chunk {self.chunk_id}: {exc}") from None


def db_uuid(message_id: bytes) -> str:
    return message_id.hex()


def published_ids(settings: Settings, dataset: str) -> dict[bytes, tuple[str, list[str] | None]]:
    """Every id the ledger says is on a broker: id -> (state, in-doubt platforms)."""
    with db.connect(settings) as conn:
        cur = conn.execute(
            "SELECT message_id, state, in_doubt_platforms, platform FROM ledger"
            " WHERE dataset = %s AND state IN ('published', 'in_doubt')",
            (dataset,),
        )
        return {row[0].bytes: (row[3], row[2]) for row in cur}
