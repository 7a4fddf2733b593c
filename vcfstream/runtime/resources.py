"""Process resources while ingesting: the garbage collector's threshold (``fewer_collections``)
and the resource guard, which lowers chunk concurrency when the process grows too big, instead
of dying.

The flow asks ``recommended_concurrency(current)`` before it submits more chunks; above the
RSS limit the answer is half the current concurrency (at least 1), and a note says so for the
run summary. Concurrency is never raised again within a run: memory freed by finished chunks
often stays with the allocator, so RSS falling is a poor signal that it is safe to go back up.

Example:
    >>> guard = ResourceGuard(limit_bytes=1_000_000_000, rss=lambda: 1_200_000_000)
    >>> guard.recommended_concurrency(2)
    1
    >>> guard.notes
    ['lowered chunk concurrency from 2 to 1 at RSS 1.2 GB (limit 1.0 GB)']
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psutil
import pyarrow as pa

# Ingesting allocates millions of short-lived tuples, strings and lists and makes no reference
# cycles; at the default threshold (700 allocations) the cyclic collector runs every few
# records and walks every long-lived object (value caches, Arrow wrappers) in its older
# generations: 15% of a reader's CPU (bench/bench_reader.py: 2.39 -> 2.01 s for 50k records).
GC_THRESHOLD = (50_000, 20, 100)

_LIBC = ctypes.CDLL(ctypes.util.find_library("c")) if sys.platform == "linux" else None


def give_back_memory() -> None:
    """Return freed memory to the system: Arrow's allocator and glibc's keep it for reuse, and a
    process would otherwise hold the peak of its largest store write until it ends."""
    pa.default_memory_pool().release_unused()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


_collections_lock = threading.Lock()
_collections_users = 0
_collections_before: tuple[int, ...] = ()


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Run the cyclic garbage collector at ``GC_THRESHOLD`` while any caller is inside (runs
    may overlap in one process: a cohort runs files as subflows in threads); the threshold
    found by the first is restored when the last leaves."""
    global _collections_users, _collections_before
    with _collections_lock:
        if _collections_users == 0:
            _collections_before = gc.get_threshold()
            gc.set_threshold(*GC_THRESHOLD)
        _collections_users += 1
    try:
        yield
    finally:
        with _collections_lock:
            _collections_users -= 1
            if _collections_users == 0:
                gc.set_threshold(*_collections_before)


def own_rss() -> int:
    """Resident set size of this process alone, in bytes."""
    return int(psutil.Process().memory_info().rss)


def _gb(n_bytes: int) -> str:
    return f"{n_bytes / 1e9:.1f} GB"


class ResourceGuard:
    """Recommends a chunk concurrency that keeps the process RSS under ``limit_bytes``.

    Args:
        limit_bytes: the RSS above which concurrency is lowered; None = no limit (``settings.ingest.rss_limit``).
        rss: reads the current RSS in bytes (the flow passes ``readpool.process_rss``; tests a fake).
    """

    def __init__(self, limit_bytes: int | None, *, rss: Callable[[], int] = own_rss) -> None:
        self.limit_bytes = limit_bytes
        self._rss = rss
        self.lowered = False  # concurrency was lowered at least once: the summary reports the notes
        self.notes: list[str] = []
        self._warned_at_floor = False

    def recommended_concurrency(self, current: int) -> int:
        """``current`` while RSS is within the limit; otherwise half of it, never below 1."""
        if self.limit_bytes is None:
            return current
        rss = self._rss()
        if rss <= self.limit_bytes:
            return current
        lowered = max(1, current // 2)
        where = f"at RSS {_gb(rss)} (limit {_gb(self.limit_bytes)})"
        if lowered < current:
            self.lowered = True
            self.notes.append(f"lowered chunk concurrency from {current} to {lowered} {where}")
        elif not self._warned_at_floor:
            self._warned_at_floor = True
            self.notes.append(f"chunk concurrency already {current} {where}: cannot lower it further")
        return lowered
