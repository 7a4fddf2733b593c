"""Parsing chunks in reader processes, so parsing overlaps claiming and publishing.

``read_chunk`` is pure Python and holds the GIL for its whole run; in the flow's process it
competes with the claim and publish of the chunk before it. With ``read_processes`` > 0 a
chunk's raw lines go to a reader process (lines in, one pickled ``ChunkRead`` out: an Arrow
table and numpy matrices travel as buffers) and the flow's process keeps the ledger and brokers.

Readers are plain ``python -m tasks.readpool`` children talking over two pipes, not a
``multiprocessing`` pool: spawn re-imports the parent's ``__main__`` in every child, which under
a Prefect worker is ``prefect.engine`` (seconds and ~100 MB per reader). A reader exits when
its request pipe closes, so it never outlives the process that started it.

A reader keeps the ``ReadContext`` of the last few files it read: their FORMAT plans and value
caches stay warm across chunks.
"""

from __future__ import annotations

import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, BinaryIO

from tasks.errors import VcfstreamError
from tasks.model import Chunk
from tasks.reader import ChunkRead, ReadContext, read_chunk
from tasks.vcfio import SourceFile

_CONTEXTS_KEPT = 4  # files per reader whose contexts stay warm
_FRAME = struct.Struct("<Q")  # length prefix of every pickled message

Lines = list[tuple[int | None, bytes]]


class ReaderCrashed(VcfstreamError):
    """A reader process died (killed, out of memory); the chunk can be retried."""


def _send(pipe: BinaryIO, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    pipe.write(_FRAME.pack(len(data)))
    pipe.write(data)
    pipe.flush()


def _receive(pipe: BinaryIO) -> Any:
    head = pipe.read(_FRAME.size)
    if len(head) < _FRAME.size:
        raise EOFError("pipe closed")
    size = _FRAME.unpack(head)[0]
    data = pipe.read(size)
    if len(data) < size:
        raise EOFError("pipe closed mid-message")
    return pickle.loads(data)


class _Reader:
    """One reader process and its two pipes."""

    def __init__(self) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tasks.readpool", str(to_child_r), str(from_child_w)],
                pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": _path()})
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self.requests = os.fdopen(to_child_w, "wb")
        self.replies = os.fdopen(from_child_r, "rb")

    def call(self, request: tuple[Any, ...]) -> Any:
        _send(self.requests, request)
        return _receive(self.replies)

    def close(self) -> int:
        """Close the pipes (the reader then exits) and return its exit code."""
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


def _path() -> str:
    """PYTHONPATH with this ``tasks`` package's directory first: a reader imports the same code."""
    here = str(Path(__file__).resolve().parents[1])
    return os.pathsep.join([here, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])


class ReadPool:
    """Up to ``workers`` reader processes, started on first use; ``read`` blocks until its chunk
    is read by an idle one."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._idle: queue.Queue[_Reader | None] = queue.Queue()
        for _ in range(workers):
            self._idle.put(None)  # a slot whose reader starts when first needed
        self._pids: set[int] = set()

    def read(self, ctx: ReadContext, chunk: Chunk, lines: Lines) -> ChunkRead:
        reader = self._idle.get()
        try:
            if reader is None:
                reader = _Reader()
                self._pids.add(reader.process.pid)
            status, value = reader.call(("read", (ctx.dataset, ctx.assembly, ctx.source, ctx.normalizer.reference),
                                         chunk, lines))
        except (EOFError, OSError, pickle.UnpicklingError):
            code = None
            if reader is not None:
                self._pids.discard(reader.process.pid)
                code = reader.close()
            reader = None  # the slot starts a new reader next time
            raise ReaderCrashed(f"{ctx.source.path}: the reader process of chunk {chunk.label} "
                                f"died (exit {code})") from None
        finally:
            self._idle.put(reader)
        if status == "error":
            raise value
        return value

    def pids(self) -> list[int]:
        """PIDs of started readers (a reader busy with a chunk included)."""
        return list(self._pids)

    def close(self) -> None:
        for _ in range(self.workers):
            reader = self._idle.get()
            if reader is not None:
                self._pids.discard(reader.process.pid)
                reader.close()
        for _ in range(self.workers):
            self._idle.put(None)


_pools: dict[int, ReadPool] = {}
_pools_lock = threading.Lock()


def read_pool(workers: int) -> ReadPool | None:
    """The process's pool of ``workers`` readers (None for 0: read in the calling thread)."""
    if workers <= 0:
        return None
    with _pools_lock:
        pool = _pools.get(workers)
        if pool is None:
            pool = _pools[workers] = ReadPool(workers)
        return pool


def reader_pids() -> list[int]:
    """PIDs of this process's running readers (their memory counts toward the run's)."""
    with _pools_lock:
        pools = list(_pools.values())
    return [pid for pool in pools for pid in pool.pids()]


def close_pools() -> None:
    """Stop every reader process (they also stop by themselves when this process ends)."""
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.close()


# -- in the reader process ----------------------------------------------------------------
_contexts: OrderedDict[tuple[object, ...], ReadContext] = OrderedDict()


def _read(spec: tuple[str, str, SourceFile, str | None], chunk: Chunk, lines: Lines) -> ChunkRead:
    dataset, assembly, source, reference = spec
    key = (dataset, assembly, source.path, source.digest, reference)
    ctx = _contexts.get(key)
    if ctx is None:
        ctx = _contexts[key] = ReadContext.open(dataset, assembly, source, reference)
        while len(_contexts) > _CONTEXTS_KEPT:
            _contexts.popitem(last=False)
    else:
        _contexts.move_to_end(key)
    return read_chunk(ctx, chunk, lines)


def _serve(requests: BinaryIO, replies: BinaryIO) -> None:
    while True:
        try:
            _, spec, chunk, lines = _receive(requests)
        except EOFError:  # the parent closed the pipe or is gone
            return
        try:
            reply: tuple[str, Any] = ("ok", _read(spec, chunk, lines))
        except Exception as exc:  # noqa: BLE001 - the parent raises it
            reply = ("error", exc)
        del lines
        if reply[0] == "error" and not _round_trips(reply[1]):  # a library's error with a picky __init__
            reply = ("error", VcfstreamError(f"{type(reply[1]).__name__}: {reply[1]}"))
        _send(replies, reply)


def _round_trips(exc: BaseException) -> bool:
    try:
        pickle.loads(pickle.dumps(exc))
        return True
    except Exception:  # noqa: BLE001 - any failure means: send it as text
        return False


if __name__ == "__main__":
    _serve(os.fdopen(int(sys.argv[1]), "rb"), os.fdopen(int(sys.argv[2]), "wb"))
