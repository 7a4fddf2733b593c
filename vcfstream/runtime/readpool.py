"""Parsing chunks in reader processes, so parsing overlaps claiming and publishing.

``read_chunk`` is pure Python and holds the GIL for its whole run; in the flow's process it
competes with the claim and publish of the chunk before it. With ``read_processes`` > 0 a reader
process reads the chunk's raw lines from the file itself (the request is the file and chunk, not
records), answers with how many it read, then with the ``ChunkRead``; the flow's process keeps
the ledger and brokers. The first answer lets the flow time reading and parsing apart.

Requests and answers are data, never pickle (``vcfstream.runtime.frames``): a reader taken over
through a parser bug can send wrong data, not code, to the process that holds the credentials.
The ``ChunkRead`` travels as a JSON header, its table as an Arrow IPC stream and its genotype
matrices as raw numpy buffers, none of them copied on either side; its errors as their type,
message, file, line and rule, rebuilt as one of a few known classes. A message that is not such a
frame, or not what was asked, kills the reader and fails the chunk (``ReaderMisbehaved``, a
``ReaderCrashed``: retried with a new reader).

Readers are plain ``python -m vcfstream.runtime.readpool`` children talking over two pipes, not a
``multiprocessing`` pool: spawn re-imports the parent's ``__main__`` in every child, which under
a Prefect worker is ``prefect.engine`` (seconds and ~100 MB per reader). A reader exits when
its request pipe closes, so it never outlives the process that started it.

A reader keeps the ``ReadContext`` of the last few files it read: their FORMAT plans and value
caches stay warm across chunks.

Nothing waits on a reader forever: each request and each answer must arrive within the pool's
``reply_timeout_s`` (``IngestSettings.read_timeout_s``). A reader that misses it (hung, stopped,
stuck in a read of a dead network mount) is killed, its slot starts a new one, and the chunk
fails with ``ReaderTimedOut``, which the chunk task's retries take up. A reader that dies closes
its pipe, so its chunk fails at once with ``ReaderCrashed``.
"""

from __future__ import annotations

import gc
import io
import os
import queue
import signal
import subprocess
import sys
import threading
from concurrent.futures import Future
from typing import Any, BinaryIO, NoReturn, Self, get_type_hints

import numpy as np
import psutil
import pyarrow as pa

from vcfstream.errors import VcfstreamError
from vcfstream.model import Chunk
from vcfstream.runtime import frames
from vcfstream.runtime.frames import FrameError
from vcfstream.runtime.resources import GC_THRESHOLD
from vcfstream.vcf.reader import ChunkRead, ReadContext, kept_context, read_chunk
from vcfstream.vcf.source import LongLine, iter_chunk_lines

Lines = list[tuple[int | None, bytes]]
# What a reader needs to open a chunk's context again: ``kept_context``'s arguments, by their types.
_CONTEXT_ARGS = {name: hint for name, hint in get_type_hints(kept_context).items() if name != "return"}


READ_TIMEOUT_S = 600.0  # IngestSettings.read_timeout_s's default


class ReaderCrashed(VcfstreamError):
    """A reader process died (killed, out of memory); the chunk can be retried."""


class ReaderTimedOut(ReaderCrashed):
    """A reader process sent no answer in time; it was killed and the chunk can be retried."""


class ReaderMisbehaved(ReaderCrashed):
    """A reader process sent a message that is not a frame of the protocol, or not the answer
    asked for; it was killed (what else it sends cannot be trusted) and the chunk can be retried."""


class _Deadline:
    """Kills ``reader`` unless the block ends within ``seconds``: a pipe read or write blocked on a
    hung reader then ends (EOF, broken pipe) and ``expired`` says why."""

    def __init__(self, reader: _Reader, seconds: float) -> None:
        self._reader, self._lock, self._done = reader, threading.Lock(), False
        self.expired = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def _expire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.expired = True
        self._reader.process.kill()

    def __enter__(self) -> Self:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._done = True  # a kill after this point would hit a reader that answered in time
        self._timer.cancel()


def _request_frame(ctx: ReadContext, chunk: Chunk, lines: Lines | None) -> frames.Frame:
    """A request: the arguments that open the chunk's context, the chunk, and its lines if given."""
    buffers: list[frames.Buffer] = []
    context = {name: ctx.normalizer.reference if name == "reference" else getattr(ctx, name) for name in _CONTEXT_ARGS}
    header = {"kind": "read", "context": frames.encode(context, buffers), "chunk": frames.encode(chunk, buffers),
              "lines": None if lines is None else frames.encode(_lines_table(lines), buffers)}
    return frames.frame(header, buffers)


