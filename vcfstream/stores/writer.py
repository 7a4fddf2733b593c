"""Embedded stores (Kuzu, LanceDB) written in a store-writer process, so their native code can
crash only that write.

Kuzu and LanceDB run native code inside the calling process: a segmentation fault there (seen
in Kuzu 0.11 on a dense 1,000-sample group) would kill the flow's process with everything it
holds, leaving no summary. ``write_staged`` hands the write to a child process instead, given the
paths of the staged Arrow files (``vcfstream.runtime.staging``), not records: the child loads the
group, opens the store, writes and answers with its counts. A child that dies (a signal, the
kernel's OOM killer) fails only that write with ``WriterDied``, a ``StoreError`` naming the
store and the signal ("kuzu: writer process died with SIGSEGV ..."); nothing of the group is
recorded as written, so the store task's retries, or a retry of the run, write it again (store
writes are idempotent, and Kuzu discards what a dead writer left uncommitted when it next opens
the database). A Kuzu write that fails inside a transaction is answered with its error, and then
its writer exits as a crash would, without rolling back (``GraphStore.on_failed_write`` says why).

Writers are plain ``python -m vcfstream.stores.writer`` children on two pipes, as the reader
processes are (``vcfstream.runtime.readpool``): no ``multiprocessing`` spawn, which would
re-import the parent's ``__main__``. Messages are frames of ``vcfstream.runtime.frames`` holding a
JSON header alone (data, never pickle): the request names the store, the staged paths and the
settings the store reads (home, kuzu, lancedb, stores: none of them secret); the answer is the
counts or the error message, and anything else kills the writer. A process has one
writer per store, kept between writes (importing LanceDB takes 1 to 2 s) until it has been idle
for ``IDLE_S``, each used by one write at a time: Kuzu takes one writer per database, and two
stores never share one process's memory. A writer exits when its request pipe closes, or
mid-write once the process that started it is gone, so it never outlives that process; a write
that gets no answer within ``settings.ingest.store_timeout_s`` kills it (``WriterTimedOut``).

The writers' memory is the run's too: ``writer_pss`` is what the resource guard adds to the
flow's. Kuzu's share is bounded by ``settings.kuzu.buffer_pool_mb``, plus the group being written.

Example:
    >>> written = write_staged("kuzu", ["/home/staging/run/ab12-00000.arrow"], settings)  # doctest: +SKIP
    >>> written.written, written.dataset
    (1200, 'cohort1')
"""

from __future__ import annotations

import gc
import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, BinaryIO, NoReturn

import psutil

from vcfstream.errors import StoreError
from vcfstream.runtime import frames
from vcfstream.runtime.frames import FrameError
from vcfstream.runtime.resources import give_back_memory
from vcfstream.runtime.staging import load_group
from vcfstream.settings import Settings
from vcfstream.stores.base import describe, write_group
from vcfstream.stores.registry import open_store

# Stores whose writes run in a writer process: their clients are native code in-process. The
# catalog's client is a PostgreSQL connection (a crash there is the server's, not ours).
ISOLATED_STORES = frozenset({"kuzu", "lancedb"})
# The settings groups a store writer reads (no secrets among them).
_GROUPS = ("kuzu", "lancedb", "stores")
# A writer with nothing to write for this long exits; the next write starts a new one (1 to 2 s).
IDLE_S = 60.0
_PARENT_CHECK_S = 0.2  # how often a writer checks that the process that started it is alive


class WriterDied(StoreError):
    """A store-writer process died during a write (a signal, the OOM killer); nothing of the
    group is recorded as written, so a retry writes it."""


class WriterTimedOut(WriterDied):
    """A store-writer process did not answer in time and was killed; a retry writes the group."""


@dataclass(frozen=True, slots=True)
class Written:
    """What a writer reports of one group: new rows, the group's size and source, and the
    store's own counts (Kuzu: variants, genes, carried_by, in_gene)."""

    written: int
    alleles: int
    dataset: str
    source_path: str
    counts: dict[str, int] = field(default_factory=dict)


def write_staged(store: str, paths: Sequence[str], settings: Settings) -> Written:
    """Write the staged chunks ``paths`` (of one or more files, in order) to ``store`` in its writer process.

    Raises ``StoreError`` naming the store: the store's own error, or ``WriterDied`` /
    ``WriterTimedOut`` when the writer process was lost.
    """
    if store not in ISOLATED_STORES:
        raise StoreError(store, f"not written in a writer process (only {', '.join(sorted(ISOLATED_STORES))})")
    return _writers.get(store).write(paths, settings)


