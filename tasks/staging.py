"""Staged chunks: what the chunk tasks leave for the store tasks, and which stores wrote what.

A chunk task writes its alleles to ``<home>/staging/<flow run>/`` (Arrow IPC + the genotype
matrices as ``.npz``) and returns the path, so store tasks get a path, not records.

Store writes are grouped: a store that is free takes every chunk of one file queued for it, up
to ``settings.store_batch_alleles`` alleles, and writes them as one batch. Kuzu and LanceDB pay
a cost per write that grows with what they hold (Kuzu merges its whole primary-key index on
every COPY), so fewer, larger writes are what keeps them flat; a store that falls behind
simply takes bigger groups. Each finished group is appended to ``stored/<store>.jsonl`` next
to the staged files; a retried flow run (same run id, same staging directory) skips what is
listed there and reports its counts, so only the missing store writes are redone.

Example:
    >>> queue = StoreQueue(["catalog", "kuzu"], stage_dir, max_alleles=400_000)  # doctest: +SKIP
    >>> queue.add(Staged(path, alleles=50_000, source=digest))  # doctest: +SKIP
    >>> group = queue.take("kuzu")  # every queued chunk of that file, up to 400k alleles
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

from tasks.model import ALLELE_SCHEMA, AlleleBatch, Chunk


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
    with ipc.open_file(path) as reader:
        table = reader.read_all()
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

    Chunks of one file share dataset, samples and CSQ order; their genotype matrices may differ
    in ploidy width, so narrower ones are padded with -2 (no such ploidy slot).
    """
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

    Not thread-safe: the flow's loop is its only user.
    """

    def __init__(self, stores: Iterable[str], stage_dir: Path, max_alleles: int) -> None:
        self.max_alleles = max(1, max_alleles)
        self._record_dir = stage_dir / "stored"
        self._queues: dict[str, deque[Staged]] = {store: deque() for store in stores}
        self._done: dict[str, set[str]] = {store: set() for store in self._queues}
        self.earlier = Counter[str]()  # written by earlier attempts of this flow run
        for store in self._queues:
            for entry in _read_records(self._record_dir / f"{store}.jsonl"):
                self._done[store].update(entry["files"])
                self.earlier[store] += int(entry["written"])

    def add(self, item: Staged) -> None:
        """Queue a staged chunk for every store that has not written it yet."""
        name = Path(item.path).name
        for store, queue in self._queues.items():
            if name not in self._done[store]:
                queue.append(item)

    def take(self, store: str) -> list[Staged]:
        """The next group for ``store``: queued chunks of the first queued file, in order, up to
        ``max_alleles`` (always at least one chunk); empty when nothing is queued."""
        queue = self._queues[store]
        group: list[Staged] = []
        alleles = 0
        while queue and (not group or (queue[0].source == group[0].source
                                       and alleles + queue[0].alleles <= self.max_alleles)):
            group.append(queue.popleft())
            alleles += group[-1].alleles
        return group

    def finish(self, store: str, group: Sequence[Staged], written: int) -> None:
        """Record that ``store`` wrote ``group`` (``written`` new rows), for a retried run."""
        names = [Path(item.path).name for item in group]
        self._done[store].update(names)
        self._record_dir.mkdir(parents=True, exist_ok=True)
        with open(self._record_dir / f"{store}.jsonl", "ab") as records:
            records.write(orjson.dumps({"files": names, "written": written}) + b"\n")

    def queued_alleles(self, store: str) -> int:
        return sum(item.alleles for item in self._queues[store])

    def lagging(self) -> bool:
        """A store has a full group waiting: new chunks should wait for it."""
        return any(self.queued_alleles(store) >= self.max_alleles for store in self._queues)

    def __bool__(self) -> bool:
        return any(self._queues.values())

    def stores_with_work(self) -> list[str]:
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
