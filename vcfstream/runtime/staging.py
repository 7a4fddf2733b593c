"""Staged chunks: what the chunk tasks leave for the store tasks, and which stores wrote what.

A chunk task writes its alleles to ``<home>/staging/<flow run>/`` (Arrow IPC + the genotype
matrices as ``.npz``) and returns the path, so store tasks get a path, not records.

Store writes are grouped: a store writes the chunks of one file queued for it as one batch
once they reach ``settings.stores.batch_alleles`` alleles, or once no chunk of that file is
still to finish. Every write has a fixed cost (Kuzu opens the database, merges its whole
primary-key index and checkpoints; LanceDB commits a version and checks its indexes; the
catalog runs its statements), and in Kuzu and LanceDB part of it grows with what they hold, so
few large writes are what keeps them cheap. Writing each chunk as soon as a store was free
cost Kuzu 1 to 2 s per 50k-allele chunk (measured: 20 writes per 1M alleles). Chunks run on
while a group is written; they wait only once a store has two groups queued. Each finished
group is appended to ``stored/<store>.jsonl`` next to the staged files; a retried flow run
(same run id, same staging directory) skips what is listed there and reports its counts, so
only the missing store writes are redone. A store whose write failed after its retries is
``abandon``-ed for the rest of the run.

Example:
    >>> queue = StoreQueue(["catalog", "kuzu"], stage_dir, batch_alleles=250_000)  # doctest: +SKIP
    >>> queue.expect(digest, chunks=20)  # doctest: +SKIP
    >>> queue.add(Staged(path, alleles=50_000, source=digest))  # doctest: +SKIP
    >>> queue.take("kuzu")  # not yet: 50k of 250k queued, 19 chunks of the file to come
    []
    >>> group = queue.take("kuzu")  # later: queued chunks of that file, up to 250k alleles
    >>> queue.finish("kuzu", group, written=48_000)
"""

from __future__ import annotations

import os
import threading
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.ipc as ipc

from vcfstream.model import ALLELE_SCHEMA, AlleleBatch, Chunk


def stage_batch(batch: AlleleBatch, stage_dir: Path, chunk: Chunk, *, csq_fields: list[str] | None = None) -> str:
    """Write the batch as Arrow IPC (+ genotype matrices) so store tasks get a path, not records.

    ``csq_fields``: the file header's VEP CSQ field order, which the graph store needs to read CSQ.
    """
    stage_dir.mkdir(parents=True, exist_ok=True)
    path = stage_dir / f"{chunk.digest[:16]}-{chunk.index:05d}.arrow"
    meta = {b"dataset": batch.dataset.encode(), b"source_path": batch.source_path.encode(),
            b"source_digest": batch.source_digest.encode(), b"samples": "\t".join(batch.samples).encode()}
    if csq_fields:
        meta[b"csq_fields"] = "|".join(csq_fields).encode()
    table = batch.table.drop_columns(["value"]).replace_schema_metadata(meta)
    with ipc.new_file(str(path), table.schema) as writer:
        writer.write_table(table)
    np.savez(path.with_suffix(".npz"), gt=batch.gt, phased=batch.phased, dp=batch.dp, gq=batch.gq)
    return str(path)


def load_staged(path: str) -> tuple[AlleleBatch, list[str] | None]:
    """The inverse of ``stage_batch``: the batch (without the ``value`` column: stores don't need
    it) and the CSQ field order kept with it, or None."""
    with pa.memory_map(path) as source, ipc.open_file(source) as reader:
        table = reader.read_all()  # no copy: the buffers map the file
    meta = table.schema.metadata or {}
    samples_text = meta.get(b"samples", b"").decode()
    arrays = np.load(Path(path).with_suffix(".npz"))
    table = table.append_column("value", pa.nulls(table.num_rows, pa.binary())).cast(ALLELE_SCHEMA)
    batch = AlleleBatch(meta[b"dataset"].decode(), meta[b"source_path"].decode(), meta[b"source_digest"].decode(),
                        samples_text.split("\t") if samples_text else [], table,
                        arrays["gt"], arrays["phased"], arrays["dp"], arrays["gq"])
    csq = meta.get(b"csq_fields")
    return batch, csq.decode().split("|") if csq else None