def _lines_table(lines: Lines) -> pa.Table:
    """Raw lines as a table: line number, bytes, and a long line's whole length (``LongLine``)."""
    return pa.table({"line": pa.array([n for n, _ in lines], pa.int64()),
                     "raw": pa.array([bytes(raw) for _, raw in lines], pa.large_binary()),
                     "length": pa.array([raw.length if isinstance(raw, LongLine) else None for _, raw in lines],
                                        pa.int64())})


def _table_lines(table: pa.Table) -> Lines:
    return [(n, raw if length is None else LongLine.of(raw, length))
            for n, raw, length in zip(*(table.column(name).to_pylist() for name in ("line", "raw", "length")),
                                      strict=True)]


def _reply_frame(kind: str, **values: Any) -> frames.Frame:
    buffers: list[frames.Buffer] = []
    return frames.frame({"kind": kind, **{key: frames.encode(value, buffers) for key, value in values.items()}},
                        buffers)


class _Reader:
    """One reader process and its two pipes."""

    def __init__(self) -> None:
        self.process, self.requests, self.replies = frames.spawn("vcfstream.runtime.readpool")

    def close(self, *, kill: bool = False) -> int:
        """Close the pipes (the reader then exits) and return its exit code; ``kill`` when half
        a message may sit in the pipes."""
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



