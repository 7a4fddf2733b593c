"""The PostgreSQL dedup ledger: decides which messages are new, records where each went.

A ``LedgerSession`` lives for one chunk attempt on one connection. It holds a session-level
advisory lock on a random ``claim_token``; rows it claims carry that token. Another attempt
finding rows claimed but never published takes them over only if it can take the token's lock,
i.e. only when the claimant's connection is gone (crashed, killed, failed and closed). So:
- two runs of one file at once: the second waits on the first's uncommitted claim inserts,
  then sees them claimed by a live attempt and leaves them: each message is published once;
- a crashed or failed chunk: its retry takes over the unpublished rows and publishes them.

In doubt stays in doubt. A row may hold a copy on a platform without the ledger holding its
acknowledgement: the attempt failed in doubt (``mark_failed`` with ``in_doubt_platforms``), or it
died, or lost its lock, after it may have sent the batch (its rows are still ``claimed``: claims
are made batch by batch right before the batch is published, so these are only the batch in
flight). Marks are exact: the attempt records in ``ledger_attempts`` the platforms that may hold
its batch in flight (``sending``, called by the router before each platform is handed the batch;
a claim clears them), and a takeover marks its unmarked rows in doubt on those platforms only:
none if the batch was never handed to one. Such a row keeps ``in_doubt_platforms`` (every
platform that may hold it) and counts ``in_doubt_copies`` (attempts that may have left a copy)
through failure, takeover and retry, and ends ``in_doubt``, not ``published``, once an attempt
publishes it. ``verify`` explains copies by these marks. The lock of an attempt is gone when its connection is (a PostgreSQL restart too), so
a publisher checks it holds its claim (``check_claim``) before each batch and before marking.

Claiming is one COPY into a temporary table plus one INSERT per batch (a plain one, and when an
id exists ``INSERT ... ON CONFLICT DO NOTHING`` instead), never a query per variant; when some
ids already existed (or repeat in the batch), the INSERT answers which rows it made and one more
query takes over dead claims. Rows are inserted in id order, so two claimers of overlapping
batches lock rows in the same order and cannot deadlock. The unique key is (hash of dataset and
source digest, message id): one ingest's rows share a range of its index.

A row is written once (migration 019). A claimed batch whose ids were all new gets a batch number
(each row keeps it); when one platform acknowledges the whole batch with nothing in doubt,
marking is one row of ``ledger_deliveries`` with every message's id, partition and offset, and
the rows stay ``claimed``. Any other marking (in doubt, rows taken over or
claimed among existing ones) updates the rows, which leave ``claimed``. So a row is published
when its state says so or when it is ``claimed`` and its batch was delivered: the view
``ledger_state`` is that reading (``ledger_offsets``: where each message went), and readers
(verify, retention) use it; updates here test ``_PUBLISHED``. A takeover leaves a delivered
batch alone, and never misses a delivery: the claimant inserts it while it holds its token's
lock, which the takeover must take first.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Self

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


# The first batch index of each id of ``claim_in`` ({}: a join that keeps only some, e.g. the
# rows a CTE made), as one int array (NULL when none): a record repeated in a batch is sent once.
_FIRST_INDEXES = "SELECT array_agg(i) FROM (SELECT min(c.i) AS i FROM claim_in c {} GROUP BY c.message_id) first"

# The ledger's unique key (migration 007): a hash of dataset and source digest, then the message
# id. A query that looks rows up by id names them too, in this form, so the key's index serves it.
_OF_SOURCE = ("hashtextextended({0}dataset || {0}source_digest, 0) = hashtextextended(%s || %s, 0)"
              " AND {0}dataset = %s AND {0}source_digest = %s")

# Claim every id of ``claim_in`` not in the ledger yet, in id order, each row with the batch number.
_INSERT = ("INSERT INTO ledger (message_id, dataset, variant_key, source_digest, chunk_id, run_id, claim_token,"
           " state, batch) SELECT DISTINCT ON (message_id) message_id, %s, variant_key, %s, %s, %s, %s,"
           " 'claimed', %s FROM claim_in ORDER BY message_id")
# The same, skipping ids that exist; answers the first batch index of each row it made.
_INSERT_NEW = ("WITH ins AS (" + _INSERT + " ON CONFLICT (hashtextextended(dataset || source_digest, 0), message_id)"
               " DO NOTHING RETURNING message_id) " + _FIRST_INDEXES.format("JOIN ins USING (message_id)"))
# The first batch index of each distinct id (a batch that repeats an id, all new).
_DISTINCT_INDEXES = _FIRST_INDEXES.format("")

# A row of a batch claimed all new and then acknowledged by one platform, nothing in doubt
# (``{0}``: the ledger's alias and a dot): published, although its state says ``claimed``.
_DELIVERED = ("({0}state = 'claimed' AND {0}batch IS NOT NULL"
              " AND EXISTS (SELECT 1 FROM ledger_deliveries d WHERE d.batch = {0}batch))")
# A published row, whichever way it was marked.
_PUBLISHED = "({0}state IN ('published', 'in_doubt') OR " + _DELIVERED + ")"

# An attempt's own platforms and the ones an in-doubt publish names, merged into a row's marks
# (sorted, no repeats). ``{0}``: the parameter holding the text[] to add.
_MERGED_PLATFORMS = "ARRAY(SELECT DISTINCT x FROM unnest(coalesce(l.in_doubt_platforms, '{{}}') || {0}) x ORDER BY x)"

_OF_SOURCE_NAMED = ("hashtextextended({0}dataset || {0}source_digest, 0) = hashtextextended(%(dataset)s || %(digest)s, 0)"
                    " AND {0}dataset = %(dataset)s AND {0}source_digest = %(digest)s")
# Marking rows one by one (any delivery but a clean one of a batch claimed all new): found by
# id, checked against the token.
_MARK_BY_ID = ("UPDATE ledger l SET state = CASE WHEN l.in_doubt_copies + %(doubt)s > 0 THEN 'in_doubt' ELSE 'published' END,"
               ' platform = %(platform)s, "partition" = a.p, "offset" = a.o, published_at = now(),'
               " in_doubt_copies = l.in_doubt_copies + %(doubt)s,"
               " in_doubt_platforms = CASE WHEN l.in_doubt_copies + %(doubt)s > 0 THEN "
               + _MERGED_PLATFORMS.format("%(platforms)s::text[]") + " END"
               " FROM acks_in a WHERE " + _OF_SOURCE_NAMED.format("l.")
               + " AND l.message_id = a.message_id AND l.claim_token = %(token)s")

# The key of a per-dataset advisory lock: hashtextextended of the name, xor a constant of the
# lock's own (parameters: dataset, salt). The dataset lock: chunk attempts share it, dropping
# the dataset's ledger takes it alone.
DATASET_LOCK_KEY = "hashtextextended(%s, 0) # %s"
DATASET_LOCK_SALT = 0x7663_6673_6461_7461  # "vcfsdata"


def _single_value(cur: psycopg.Cursor) -> Any:
    """The value of a query that returns exactly one row of one column (an aggregate, a lock)."""
    row = cur.fetchone()
    assert row is not None
    return row[0]


class ClaimLost(LedgerError):
    """This attempt no longer holds its claim token's lock (its connection to PostgreSQL broke, or
    PostgreSQL restarted): another attempt may be taking its rows over, so it must stop."""


def _copy_text(*columns: pa.Array) -> pa.Buffer:
    """Rows of tab-separated text columns as one buffer for COPY (Arrow's join, no string per row)."""
    lines = pc.binary_join_element_wise(*[part for column in columns for part in (column, "\t")][:-1], "\n", "")
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)
    return lines.buffers()[2][offsets[lines.offset]:offsets[lines.offset + len(lines)]]