def load_group(paths: Sequence[str]) -> tuple[AlleleBatch, list[str] | None]:
    """Staged chunks of one file as one batch, in the given order.

    The store tasks of a flow usually write the same groups, so the last few loaded groups are
    kept, keyed by path, size and mtime of every file: each group is read, concatenated and
    de-duplicated by key (``AlleleBatch.first_rows``) once, not once per store, and concurrent
    callers wait for the one load. Stores never modify a batch in place.
    """
    key = tuple((path, *_stamp(path)) for path in paths)
    with _groups_lock:
        slot = _groups.get(key)
        owner = slot is None
        if slot is None:
            slot = _groups[key] = _Slot()
            while len(_groups) > _GROUPS_KEPT:
                _groups.popitem(last=False)
        else:
            _groups.move_to_end(key)
    if owner:
        try:
            batch, csq_fields = _read_group(paths)
            batch.first_rows()
            slot.value = batch, csq_fields
        except BaseException:
            with _groups_lock:
                if _groups.get(key) is slot:
                    del _groups[key]
            raise
        finally:
            slot.ready.set()
    slot.ready.wait()
    if slot.value is None:  # the owner's load failed and raised there: load it here
        return _read_group(paths)
    return slot.value


@dataclass
class _Slot:
    ready: threading.Event = field(default_factory=threading.Event)
    value: tuple[AlleleBatch, list[str] | None] | None = None


_GROUPS_KEPT = 3  # a group per store task running at once
_groups: OrderedDict[tuple[tuple[str, int, int], ...], _Slot] = OrderedDict()
_groups_lock = threading.Lock()


def forget_groups() -> None:
    """Drop the kept groups (the flow calls this when its store writes are done)."""
    with _groups_lock:
        _groups.clear()


def _stamp(path: str) -> tuple[int, int]:
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns


def _read_group(paths: Sequence[str]) -> tuple[AlleleBatch, list[str] | None]:
    """Chunks of one file share dataset, samples and CSQ order; their genotype matrices may
    differ in ploidy width, so narrower ones are padded with -2 (no such ploidy slot)."""
    loaded = [load_staged(path) for path in paths]
    if len(loaded) == 1:
        return loaded[0]
    first, csq_fields = loaded[0]
    for batch, _ in loaded[1:]:
        if (batch.dataset, batch.source_digest, batch.samples) != (first.dataset, first.source_digest, first.samples):
            raise ValueError(f"staged chunks of different files cannot be written together: {paths[0]}, {batch.source_path}")
    ploidy = max(batch.gt.shape[2] for batch, _ in loaded)
    gts = [np.pad(b.gt, ((0, 0), (0, 0), (0, ploidy - b.gt.shape[2])), constant_values=-2) for b, _ in loaded]
    batches = [batch for batch, _ in loaded]
    merged = AlleleBatch(first.dataset, first.source_path, first.source_digest, first.samples,
                         pa.concat_tables([b.table for b in batches]).combine_chunks(), np.concatenate(gts),
                         np.concatenate([b.phased for b in batches]), np.concatenate([b.dp for b in batches]),
                         np.concatenate([b.gq for b in batches]))
    return merged, csq_fields


@dataclass(frozen=True, slots=True)
class Staged:
    """A staged chunk waiting for the stores: its path, size and source file (digest)."""

    path: str
    alleles: int
    source: str
    carrier: dict[str, str] | None = None  # the chunk's span, parent of its store span