class ReadPool:
    """Up to ``workers`` reader processes, started on first use; ``read`` blocks until its chunk
    is read by an idle one.

    A reader goes back to the pool only after a whole request and reply: one interrupted in
    between (a crash, a cancelled task, an interrupt) is killed, and its slot starts a new one,
    so a reply can never reach the wrong chunk."""

    def __init__(self, workers: int, reply_timeout_s: float = READ_TIMEOUT_S) -> None:
        self.workers = workers
        self.reply_timeout_s = reply_timeout_s  # per request and per answer; see the module docstring
        self._idle: queue.Queue[_Reader | None] = queue.Queue()
        for _ in range(workers):
            self._idle.put(None)  # a slot whose reader starts when first needed
        self._pids: set[int] = set()
        self._ahead: dict[tuple[object, ...], AheadJob] = {}  # see read_ahead
        self._fetchers: list[threading.Thread] = []
        self._ahead_lock = threading.Lock()
        self.ahead_sent = self.ahead_taken = 0  # chunks read ahead, and those a submit took

    def read(self, ctx: ReadContext, chunk: Chunk, lines: Lines | None = None) -> ChunkRead:
        """The chunk read by a reader process (from ``lines`` if given, else from the file)."""
        with self.submit(ctx, chunk, lines) as job:
            job.lines_read()
            return job.result()

    def submit(self, ctx: ReadContext, chunk: Chunk, lines: Lines | None = None) -> ReadJob | AheadJob:
        """Send the chunk to an idle reader (waiting for one); the job returns its answers. A
        chunk read ahead (``read_ahead``) answers from there."""
        if lines is None:
            with self._ahead_lock:
                ahead = self._ahead.pop(_ahead_key(ctx, chunk), None)
                self.ahead_taken += ahead is not None
            if ahead is not None:
                return ahead
        return self._request(ctx, chunk, lines)

    def read_ahead(self, ctx: ReadContext, chunk: Chunk) -> None:
        """Have a reader read ``chunk`` now, before a task asks for it: a thread takes its answers
        and the chunk's next ``submit`` gets them. For a run's first chunks, read while the process
        is still starting the run (importing Prefect, creating the flow run: 1 to 2 s on one core).
        Answers nobody asks for are dropped by ``close``."""
        key = _ahead_key(ctx, chunk)
        ahead = AheadJob()

        def fetch() -> None:
            try:
                with self._request(ctx, chunk) as job:
                    ahead.lines.set_result(job.lines_read())
                    ahead.read.set_result(job.result())
            except BaseException as exc:  # the chunk's submit raises it
                ahead.fail(exc)

        fetcher = threading.Thread(target=fetch, name="read-ahead", daemon=True)
        with self._ahead_lock:
            if key in self._ahead:
                return
            self._ahead[key] = ahead
            self._fetchers.append(fetcher)
            self.ahead_sent += 1
        try:
            fetcher.start()
        except BaseException as exc:
            with self._ahead_lock:
                self._ahead.pop(key, None)
                self._fetchers.remove(fetcher)
            ahead.fail(exc)
            raise

    def _request(self, ctx: ReadContext, chunk: Chunk, lines: Lines | None = None) -> ReadJob:
        frame = _request_frame(ctx, chunk, lines)
        reader = self._idle.get()
        deadline: _Deadline | None = None
        try:
            if reader is None:
                reader = self._start(ctx, chunk)
            with _Deadline(reader, self.reply_timeout_s) as deadline:
                frames.send(reader.requests, frame)
            if deadline.expired:
                raise EOFError("reader killed after the request was written")
        except BaseException as exc:  # _fail kills the reader and raises it again
            self._fail(reader, exc, ctx, chunk, timed_out=deadline is not None and deadline.expired)
        return ReadJob(self, reader, ctx, chunk)

    def _fail(self, reader: _Reader | None, exc: BaseException, ctx: ReadContext, chunk: Chunk, *,
              timed_out: bool = False) -> NoReturn:
        """A request or reply broke off: its reader is killed (half a message may sit in its
        pipes) and its slot starts a new one."""
        code = self._discard(reader)
        if timed_out:
            raise ReaderTimedOut(f"{ctx.source.path}: the reader process of chunk {chunk.label} sent no answer "
                                 f"within {self.reply_timeout_s:g} s (ingest.read_timeout_s); it was killed and "
                                 f"a new one starts") from None
        if isinstance(exc, FrameError):
            raise ReaderMisbehaved(f"{ctx.source.path}: the reader process of chunk {chunk.label} sent a message "
                                   f"that is not a reader's answer ({exc}); it was killed and a new one starts") from None
        if isinstance(exc, (EOFError, OSError)):
            raise ReaderCrashed(f"{ctx.source.path}: the reader process of chunk {chunk.label} "
                                f"died (exit {code})") from None
        raise exc

    def _discard(self, reader: _Reader | None) -> int | None:
        """Kill a reader that may hold half a message in its pipes; its exit code. Its slot
        starts a new one."""
        self._idle.put(None)  # first: the slot starts a new reader even if the cleanup fails
        return self._retire(reader, kill=True) if reader is not None else None

    def _release(self, reader: _Reader) -> None:
        """A reader that gave its last answer is idle again."""
        self._idle.put(reader)

    def _start(self, ctx: ReadContext, chunk: Chunk) -> _Reader:
        try:
            reader = _Reader()
        except OSError as exc:
            raise ReaderCrashed(f"{ctx.source.path}: could not start a reader process for chunk "
                                f"{chunk.label}: {exc}") from None
        self._pids.add(reader.process.pid)
        return reader

    def _retire(self, reader: _Reader, *, kill: bool = False) -> int:
        self._pids.discard(reader.process.pid)
        return reader.close(kill=kill)

    def pids(self) -> list[int]:
        """PIDs of started readers (a reader busy with a chunk included)."""
        return list(self._pids)

    def close(self) -> None:
        with self._ahead_lock:
            fetchers, self._fetchers = self._fetchers, []
        for fetcher in fetchers:  # a read ahead still running gives its reader back first
            fetcher.join()
        for _ in range(self.workers):
            reader = self._idle.get()
            if reader is not None:
                self._retire(reader)
        with self._ahead_lock:
            self._ahead.clear()
        for _ in range(self.workers):
            self._idle.put(None)


def _ahead_key(ctx: ReadContext, chunk: Chunk) -> tuple[object, ...]:
    return (*ctx.key, chunk)