def writer_pids() -> list[int]:
    """PIDs of this process's running store writers."""
    return _writers.pids()


def writer_pss() -> int:
    """Summed proportional set size of this process's store writers, in bytes."""
    total = 0
    for pid in writer_pids():
        try:
            total += psutil.Process(pid).memory_full_info().pss
        except psutil.Error:
            pass  # exited since
    return total


def close_writers() -> None:
    """Stop every idle store writer (they also stop by themselves when this process ends)."""
    _writers.close()


class StoreWriter:
    """One writer process for one store, started on first use and again after it died."""

    def __init__(self, store: str) -> None:
        self.store = store
        self._lock = threading.Lock()  # one write at a time: Kuzu allows one writer per database
        self._child: _Child | None = None
        self._writes = 0  # writes sent so far: an idle timer knows whether it is still the last

    @property
    def pid(self) -> int | None:
        child = self._child
        return child.process.pid if child is not None else None

    def write(self, paths: Sequence[str], settings: Settings) -> Written:
        request = {"store": self.store, "paths": list(paths), "settings": _store_settings(settings)}
        timeout_s = settings.ingest.store_timeout_s
        with self._lock:
            child = self._child
            if child is None or child.process.poll() is not None:
                child = self._child = self._start()
            timer = threading.Timer(timeout_s, child.expire)
            timer.daemon = True
            timer.start()
            try:
                _send(child.requests, request)
                reply = _receive(child.replies)
                result = _result(reply)
            except (EOFError, OSError, FrameError) as exc:
                self._child = None
                code = child.close(kill=True)
                if isinstance(exc, FrameError) and not child.expired:
                    raise StoreError(self.store, f"writer process sent an answer that is not one ({exc}); it was "
                                                 f"killed, and a retry writes the {len(paths)} staged chunk(s)") from None
                raise self._lost(child, code, len(paths), timeout_s) from None
            finally:
                timer.cancel()
            if child.expired:  # the answer came just as the timer killed it
                self._child = None
                child.close(kill=True)
            elif reply.get("exiting"):  # it left a failed Kuzu transaction to the next writer
                self._child = None
                child.close()
            self._writes += 1
            idle = threading.Timer(IDLE_S, self._close_idle, args=(self._writes,))
            idle.daemon = True
            idle.start()
        if isinstance(result, str):
            raise StoreError(self.store, result)
        return result

    def _close_idle(self, writes: int) -> None:
        """Stop the writer if it has written nothing since write number ``writes``."""
        with self._lock:
            if self._writes != writes or self._child is None:
                return
            child, self._child = self._child, None
        child.close()

    def _start(self) -> _Child:
        try:
            return _Child(self.store)
        except OSError as exc:
            raise StoreError(self.store, f"could not start a writer process: {exc}") from None

    def _lost(self, child: _Child, code: int, chunks: int, timeout_s: float) -> WriterDied:
        what = f"{chunks} staged chunk(s)"
        if child.expired:
            return WriterTimedOut(self.store, f"writer process sent no answer within {timeout_s:g} s "
                                              f"(ingest.store_timeout_s) writing {what}; it was killed, "
                                              f"nothing of them is recorded as written and a retry writes them")
        how = f"with {_signal_name(-code)}" if code < 0 else f"with exit code {code}"
        return WriterDied(self.store, f"writer process died {how} writing {what}; nothing of them is recorded "
                                      f"as written and a retry writes them")

    def close(self) -> None:
        with self._lock:
            child, self._child = self._child, None
        if child is not None:
            child.close()


