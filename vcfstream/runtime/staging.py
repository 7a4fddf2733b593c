"""Staged chunks: what the chunk tasks leave for the store tasks, and which stores wrote what.

A chunk task writes its alleles to ``<home>/staging/<flow run>/`` (Arrow IPC + the genotype
matrices as ``.npz``) and returns the path, so store tasks get a path, not records.

Store writes are grouped: a store writes the chunks queued for it, in the order they finished
and from any of the run's files, as one write once they reach ``settings.stores.batch_alleles``
alleles or ``settings.stores.batch_cells`` genotype cells (alleles x samples), or once no chunk
of the run is still to finish. Every write has a fixed cost (Kuzu opens the database, merges
its whole primary-key index and checkpoints; LanceDB commits a version and checks its indexes;
the catalog runs its statements), and in Kuzu and LanceDB part of it grows with what they hold,
so few large writes are what keeps them cheap: writing each chunk as soon as a store was free
cost Kuzu 1 to 2 s per 50k-allele chunk (20 writes per 1M alleles), and a write per file cost a
cohort of 100 single-sample files 5 s a file. The cell bound keeps a group of a wide file
(and the memory of the process writing it) small: a group's genotype matrices take about 11
bytes a cell, and 4M cells are 4,000 alleles of a 1,000-sample file. Chunks run on while a
group is written; they wait only once a store has two groups queued. Each finished group is
appended to ``stored/<store>.jsonl`` next to the staged files; a retried flow run (same run id,
same staging directory) skips what is listed there and reports its counts, so only the missing
store writes are redone. A store whose write failed after its retries is ``abandon``-ed for the
rest of the run.

Example:
    >>> queue = StoreQueue(["catalog", "kuzu"], stage_dir, batch_alleles=250_000, batch_cells=4_000_000)  # doctest: +SKIP
    >>> queue.expect(digest, chunks=20)  # doctest: +SKIP
    >>> queue.add(Staged(path, alleles=50_000, source=digest, cells=150_000))  # doctest: +SKIP
    >>> queue.take("kuzu")  # not yet: 50k of 250k queued, 19 chunks to come
    []
    >>> group = queue.take("kuzu")  # later: queued chunks, up to 250k alleles or 4M cells
    >>> queue.finish("kuzu", group, written=48_000)
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
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


def load_staged(path: str) -> AlleleBatch:
    """The inverse of ``stage_batch``: the batch (without the ``value`` column: stores don't need
    it), with the CSQ field order kept with it, if any."""
    with pa.memory_map(path) as source, ipc.open_file(source) as reader:
        table = reader.read_all()  # no copy: the buffers map the file
    meta = table.schema.metadata or {}
    samples_text = meta.get(b"samples", b"").decode()
    arrays = np.load(Path(path).with_suffix(".npz"))
    table = table.append_column("value", pa.nulls(table.num_rows, pa.binary())).cast(ALLELE_SCHEMA)
    csq = meta.get(b"csq_fields")
    return AlleleBatch(meta[b"dataset"].decode(), meta[b"source_path"].decode(), meta[b"source_digest"].decode(),
                       samples_text.split("\t") if samples_text else [], table,
                       arrays["gt"], arrays["phased"], arrays["dp"], arrays["gq"],
                       csq.decode().split("|") if csq else None)


def load_group(paths: Sequence[str]) -> list[AlleleBatch]:
    """Staged chunks as one batch per source file, in the order of the files' first chunks.

    Each store loads its group itself and drops it after the write: the catalog in the flow's
    process, Kuzu and LanceDB each in its writer process (``vcfstream.stores.writer``), so a
    group is never shared between stores, and keeping loaded groups for reuse only held memory
    (three groups, up to 400 MiB of a 1,000-sample file, in the flow's process).
    """
    return _read_group(paths)


def _read_group(paths: Sequence[str]) -> list[AlleleBatch]:
    """Per source file, its chunks as one batch (they share dataset, samples and CSQ order);
    their genotype matrices may differ in ploidy width, so narrower ones are padded with -2 (no
    such ploidy slot)."""
    by_source: dict[str, list[AlleleBatch]] = {}
    for path in paths:
        batch = load_staged(path)
        by_source.setdefault(batch.source_digest, []).append(batch)
    merged = [_merge(chunks) for chunks in by_source.values()]
    if len({batch.dataset for batch in merged}) > 1:
        raise ValueError(f"staged chunks of different datasets cannot be written together: {paths[0]}")
    return merged


def _merge(batches: list[AlleleBatch]) -> AlleleBatch:
    first = batches[0]
    if len(batches) == 1:
        return first
    for batch in batches[1:]:
        if batch.samples != first.samples:
            raise ValueError(f"staged chunks of {first.source_path} name different samples")
    ploidy = max(batch.gt.shape[2] for batch in batches)
    gts = [np.pad(b.gt, ((0, 0), (0, 0), (0, ploidy - b.gt.shape[2])), constant_values=-2) for b in batches]
    return AlleleBatch(first.dataset, first.source_path, first.source_digest, first.samples,
                       pa.concat_tables([b.table for b in batches]).combine_chunks(), np.concatenate(gts),
                       np.concatenate([b.phased for b in batches]), np.concatenate([b.dp for b in batches]),
                       np.concatenate([b.gq for b in batches]), first.csq_fields)


@dataclass(frozen=True, slots=True)
class Staged:
    """A staged chunk waiting for the stores: its path, size (alleles, and genotype cells:
    alleles x samples) and source file (digest)."""

    path: str
    alleles: int
    source: str
    carrier: dict[str, str] | None = None  # the chunk's span, parent of its store span
    cells: int = 0


class StoreQueue:
    """Per store, the staged chunks it has still to write, taken in groups (see the module doc).

    The flow says how many chunks of each file will finish (``expect``), then hands over each
    finished chunk: ``add`` when it staged alleles, ``drop`` when it has nothing to store.
    Not thread-safe: the flow's loop is its only user.
    """

    def __init__(self, stores: Iterable[str], stage_dir: Path, batch_alleles: int, batch_cells: int | None = None) -> None:
        self.batch_alleles = max(1, batch_alleles)
        self.batch_cells = max(1, batch_cells) if batch_cells is not None else None
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
        """The next group for ``store``: queued chunks in order, of any file, up to
        ``batch_alleles`` alleles and ``batch_cells`` cells (at least one chunk). Empty while the
        group could still grow: below both bounds and chunks of the run still to finish."""
        queue = self._queues[store]
        if not queue:
            return []
        size = alleles = cells = 0
        for item in queue:
            if size and not self._fits(alleles + item.alleles, cells + item.cells):
                break
            size += 1
            alleles += item.alleles
            cells += item.cells
        stopped = size < len(queue)  # by a bound
        if not stopped and self._fits(alleles, cells, strict=True) and any(self._open.values()):
            return []
        return [queue.popleft() for _ in range(size)]

    def _fits(self, alleles: int, cells: int, *, strict: bool = False) -> bool:
        """Within both bounds (``strict``: below them, so the group may still grow)."""
        if strict:
            return alleles < self.batch_alleles and (self.batch_cells is None or cells < self.batch_cells)
        return alleles <= self.batch_alleles and (self.batch_cells is None or cells <= self.batch_cells)

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

    def lagging(self) -> bool:
        """A store has two full groups queued: new chunks should wait for it."""
        for queue in self._queues.values():
            if sum(item.alleles for item in queue) >= 2 * self.batch_alleles:
                return True
            if self.batch_cells is not None and sum(item.cells for item in queue) >= 2 * self.batch_cells:
                return True
        return False

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