class AheadJob:
    """A chunk read ahead (``ReadPool.read_ahead``), answering like a ``ReadJob`` as its
    thread gets each answer (or raising what the read raised)."""

    def __init__(self) -> None:
        self.lines: Future[int] = Future()
        self.read: Future[ChunkRead] = Future()

    def fail(self, exc: BaseException) -> None:
        for future in (self.lines, self.read):
            if not future.done():
                future.set_exception(exc)

    def lines_read(self) -> int:
        return self.lines.result()

    def result(self) -> ChunkRead:
        return self.read.result()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class ReadJob:
    """A chunk sent to a reader: ``lines_read`` waits for the count of lines it read, ``result``
    for the ``ChunkRead``. Use it as a context manager: the reader goes back to the pool with the
    last answer, and leaving the job before that (an exception) kills the reader, whose slot
    starts a new one."""

    def __init__(self, pool: ReadPool, reader: _Reader, ctx: ReadContext, chunk: Chunk) -> None:
        self._pool, self._ctx, self._chunk = pool, ctx, chunk
        self._reader: _Reader | None = reader
        self._lines: int | None = None

    def lines_read(self) -> int:
        if self._lines is None:
            self._lines = self._answer()
        return self._lines

    def result(self) -> ChunkRead:
        self.lines_read()
        return self._answer(last=True)

    def _answer(self, *, last: bool = False) -> Any:
        reader = self._reader
        if reader is None:
            raise RuntimeError("this read job has already answered")
        deadline: _Deadline | None = None
        try:
            with _Deadline(reader, self._pool.reply_timeout_s) as deadline:
                header, buffers = frames.receive(reader.replies)
            if deadline.expired:  # the answer came as the reader was killed: the reader is gone
                raise EOFError("reader killed after its answer")
            kind, value = _decode_answer(header, buffers, last=last)
        except BaseException as exc:  # _fail kills the reader and raises it again
            self._reader = None
            self._pool._fail(reader, exc, self._ctx, self._chunk, timed_out=deadline is not None and deadline.expired)
        if kind == "error" or last:  # the reader's last answer: it is idle again
            self._reader = None
            self._pool._release(reader)
        if kind == "error":
            raise value
        return value

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._reader is not None:  # answers left unread
            reader, self._reader = self._reader, None
            self._pool._discard(reader)


def _decode_answer(header: dict[str, Any], buffers: list[np.ndarray], *, last: bool) -> tuple[str, Any]:
    """A reader's answer: ("lines", count) first, then ("ok", ChunkRead); ("error", exception) at
    either step. Anything else is a ``FrameError``."""
    kind = header.get("kind")
    if kind == "error":
        return kind, frames.error_from_data(header.get("error"))
    if kind == "lines" and not last:
        return kind, frames.decode(int, header.get("count"), buffers)
    if kind == "ok" and last:
        return kind, frames.decode(ChunkRead, header.get("read"), buffers)
    raise FrameError(f"an answer of kind {kind!r} where {'the chunk read' if last else 'its line count'} was due")


_pools: dict[int, ReadPool] = {}
_pools_lock = threading.Lock()


def read_pool(workers: int, reply_timeout_s: float | None = None) -> ReadPool | None:
    """The process's pool of ``workers`` readers (None for 0: read in the calling thread); with
    ``reply_timeout_s``, its requests from now on wait that long for a reader's answer."""
    if workers <= 0:
        return None
    with _pools_lock:
        pool = _pools.get(workers)
        if pool is None:
            pool = _pools[workers] = ReadPool(workers)
        if reply_timeout_s is not None:
            pool.reply_timeout_s = reply_timeout_s
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
def _serve(requests: io.BufferedIOBase, replies: BinaryIO) -> None:
    """Per request: a "lines" answer (the count) once the chunk's lines are read, then "ok" (the
    ``ChunkRead``); or a single "error" if either step fails."""
    while True:
        try:
            header, buffers = frames.receive(requests)
        except EOFError:  # the parent closed the pipe or is gone
            return
        try:
            context = frames.decode(dict[str, Any], header.get("context"), buffers)
            ctx = kept_context(**{name: frames.decode(_CONTEXT_ARGS[name], value, buffers)
                                  for name, value in context.items()})
            chunk = frames.decode(Chunk, header.get("chunk"), buffers)
            sent = frames.decode(pa.Table | None, header.get("lines"), buffers)
            lines = list(iter_chunk_lines(ctx.source, chunk)) if sent is None else _table_lines(sent)
            del header, buffers, sent
            frames.send(replies, _reply_frame("lines", count=len(lines)))
            frame = _reply_frame("ok", read=read_chunk(ctx, chunk, lines))
        except BrokenPipeError:  # the parent is gone
            return
        except Exception as exc:  # the parent raises it
            frame = _reply_frame("error", error=frames.error_data(exc))
        lines = []  # an idle reader keeps no chunk alive
        try:
            frames.send(replies, frame)
        except BrokenPipeError:  # the parent is gone
            return
        del frame


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; EOF stops us
    gc.set_threshold(*GC_THRESHOLD)  # see vcfstream.runtime.resources
    _serve(os.fdopen(int(sys.argv[1]), "rb"), os.fdopen(int(sys.argv[2]), "wb"))


def process_rss() -> int:
    """Resident set size of this process plus the proportional set size of its reader processes
    (their own pages and their share of the libraries they map with others), in bytes."""
    total = psutil.Process().memory_info().rss
    for pid in reader_pids():
        try:
            total += psutil.Process(pid).memory_full_info().pss
        except psutil.Error:
            pass  # exited since
    return total