class _Writers:
    """This process's writers, one per store."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_store: dict[str, StoreWriter] = {}

    def get(self, store: str) -> StoreWriter:
        with self._lock:
            writer = self._by_store.get(store)
            if writer is None:
                writer = self._by_store[store] = StoreWriter(store)
            return writer

    def pids(self) -> list[int]:
        with self._lock:
            writers = list(self._by_store.values())
        return [pid for writer in writers if (pid := writer.pid) is not None]

    def close(self) -> None:
        with self._lock:
            writers = list(self._by_store.values())
        for writer in writers:  # a write in progress finishes first (the writer's lock)
            writer.close()


_writers = _Writers()


def _store_settings(settings: Settings) -> dict[str, Any]:
    groups = {name: getattr(settings, name).model_dump(mode="json") for name in _GROUPS}
    return {"home": str(settings.home_dir), **groups}


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class _Child:
    """One writer process and its two pipes."""

    def __init__(self, store: str) -> None:
        self.process, self.requests, self.replies = frames.spawn("vcfstream.stores.writer", store)
        self.expired = False

    def expire(self) -> None:
        """The write timed out: kill the writer, so the blocked read of its answer ends."""
        self.expired = True
        self.process.kill()

    def close(self, *, kill: bool = False) -> int:
        """Close the pipes (the writer then exits) and return its exit code (negative: the signal)."""
        if kill:
            self.process.kill()
        for pipe in (self.requests, self.replies):
            try:
                pipe.close()
            except OSError:
                pass
        try:
            return self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()



def _send(pipe: BinaryIO, message: dict[str, Any]) -> None:
    frames.send(pipe, frames.frame(message, []))


def _receive(pipe: io.BufferedIOBase) -> dict[str, Any]:
    """The next message; ``EOFError`` when the pipe closes, ``FrameError`` for anything but a
    frame of one JSON header."""
    header, buffers = frames.receive(pipe)
    if buffers:
        raise FrameError(f"a message with {len(buffers)} buffers, where a store writer sends none")
    return header


def _result(reply: dict[str, Any]) -> Written | str:
    """A writer's answer: the counts, or its error message (``FrameError`` for anything else)."""
    if set(reply) <= {"error", "exiting"} and type(reply.get("error")) is str:
        return str(reply["error"])
    if set(reply) == {"ok"}:
        return frames.decode(Written, reply["ok"], [])
    raise FrameError(f"an answer with the fields {sorted(reply)}")


# -- in the writer process ----------------------------------------------------------------
def _serve(requests: io.BufferedIOBase, replies: BinaryIO) -> None:
    """Per request: {"ok": Written} or {"error": message}; exits when the request pipe closes."""
    while True:
        try:
            request = _receive(requests)
        except EOFError:  # the parent closed the pipe or is gone
            return
        try:
            reply: dict[str, Any] = {"ok": asdict(_write(request["store"], request["paths"], request["settings"],
                                                          replies))}
        except StoreError as exc:
            reply = {"error": str(exc).removeprefix(f"{exc.store}: ")}
        except Exception as exc:  # the parent raises it as a StoreError naming the store
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        finally:  # an idle writer holds no group
            gc.collect()
            give_back_memory()
        try:
            _send(replies, reply)
        except BrokenPipeError:  # the parent is gone
            return


def _write(store: str, paths: list[str], groups: dict[str, Any], replies: BinaryIO) -> Written:
    settings = Settings(**groups)
    batches = load_group(paths)
    alleles, source = sum(len(batch) for batch in batches), describe(batches)
    if store == "kuzu":
        # Imported here, in the writer only: the flow's process never loads Kuzu.
        from vcfstream.stores.graph import GraphStore

        def leave(error: StoreError) -> NoReturn:
            """A Kuzu transaction failed: answer, then exit without rolling it back (see
            ``GraphStore.on_failed_write``); the next write starts a new writer."""
            _send(replies, {"error": str(error).removeprefix(f"{error.store}: "), "exiting": True})
            os._exit(1)

        graph = GraphStore(settings, on_failed_write=leave)
        written = graph.write_many(batches)
        return Written(written, alleles, batches[0].dataset, source, dict(graph.last_write))
    with open_store(store, settings) as backend:
        written = write_group(backend, batches)
    return Written(written, alleles, batches[0].dataset, source)


def _exit_with_parent(parent: int) -> None:
    """End this writer, mid-write too, once the process that started it is gone (killed, crashed):
    a write nobody waits for would hold the store's lock against the retry, and what it leaves
    uncommitted is discarded when the next writer opens the store. (Not ``PR_SET_PDEATHSIG``:
    that follows the parent's thread, and a store task's thread ends before its writer does.)"""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_PARENT_CHECK_S)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; EOF stops us
    _exit_with_parent(os.getppid())
    _serve(os.fdopen(int(sys.argv[1]), "rb"), os.fdopen(int(sys.argv[2]), "wb"))