class StoreQueue:
    """Per store, the staged chunks it has still to write, taken in groups (see the module doc).

    The flow says how many chunks of each file will finish (``expect``), then hands over each
    finished chunk: ``add`` when it staged alleles, ``drop`` when it has nothing to store.
    Not thread-safe: the flow's loop is its only user.
    """

    def __init__(self, stores: Iterable[str], stage_dir: Path, batch_alleles: int) -> None:
        self.batch_alleles = max(1, batch_alleles)
        self._record_dir = stage_dir / "stored"
        self._queues: dict[str, deque[Staged]] = {store: deque() for store in stores}
        self._done: dict[str, set[str]] = {store: set() for store in self._queues}
        self._abandoned: set[str] = set()  # stores whose write failed: no more writes this run
        self._open = Counter[str]()  # per source file: chunks still to finish
        self.earlier = Counter[str]()  # written by earlier attempts of this flow run
        for store in self._queues:
            for entry in _read_records(self._record_dir / f"{store}.jsonl"):
                self._done[store].update(entry["files"])
                self.earlier[store] += int(entry["written"])

    def expect(self, source: str, chunks: int = 1) -> None:
        """``chunks`` more chunks of ``source`` will finish: its groups wait for them."""
        self._open[source] += chunks

    def add(self, item: Staged) -> None:
        """A chunk finished and staged alleles: queue it for every store that has not written it."""
        self._finished(item.source)
        name = Path(item.path).name
        for store, queue in self._queues.items():
            if name not in self._done[store] and store not in self._abandoned:
                queue.append(item)

    def abandon(self, store: str) -> int:
        """A write of ``store`` failed (after its retries): queue nothing more for it in this run
        and return how many chunks were waiting. They stay unrecorded, so a retry of the run
        writes them; meanwhile chunks do not wait for that store (``lagging``)."""
        self._abandoned.add(store)
        waiting = len(self._queues[store])
        self._queues[store].clear()
        return waiting

    def drop(self, source: str) -> None:
        """A chunk of ``source`` finished with nothing to store (no new alleles, or it failed)."""
        self._finished(source)

    def _finished(self, source: str) -> None:
        if self._open[source] > 0:
            self._open[source] -= 1

    def take(self, store: str) -> list[Staged]:
        """The next group for ``store``: queued chunks of the first queued file, in order, up to
        ``batch_alleles`` (at least one chunk). Empty while the group could still grow: fewer
        alleles than that queued and chunks of the file still to finish."""
        queue = self._queues[store]
        if not queue:
            return []
        source, size, alleles = queue[0].source, 0, 0
        for item in queue:
            if item.source != source or (size and alleles + item.alleles > self.batch_alleles):
                break
            size += 1
            alleles += item.alleles
        stopped = size < len(queue)  # by the limit or by the next file
        if not stopped and alleles < self.batch_alleles and self._open[source]:
            return []
        return [queue.popleft() for _ in range(size)]

    def finish(self, store: str, group: Sequence[Staged], written: int) -> None:
        """Record that ``store`` wrote ``group`` (``written`` new rows), for a retried run."""
        names = [Path(item.path).name for item in group]
        self._done[store].update(names)
        self._record_dir.mkdir(parents=True, exist_ok=True)
        with open(self._record_dir / f"{store}.jsonl", "ab") as records:
            records.write(orjson.dumps({"files": names, "written": written}) + b"\n")

    def wrote(self, store: str, path: str) -> bool:
        """Whether ``store`` wrote the staged chunk ``path`` (in this run or an earlier attempt)."""
        return Path(path).name in self._done[store]

    def queued_alleles(self, store: str) -> int:
        return sum(item.alleles for item in self._queues[store])

    def lagging(self) -> bool:
        """A store has two full groups queued: new chunks should wait for it."""
        return any(self.queued_alleles(store) >= 2 * self.batch_alleles for store in self._queues)

    def __bool__(self) -> bool:
        return any(self._queues.values())

    def stores_with_work(self) -> list[str]:
        """Stores with chunks queued (whether or not a group is ready to ``take``)."""
        return [store for store, queue in self._queues.items() if queue]


def _read_records(path: Path) -> list[dict]:
    """The groups a store finished in earlier attempts; a torn last line (a crash while
    appending) is ignored, so that group is simply written again (writes are idempotent)."""
    if not path.exists():
        return []
    entries = []
    for line in path.read_bytes().splitlines():
        try:
            entries.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            continue
    return entries
