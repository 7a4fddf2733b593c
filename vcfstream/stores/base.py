"""What every store shares: the ``Store`` protocol, its errors, and the
file lock that serializes writers of an embedded store.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol, runtime_checkable

from vcfstream.errors import StoreError
from vcfstream.model import AlleleBatch


@runtime_checkable
class Store(Protocol):
    """A storage backend the flow writes every chunk's batch to."""

    name: str

    def write(self, batch: AlleleBatch) -> int:
        """Store the batch; returns how many variants were new. Idempotent."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class GroupStore(Store, Protocol):
    """A store that writes the batches of several source files as one write (its fixed cost
    per write grows with what it holds: Kuzu, LanceDB)."""

    def write_many(self, batches: Sequence[AlleleBatch]) -> int:
        """Store the batches (one per file, one dataset) as one write; returns new variants."""
        ...


def write_group(store: Store, batches: Sequence[AlleleBatch]) -> int:
    """Write a store group's batches (``vcfstream.runtime.staging.load_group``): as one write
    where the store can, else a write per batch; returns the new variants."""
    if isinstance(store, GroupStore):
        return store.write_many(batches)
    return sum(store.write(batch) for batch in batches)


def describe(batches: Sequence[AlleleBatch]) -> str:
    """What a group is, for messages: its file, or how many files."""
    if len(batches) == 1:
        return batches[0].source_path
    return f"{len(batches)} files ({batches[0].source_path}, ...)"


def store_error(store: str, doing: str, exc: BaseException) -> StoreError:
    """A ``StoreError`` naming the store, what it was doing and the client's first error line."""
    first_line = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
    return StoreError(store, f"{doing}: {first_line}")


@contextmanager
def file_lock(lock_path: Path, *, store: str, shared: bool = False, timeout_s: float = 600.0) -> Iterator[None]:
    """Hold an advisory ``flock`` on ``lock_path`` (exclusive for writers, shared for readers).

    ``flock`` locks belong to the open file, so two threads of one process exclude each other
    just as two processes do. Waits up to ``timeout_s``, then raises ``StoreError``.
    """
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        delay = 0.005
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StoreError(
                        store, f"{lock_path} is still locked by another writer after {timeout_s:g} s"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.25)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