def _array_text(values: pa.Array) -> str:
    """A PostgreSQL array literal of numbers or hex ids (nothing to quote), joined by Arrow: psycopg
    adapts a list element by element (16 ms for 10k ids; this, 3 ms)."""
    text = values.cast(pa.string())
    return "{" + pc.binary_join(pa.ListArray.from_arrays(pa.array([0, len(text)], pa.int32()), text), ",")[0].as_py() + "}"


class _LockHolder:
    """A connection of its own that holds a session-level advisory lock until it is closed."""

    conn: psycopg.Connection

    def _connect_locked(self, settings: Settings, lock: str, params: tuple[object, ...], what: str) -> None:
        self.conn = db.connect(settings, autocommit=True)
        try:
            self.conn.execute(f"SELECT pg_advisory_lock({lock})", params)
        except psycopg.Error as exc:
            self.conn.close()
            raise LedgerError(f"cannot take {what}: {exc}") from None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Closing the connection releases the lock."""
        if not self.conn.closed:
            self.conn.close()


class LedgerSession(_LockHolder):
    """One chunk attempt's view of the ledger. Use as a context manager."""

    def __init__(self, settings: Settings, *, dataset: str, source_digest: str, source_path: str,
                 chunk_id: str, run_id: str) -> None:
        self.dataset, self.source_digest, self.source_path = dataset, source_digest, source_path
        self.chunk_id, self.run_id = chunk_id, run_id
        self.token = secrets.randbits(62) + 1
        # The batch claimed last, if all its ids were new: (batch number, ids), for marking it
        # delivered in one row.
        self._fresh: tuple[int, Sequence[bytes]] | None = None
        self._source = (dataset, source_digest, dataset, source_digest)  # the parameters of _OF_SOURCE
        self._in_flight: list[str] = []  # platforms that may hold the batch claimed last
        # Closing the connection releases the token: unpublished claims become takeable.
        self._connect_locked(settings, "%s", (self.token,), "the claim token's lock")
        try:
            # A share of the dataset's lock: ``drop_ledger`` (exclusive) waits for no attempt
            # and this one waits for a drop in progress.
            self._execute(f"SELECT pg_advisory_lock_shared({DATASET_LOCK_KEY})", (dataset, DATASET_LOCK_SALT))
            self._execute("INSERT INTO ledger_attempts (claim_token, platforms) VALUES (%s, '{}')", (self.token,))
        except LedgerError:
            self.close()
            raise

    def sending(self, platforms: Sequence[str]) -> None:
        """The batch claimed last is being handed to a platform, after which ``platforms`` may hold
        it: if this attempt dies before it is marked, a takeover marks its rows in doubt there.
        Recorded (autocommit) before the batch is sent."""
        wanted = sorted(set(platforms))
        if wanted == self._in_flight:
            return
        self._execute("UPDATE ledger_attempts SET platforms = %s WHERE claim_token = %s", (wanted, self.token))
        self._in_flight = wanted

    def check_claim(self) -> None:
        """Raise ``ClaimLost`` unless this attempt still holds its token's lock (and so its claims)."""
        try:
            held = self.conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted"
                " AND objsubid = 1 AND classid = %s::bigint::oid AND objid = %s::bigint::oid",
                (self.token >> 32, self.token & 0xFFFF_FFFF)).fetchone()
        except psycopg.Error as exc:
            raise ClaimLost(f"chunk {self.chunk_id}: lost the ledger connection, and with it the claim: {exc}") from None
        if not held or not held[0]:
            raise ClaimLost(f"chunk {self.chunk_id}: the claim token's lock is gone (PostgreSQL restarted?)")

    # -- chunk bookkeeping --------------------------------------------------------------
    def chunk_started(self) -> None:
        self._chunk_state("running", None, None)

    def chunk_finished(self, summary: ChunkSummary) -> None:
        self._chunk_state("completed", summary, None)
        # Every row it claimed is marked: no takeover will need to know its platforms.
        self._execute("DELETE FROM ledger_attempts WHERE claim_token = %s", (self.token,))

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
        self._fresh = None
        if not message_ids:
            return Claim([], 0, 0)
        # Rows carry their index in the batch and PostgreSQL answers with indexes (one int
        # array), so no UUID object is made per row on this side. Only keys can hold a backslash
        # or CR (never TAB or LF: records are TAB-split lines).
        n = len(message_ids)
        keys = pc.replace_substring(pc.replace_substring(pa.array(variant_keys, pa.string()), "\\", "\\\\"),
                                    "\r", "\\r")
        buffer = _copy_text(pa.array(np.arange(n)).cast(pa.string()), hex_ids(message_ids), keys)
        try:
            with self.conn.transaction():
                cur = self.conn.cursor()
                batch = _single_value(cur.execute("SELECT nextval('ledger_batches')"))
                params = (self.dataset, self.source_digest, self.chunk_id, self.run_id, self.token, batch)
                cur.execute("CREATE TEMP TABLE claim_in (i integer, message_id uuid, variant_key text) ON COMMIT DROP")
                with cur.copy("COPY claim_in FROM STDIN") as copy:
                    copy.write(buffer)
                if self._in_flight:  # the batch before is marked; this one is handed to no platform yet
                    cur.execute("UPDATE ledger_attempts SET platforms = '{}' WHERE claim_token = %s", (self.token,))
                    self._in_flight = []  # rolled back with the claim, whose rows then do not exist
                # A plain INSERT first: when every id is new (a file's first ingest) it skips ON
                # CONFLICT's speculative insertion (~2.5 us of server CPU per row); an id that
                # exists (or is being claimed by a concurrent attempt, once that commits) undoes
                # it at that row, and the ON CONFLICT insert runs instead.
                try:
                    with self.conn.transaction():
                        cur.execute(_INSERT, params)  # fails on the first id that exists
                    if cur.rowcount == n:  # every id new and none repeated (the usual first ingest)
                        self._fresh = (batch, message_ids)
                        return Claim(list(range(n)), 0, 0)
                    cur.execute(_DISTINCT_INDEXES)  # all new, some repeated in the batch
                except psycopg.errors.UniqueViolation:
                    cur.execute(_INSERT_NEW, params)
                mine = set(_single_value(cur) or ())
                taken = self._take_over_dead_claims(cur)
        except psycopg.Error as exc:
            raise LedgerError(f"claiming {n} messages of chunk {self.chunk_id}: {exc}") from None
        to_publish = sorted(mine | taken)
        return Claim(to_publish, n - len(to_publish), len(taken))

    def _take_over_dead_claims(self, cur: psycopg.Cursor) -> set[int]:
        """Batch indexes of rows whose claimant is gone, now claimed by this attempt."""
        unpublished = (f"{_OF_SOURCE.format('l.')} AND l.state IN ('claimed', 'failed')"
                       f" AND NOT {_DELIVERED.format('l.')}")
        cur.execute(
            f"SELECT DISTINCT l.claim_token FROM ledger l JOIN claim_in c USING (message_id) WHERE {unpublished}"
            " AND l.claim_token <> %s",
            (*self._source, self.token),
        )
        taken: set[int] = set()
        for (other,) in cur.fetchall():
            cur.execute("SELECT pg_try_advisory_lock(%s)", (other,))
            if not _single_value(cur):
                continue  # its attempt is alive and will publish them
            try:
                # Rows still 'claimed' by a dead attempt may have been sent (it died, or lost its
                # lock, between its claim and its mark): in doubt on the platforms it had handed
                # them to (``sending``; both when it has no ledger_attempts row, from before there
                # was one). They leave their batch: they are marked one by one from now on.
                cur.execute(
                    "WITH dead AS (SELECT coalesce((SELECT platforms FROM ledger_attempts WHERE claim_token = %s),"
                    " ARRAY['iggy', 'kafka']) AS platforms),"
                    " taken AS (UPDATE ledger l SET claim_token = %s, run_id = %s, chunk_id = %s,"
                    " state = 'claimed', error = NULL, claimed_at = now(), batch = NULL,"
                    " in_doubt_copies = l.in_doubt_copies + (l.state = 'claimed' AND cardinality(dead.platforms) > 0)::int,"
                    " in_doubt_platforms = CASE WHEN l.state = 'claimed' AND cardinality(dead.platforms) > 0 THEN "
                    + _MERGED_PLATFORMS.format("dead.platforms") + " ELSE l.in_doubt_platforms END"
                    f" FROM claim_in c, dead WHERE l.message_id = c.message_id AND {unpublished}"
                    " AND l.claim_token = %s RETURNING l.message_id)"
                    f" {_FIRST_INDEXES.format('JOIN taken USING (message_id)')}",
                    (other, self.token, self.run_id, self.chunk_id, *self._source, other),
                )
                taken.update(_single_value(cur) or ())
            finally:
                cur.execute("SELECT pg_advisory_unlock(%s)", (other,))
        return taken

    def mark_published(self, acks: Acks, *, in_doubt_platforms: Sequence[str] = ()) -> None:
        """Record delivery. ``in_doubt_platforms`` (from routing: the platforms an in-doubt attempt
        failed on, and the one that acknowledged) adds one in-doubt copy per failed platform; a row
        in doubt from before stays in doubt, its acknowledging platform added to its marks.

        The batch claimed last, all new, acknowledged whole with nothing in doubt: one row of
        ``ledger_deliveries``. Anything else: each row updated."""
        if not len(acks):
            return
        doubted = sorted({*in_doubt_platforms} - {acks.platform})
        fresh, self._fresh = self._fresh, None
        self.check_claim()  # and the rows must still carry our token (checked as they are marked)
        if fresh is not None and not doubted and list(acks.message_ids) == list(fresh[1]):
            self._execute(
                "INSERT INTO ledger_deliveries (batch, dataset, source_digest, claim_token, platform, message_ids,"
                " partitions, offsets) VALUES (%s, %s, %s, %s, %s, %s::uuid[], %s::integer[], %s::bigint[])",
                (fresh[0], self.dataset, self.source_digest, self.token, acks.platform,
                 _array_text(hex_ids(acks.message_ids)), _array_text(pa.array(acks.partitions, pa.int32())),
                 _array_text(pa.array(acks.offsets, pa.int64()))))
            return
        buffer = _copy_text(hex_ids(acks.message_ids), pa.array(acks.partitions, pa.int64()).cast(pa.string()),
                            pa.array(acks.offsets, pa.int64()).cast(pa.string()))
        params = {"doubt": len(doubted), "platform": acks.platform, "platforms": sorted({*doubted, acks.platform}),
                  "token": self.token, "dataset": self.dataset, "digest": self.source_digest}
        try:
            with self.conn.transaction():
                cur = self.conn.cursor()
                cur.execute("CREATE TEMP TABLE acks_in (message_id uuid, p integer, o bigint) ON COMMIT DROP")
                with cur.copy("COPY acks_in FROM STDIN") as copy:
                    copy.write(buffer)
                cur.execute(_MARK_BY_ID, params)
                if cur.rowcount != len(acks):
                    raise ClaimLost(f"chunk {self.chunk_id}: {len(acks)} acknowledgements but "
                                    f"{cur.rowcount} ledger rows held by this attempt")
        except psycopg.Error as exc:
            raise LedgerError(f"recording {len(acks)} deliveries of chunk {self.chunk_id}: {exc}") from None

    def mark_failed(self, message_ids: Sequence[bytes], error: str, *, in_doubt_platforms: Sequence[str] = ()) -> None:
        """The batch was published nowhere; with ``in_doubt_platforms`` it may be on each of them
        (one more in-doubt copy), which its retry keeps."""
        if not message_ids:
            return
        self._execute(
            "UPDATE ledger l SET state = 'failed', error = %s,"
            " in_doubt_copies = l.in_doubt_copies + %s, in_doubt_platforms = CASE WHEN %s THEN "
            + _MERGED_PLATFORMS.format("%s::text[]") + " ELSE l.in_doubt_platforms END"
            f" WHERE message_id = ANY(%s) AND {_OF_SOURCE.format('l.')} AND claim_token = %s",
            (error[:2000], int(bool(in_doubt_platforms)), bool(in_doubt_platforms), sorted(in_doubt_platforms),
             [db_uuid(m) for m in message_ids], *self._source, self.token),
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


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """What the ledger says of one message id, for ``vcfstream verify``."""

    state: str  # claimed, published, in_doubt, failed
    platform: str | None  # the platform that acknowledged it (published, in_doubt)
    in_doubt_platforms: tuple[str, ...]  # every platform that may hold a copy the ledger has no ack for
    in_doubt_copies: int  # how many such copies there may be
    published_at: float | None  # epoch seconds of the acknowledgement (or of its repair)
    source_digest: str
    chunk_id: str

    @property
    def published(self) -> bool:
        return self.state in ("published", "in_doubt")


def ledger_entries(settings: Settings, dataset: str) -> dict[bytes, LedgerEntry]:
    """Every row of the dataset: id -> ``LedgerEntry``.

    Rows of one batch read alike (state, platform, time, file, chunk), so they share one entry
    object: the dict holds an id and a reference per row (about 150 bytes), not a row's strings.
    The rows come through a server-side cursor, never the whole result at once."""
    shared: dict[tuple[Any, ...], LedgerEntry] = {}
    entries: dict[bytes, LedgerEntry] = {}
    with db.connect(settings) as conn, conn.cursor(name="ledger_entries") as cur:
        cur.itersize = 20_000
        conn.execute("SET LOCAL cursor_tuple_fraction = 1")  # plan for every row, as a plain query is
        cur.execute(
            # A row marked in_doubt before in_doubt_copies was counted had one in-doubt copy.
            "SELECT uuid_send(message_id), state, platform, in_doubt_platforms,"
            " greatest(in_doubt_copies, (state = 'in_doubt' AND in_doubt_platforms IS NOT NULL)::int),"
            " extract(epoch FROM published_at)::float8, source_digest, chunk_id FROM ledger_state WHERE dataset = %s",
            (dataset,),
        )
        for message_id, state, platform, in_doubt, copies, published_at, digest, chunk_id in cur:
            fields = (state, platform, tuple(in_doubt or ()), copies, published_at, digest, chunk_id)
            entry = shared.get(fields)
            if entry is None:
                entry = shared[fields] = LedgerEntry(*fields)
            entries[message_id] = entry
    return entries


@dataclass(frozen=True, slots=True)
class SourceOfChunks:
    """Where the ledger says a dataset's rows of one file came from."""

    source_digest: str
    source_path: str
    chunk_ids: frozenset[str]


def sources_of(settings: Settings, dataset: str, digests: Sequence[str]) -> dict[str, SourceOfChunks]:
    """digest -> the file's path (as its latest chunk attempt recorded it) and its chunk ids."""
    with db.connect(settings) as conn:
        rows = conn.execute(
            "SELECT source_digest, source_path, chunk_id FROM ledger_chunks WHERE dataset = %s"
            " AND source_digest = ANY(%s) ORDER BY updated_at",
            (dataset, list(digests)),
        ).fetchall()
    paths: dict[str, str] = {}
    chunks: dict[str, set[str]] = {}
    for digest, path, chunk_id in rows:
        paths[digest] = path  # the latest wins
        chunks.setdefault(digest, set()).add(chunk_id)
    return {digest: SourceOfChunks(digest, paths[digest], frozenset(chunks[digest])) for digest in paths}


# One lock per dataset for repairs (hashtextextended of the name, xor a constant of our own):
# two repairs of a dataset take turns, so each republishes what the other left missing only.
REPAIR_LOCK_SALT = 0x7663_6673_7265_7061  # "vcfsrepa"


class RepairSession(_LockHolder):
    """The ledger side of ``vcfstream verify --repair``: the dataset's repair lock, and marking
    republished rows. Ingests never touch a published row, so a repair runs beside them safely."""

    def __init__(self, settings: Settings, dataset: str) -> None:
        self.dataset = dataset
        self._connect_locked(settings, DATASET_LOCK_KEY, (dataset, REPAIR_LOCK_SALT),
                             f"the repair lock of dataset {dataset}")

    def mark_repaired(self, source_digest: str, acks: Acks, *, in_doubt_platforms: Sequence[str] = ()) -> int:
        """Point the published rows of ``acks`` at their new copy; returns the rows marked."""
        if not len(acks):
            return 0
        doubted = sorted({*in_doubt_platforms} - {acks.platform})
        params = {"doubt": len(doubted), "platform": acks.platform, "platforms": sorted({*doubted, acks.platform}),
                  "dataset": self.dataset, "digest": source_digest,
                  "ids": [db_uuid(m) for m in acks.message_ids], "partitions": list(acks.partitions),
                  "offsets": list(acks.offsets)}
        try:
            cur = self.conn.execute(
                "UPDATE ledger l SET state = CASE WHEN l.state = 'in_doubt' OR %(doubt)s > 0 THEN 'in_doubt'"
                " ELSE 'published' END, platform = %(platform)s, \"partition\" = a.p, \"offset\" = a.o,"
                " published_at = now(), repaired_at = now(), in_doubt_copies = l.in_doubt_copies + %(doubt)s,"
                " in_doubt_platforms = CASE WHEN l.state = 'in_doubt' OR %(doubt)s > 0 THEN "
                + _MERGED_PLATFORMS.format("%(platforms)s::text[]") + " END"
                " FROM unnest(%(ids)s::uuid[], %(partitions)s::int[], %(offsets)s::bigint[]) a(message_id, p, o)"
                f" WHERE {_OF_SOURCE_NAMED.format('l.')} AND l.message_id = a.message_id"
                f" AND {_PUBLISHED.format('l.')}",
                params,
            )
            return max(cur.rowcount, 0)
        except psycopg.Error as exc:
            raise LedgerError(f"recording {len(acks)} repaired deliveries of dataset {self.dataset}: {exc}") from None

    def mark_repair_in_doubt(self, source_digest: str, message_ids: Sequence[bytes], platforms: Sequence[str]) -> None:
        """A republish failed in doubt: the rows may now have one more copy on ``platforms``."""
        if not message_ids or not platforms:
            return
        try:
            self.conn.execute(
                "UPDATE ledger l SET state = 'in_doubt', in_doubt_copies = l.in_doubt_copies + 1,"
                " in_doubt_platforms = " + _MERGED_PLATFORMS.format("%(platforms)s::text[]")
                + f" WHERE {_OF_SOURCE_NAMED.format('l.')} AND l.message_id = ANY(%(ids)s::uuid[])"
                f" AND {_PUBLISHED.format('l.')}",
                {"platforms": sorted(platforms), "dataset": self.dataset, "digest": source_digest,
                 "ids": [db_uuid(m) for m in message_ids]},
            )
        except psycopg.Error as exc:
            raise LedgerError(f"marking {len(message_ids)} repaired messages of {self.dataset} in doubt: {exc}") from None
