"""Reader processes: what they return equals reading in-thread, a killed reader fails one chunk
clearly and the next chunk gets a new reader, and vcfstream's errors cross process boundaries.
What crosses is data (JSON, Arrow IPC, raw numpy buffers), never pickle: a reader that sends
anything else is killed and its chunk fails."""

from __future__ import annotations

import gc
import io
import os
import pickle
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import psutil
import pyarrow as pa
import pytest
from paths import REAL

from vcfstream.errors import (
    FileChanged,
    IngestFailed,
    InputError,
    PublishInDoubt,
    PublishUnavailable,
    StoreError,
    VcfFormatError,
    VcfstreamError,
)
from vcfstream.runtime.frames import FrameError
from vcfstream.runtime.readpool import ReaderCrashed, ReaderTimedOut, ReadPool
from vcfstream.runtime.resources import GC_THRESHOLD, fewer_collections
from vcfstream.vcf.chunks import plan_chunks
from vcfstream.vcf.identity import identity_of
from vcfstream.vcf.reader import ChunkRead, ReadContext, kept_context, read_chunk
from vcfstream.vcf.source import LongLine, iter_chunk_lines, open_source


@pytest.fixture
def pool() -> Iterator[ReadPool]:
    pool = ReadPool(1)
    yield pool
    pool.close()


def _same(a: ChunkRead, b: ChunkRead) -> None:
    assert (a.records, a.reference_blocks) == (b.records, b.reference_blocks)
    assert a.quarantined == b.quarantined
    assert a.batch.table.equals(b.batch.table, check_metadata=True)
    for name in ("gt", "phased", "dp", "gq"):
        assert np.array_equal(getattr(a.batch, name), getattr(b.batch, name)), name
    assert (a.batch.dataset, a.batch.source_path, a.batch.source_digest, a.batch.samples) == \
        (b.batch.dataset, b.batch.source_path, b.batch.source_digest, b.batch.samples)


def _bad_file(tmp_path: Path) -> Path:
    path = tmp_path / "bad.vcf"
    path.write_text("\n".join([
        "##fileformat=VCFv4.2", "##contig=<ID=chr1,length=1000>",
        '##INFO=<ID=DP,Number=1,Type=Integer,Description="d">',
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="g">',
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1",
        "chr1\t10\t.\tA\tG\t50\tPASS\tDP=3\tGT\t0/1",
        "chr1\t11\t.\tA\tZ\t50\tPASS\tDP=3\tGT\t0/1",  # ALT not bases: quarantined
        "chr1\t12\t.\tC\tT,G\t.\t.\tDP=x\tGT\t1/2",  # DP not an integer: quarantined
        "chr1\t13\t.\tC\tT,G\t.\t.\tDP=4\tGT\t1/2", ""]))
    return path


def test_a_reader_process_returns_what_reading_in_thread_returns(pool: ReadPool, tmp_path: Path) -> None:
    paths = [p for p in sorted(REAL.iterdir()) if p.name.endswith((".vcf.gz", ".bcf", ".bgz"))]
    assert len(paths) >= 8
    bad = _bad_file(tmp_path)
    quarantined = []
    for path in [*paths, bad]:
        source = open_source(str(path))
        for chunk in plan_chunks(source, 500)[:3]:
            lines = list(iter_chunk_lines(source, chunk))
            here = read_chunk(ReadContext.open("d", "GRCh38", source), chunk, lines)
            with pool.submit(ReadContext.open("d", "GRCh38", source), chunk) as job:  # it reads the file
                assert job.lines_read() == len(lines)
                there = job.result()
            _same(here, there)
            _same(here, pool.read(ReadContext.open("d", "GRCh38", source), chunk, lines))  # lines sent
            if path == bad:
                quarantined += [(q.line, q.rule) for q in there.quarantined]
    assert quarantined == [(7, "alt.bases"), (8, "info.type")]  # the bad file's records, with their rules


def _readers(besides: list[psutil.Process] = ()) -> list[psutil.Process]:  # type: ignore[assignment]
    """Reader processes of this process, other than ``besides`` (e.g. the pool of a flow run)."""
    old = {p.pid for p in besides}
    return [p for p in psutil.Process().children()
            if p.pid not in old and "vcfstream.runtime.readpool" in " ".join(p.cmdline())]


def test_a_killed_reader_fails_its_chunk_by_name_and_the_next_chunk_gets_a_new_reader(pool: ReadPool) -> None:
    source = open_source(str(REAL / "chr22.vcf.gz"))
    chunk = plan_chunks(source, 50)[0]
    lines = list(iter_chunk_lines(source, chunk))
    ctx = ReadContext.open("d", "GRCh38", source)
    others = _readers()
    before = pool.read(ctx, chunk, lines)
    (reader,) = _readers(others)
    reader.send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 10
    while reader.status() != psutil.STATUS_ZOMBIE:  # dead, not reaped: the pool reads its exit code
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with pytest.raises(ReaderCrashed, match=r"chr22\.vcf\.gz: the reader process of chunk .* died \(exit -9\)"):
        pool.read(ctx, chunk, lines)
    _same(before, pool.read(ctx, chunk, lines))
    assert len(_readers(others)) == 1 and _readers(others)[0].pid != reader.pid


def test_a_hung_reader_is_killed_at_the_read_timeout_its_chunk_fails_clearly_and_a_retry_gets_a_new_one() -> None:
    source = open_source(str(REAL / "chr22.vcf.gz"))
    chunk = plan_chunks(source, 50)[0]
    ctx = ReadContext.open("d", "GRCh38", source)
    others = _readers()
    pool = ReadPool(1, reply_timeout_s=60.0)  # a reader's start (imports) may take over 1 s on a loaded machine
    try:
        before = pool.read(ctx, chunk)
        (reader,) = _readers(others)
        reader.suspend()  # SIGSTOP: alive, holding its pipes open, answering nothing
        pool.reply_timeout_s = 1.0
        started = time.monotonic()
        with pytest.raises(ReaderTimedOut, match=r"chr22\.vcf\.gz: the reader process of chunk .* sent no answer "
                                                 r"within 1 s \(ingest.read_timeout_s\); it was killed"):
            pool.read(ctx, chunk)
        assert 1.0 <= time.monotonic() - started < 5
        assert not reader.is_running() or reader.status() == psutil.STATUS_ZOMBIE
        pool.reply_timeout_s = 60.0
        _same(before, pool.read(ctx, chunk))  # the retry gets a new reader
        assert len(_readers(others)) == 1 and _readers(others)[0].pid != reader.pid
    finally:
        pool.close()


def test_the_read_timeout_is_the_settings_and_bounds_a_whole_answer_not_the_chunk() -> None:
    from vcfstream.runtime.readpool import close_pools, read_pool
    from vcfstream.settings import IngestSettings

    assert ReadPool(1).reply_timeout_s == IngestSettings().read_timeout_s
    try:
        pool = read_pool(1, reply_timeout_s=3.0)
        assert pool is not None and pool.reply_timeout_s == 3.0
        assert read_pool(1) is pool and pool.reply_timeout_s == 3.0  # unchanged when not given
    finally:
        close_pools()


def test_closing_the_pool_stops_its_readers(tmp_path: Path) -> None:
    pool = ReadPool(2)
    source = open_source(str(_bad_file(tmp_path)))
    chunk = plan_chunks(source, 10)[0]
    others = _readers()
    pool.read(ReadContext.open("d", "GRCh38", source), chunk, list(iter_chunk_lines(source, chunk)))
    readers = _readers(others)
    assert len(readers) == 1  # started on first use
    pool.close()
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in readers)


@pytest.mark.parametrize("error", [
    InputError("/data/x.vcf", "no such file"),
    VcfFormatError("/data/x.vcf", 12, "header.chrom_line", "no #CHROM line"),
    PublishUnavailable("kafka", "broker down"),
    PublishInDoubt("iggy", "timed out"),
    StoreError("kuzu", "locked"),
    IngestFailed("2 chunks failed", {"records": 3}),
])
def test_vcfstream_errors_survive_pickling_with_their_attributes(error: Exception) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert copy.__dict__ == error.__dict__


@pytest.mark.parametrize("given", [None, "4"])
def test_a_child_process_gets_two_malloc_arenas_unless_the_environment_says(
        given: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    if given is None:
        monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    else:
        monkeypatch.setenv("MALLOC_ARENA_MAX", given)
    source = open_source(str(REAL / "sample.vcf.gz"))
    chunk = plan_chunks(source, 10)[0]
    others = _readers()
    pool = ReadPool(1)
    try:
        pool.read(ReadContext.open("d", "GRCh38", source), chunk, list(iter_chunk_lines(source, chunk)))
        (reader,) = _readers(others)
        assert reader.environ()["MALLOC_ARENA_MAX"] == (given or "2")
    finally:
        pool.close()


def test_the_resource_guard_counts_the_readers_memory() -> None:
    from vcfstream.runtime.readpool import process_rss, read_pool, reader_pids

    source = open_source(str(REAL / "sample.vcf.gz"))
    chunk = plan_chunks(source, 10)[0]
    read_pool(1).read(ReadContext.open("d", "GRCh38", source), chunk, list(iter_chunk_lines(source, chunk)))
    assert reader_pids() and {p.pid for p in _readers()} >= set(reader_pids())
    # a reader has pysam, pyarrow and numpy loaded: tens of MB the flow's own RSS does not show
    assert process_rss() - psutil.Process().memory_info().rss > 20 * 2**20


def test_a_read_interrupted_before_its_reply_never_hands_that_reply_to_the_next_chunk(
        pool: ReadPool, monkeypatch: pytest.MonkeyPatch) -> None:
    from vcfstream.runtime import frames

    source = open_source(str(REAL / "NA12878.prod.chr20snippet.g.vcf.gz"))
    first, second = plan_chunks(source, 1000)[:2]
    ctx = ReadContext.open("d", "GRCh38", source)
    receive = frames.receive

    def interrupted(pipe: object) -> object:  # the request went out; the reply is never read
        monkeypatch.setattr(frames, "receive", receive)
        raise KeyboardInterrupt

    monkeypatch.setattr(frames, "receive", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pool.read(ctx, first, list(iter_chunk_lines(source, first)))
    lines = list(iter_chunk_lines(source, second))
    expected = read_chunk(ReadContext.open("d", "GRCh38", source), second, lines)
    assert expected.records and expected.records != len(list(iter_chunk_lines(source, first)))  # told apart
    _same(pool.read(ctx, second, lines), expected)


def test_a_job_left_after_its_line_count_never_hands_its_chunk_to_the_next(pool: ReadPool) -> None:
    source = open_source(str(REAL / "NA12878.prod.chr20snippet.g.vcf.gz"))
    first, second = plan_chunks(source, 1000)[:2]
    ctx = ReadContext.open("d", "GRCh38", source)
    with pool.submit(ctx, first) as job:
        assert job.lines_read() == len(list(iter_chunk_lines(source, first)))
    expected = read_chunk(ReadContext.open("d", "GRCh38", source), second)
    assert expected.records != len(list(iter_chunk_lines(source, first)))  # told apart
    _same(pool.read(ctx, second), expected)


def test_a_file_that_breaks_while_its_lines_are_read_fails_the_chunk_and_the_reader_stays(
        pool: ReadPool, tmp_path: Path) -> None:
    source = open_source(str(REAL / "chr22.vcf.gz"))
    chunk = plan_chunks(source, 50)[0]
    broken = tmp_path / "chr22.vcf.gz"
    broken.write_bytes((REAL / "chr22.vcf.gz").read_bytes()[:30_000])  # cut short after it was planned
    ctx = ReadContext.open("d", "GRCh38", source)
    ctx_broken = ReadContext.open("d-broken", "GRCh38", replace(source, path=str(broken), index=None))
    with pytest.raises(OSError, match=r"chr22\.vcf\.gz: chunk records .*BGZF"):  # the reader's own error naming the file, not ReaderCrashed
        pool.read(ctx_broken, replace(chunk, regions=(), first_record=0, n_records=10**9, voffset=None,
                                      identity=identity_of(broken.stat())))
    readers = _readers()
    _same(pool.read(ctx, chunk), read_chunk(ReadContext.open("d", "GRCh38", source), chunk))
    assert _readers() == readers  # the same reader read on


def test_a_chunk_read_ahead_answers_its_submit_and_only_that_one(pool: ReadPool, tmp_path: Path) -> None:
    source = open_source(str(REAL / "multi_contig.vcf.gz"))
    first, second = plan_chunks(source, 500)[:2]
    ctx = ReadContext.open("d", "GRCh38", source)
    pool.read_ahead(ctx, first)
    pool.read_ahead(ctx, first)  # already under way: nothing more is sent
    assert pool.ahead_sent == 1
    here = read_chunk(ReadContext.open("d", "GRCh38", source), first)
    with pool.submit(ReadContext.open("d", "GRCh38", source), first) as job:  # an equal context
        assert type(job).__name__ == "AheadJob"
        assert job.lines_read() == len(list(iter_chunk_lines(source, first)))
        _same(here, job.result())
    with pool.submit(ctx, first) as job:  # taken once: the next submit reads again
        assert type(job).__name__ == "ReadJob"
        _same(here, job.result())
    pool.read_ahead(ReadContext.open("other-dataset", "GRCh38", source), second)
    with pool.submit(ctx, second) as job:  # another dataset's read ahead does not answer
        assert type(job).__name__ == "ReadJob"
        _same(read_chunk(ReadContext.open("d", "GRCh38", source), second), job.result())
    pool.close()  # drops the answer nobody asked for
    assert not pool._ahead

    source = open_source(str(REAL / "chr22.vcf.gz"))
    broken = tmp_path / "chr22.vcf.gz"
    broken.write_bytes((REAL / "chr22.vcf.gz").read_bytes()[:30_000])
    ctx_broken = ReadContext.open("d-broken", "GRCh38", replace(source, path=str(broken), index=None))
    whole = replace(plan_chunks(source, 50)[0], regions=(), first_record=0, n_records=10**9, voffset=None,
                    identity=identity_of(broken.stat()))
    pool.read_ahead(ctx_broken, whole)
    with pytest.raises(OSError, match="BGZF"), pool.submit(ctx_broken, whole) as job:  # the read's error
        assert type(job).__name__ == "AheadJob"
        job.lines_read()
    assert (pool.ahead_sent, pool.ahead_taken) == (3, 2)


def test_closing_waits_for_a_read_ahead_that_has_not_reached_a_reader_yet(
        pool: ReadPool, monkeypatch: pytest.MonkeyPatch) -> None:
    source = open_source(str(REAL / "sample.vcf.gz"))
    request, reached, go_on = pool._request, threading.Event(), threading.Event()

    def late(*args: object) -> object:
        reached.set()
        assert go_on.wait(10)  # held until close has begun
        return request(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(pool, "_request", late)
    pool.read_ahead(ReadContext.open("d", "GRCh38", source), plan_chunks(source, 10)[0])
    assert reached.wait(10)
    closing = threading.Thread(target=pool.close)
    closing.start()
    closing.join(0.5)  # before the fix close was done by now, having given the slots back
    go_on.set()
    closing.join(10)
    for thread in threading.enumerate():
        if thread.name == "read-ahead":
            thread.join(10)
    assert not closing.is_alive()
    assert pool.pids() == []  # before, the late thread took a slot close gave back and started a reader


def test_the_cli_reads_the_first_chunks_ahead_with_the_context_the_flow_will_use(tmp_path: Path) -> None:
    from vcfstream.cli.run import _read_ahead
    from vcfstream.publish.limits import message_options
    from vcfstream.runtime.readpool import close_pools, read_pool
    from vcfstream.settings import load_settings

    settings = load_settings(home=tmp_path, ingest={"read_processes": 1, "chunk_size": 500})
    path = str(REAL / "multi_contig.vcf.gz")
    try:
        _read_ahead([str(tmp_path / "missing.vcf.gz"), path], settings, "d", None)  # left for the flow
        pool = read_pool(1)
        assert pool is not None and not pool._ahead
        _read_ahead([path], settings, "d", None)
        source = open_source(path)  # as the flow's plan opens it, read with the flow's message options
        options = message_options(settings)
        chunks = plan_chunks(source, 500)
        assert len(chunks) > settings.ingest.chunk_workers == len(pool._ahead)  # one per chunk task started at once
        for chunk in chunks[:settings.ingest.chunk_workers]:
            with pool.submit(kept_context("d", settings.ingest.assembly, source, None, options), chunk) as job:
                assert type(job).__name__ == "AheadJob"
                _same(read_chunk(ReadContext.open("d", settings.ingest.assembly, source, None, options), chunk),
                      job.result())
        with pool.submit(kept_context("d", settings.ingest.assembly, source, None, options), chunks[-1]) as job:
            assert type(job).__name__ == "ReadJob"  # not read ahead: read now
            assert job.result().records > 0
    finally:
        close_pools()


def test_a_tasks_module_in_the_working_directory_does_not_shadow_the_readers_code(
        pool: ReadPool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tasks.py").write_text("raise SystemExit('the wrong tasks')\n")  # e.g. an Invoke file
    monkeypatch.chdir(tmp_path)
    source = open_source(str(REAL / "sample.vcf.gz"))
    chunk = plan_chunks(source, 10)[0]
    lines = list(iter_chunk_lines(source, chunk))
    _same(pool.read(ReadContext.open("d", "GRCh38", source), chunk, lines),
          read_chunk(ReadContext.open("d", "GRCh38", source), chunk, lines))


def test_a_kept_context_is_opened_once_per_file_and_dataset_and_the_oldest_goes_first() -> None:
    files = [open_source(str(REAL / name)) for name in
             ("sample.vcf.gz", "mixed_ploidy.vcf.gz", "multi_contig.vcf.gz", "chr_m_indels.vcf.gz",
              "field_type_combos.vcf.gz")]
    first = kept_context("kept-a", "GRCh38", files[0])
    assert kept_context("kept-a", "GRCh38", files[0]) is first
    assert kept_context("kept-b", "GRCh38", files[0]) is not first  # another dataset keys differently
    for source in files[1:]:  # four more files: the least recently used contexts are dropped
        kept_context("kept-a", "GRCh38", source)
    assert kept_context("kept-a", "GRCh38", files[0]) is not first
    assert kept_context("kept-a", "GRCh38", files[4]) is kept_context("kept-a", "GRCh38", files[4])


def test_overlapping_runs_keep_the_raised_collector_threshold_until_the_last_leaves() -> None:
    before = gc.get_threshold()
    first, second = fewer_collections(), fewer_collections()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert gc.get_threshold() == GC_THRESHOLD  # the second run is still ingesting
    second.__exit__(None, None, None)
    assert gc.get_threshold() == before


def _across_a_pipe(header: dict[str, object], buffers: list[object]) -> tuple[dict[str, Any], list[np.ndarray]]:
    from vcfstream.runtime import frames

    read_fd, write_fd = os.pipe()
    with os.fdopen(write_fd, "wb") as writer, os.fdopen(read_fd, "rb") as reader:
        sender = threading.Thread(target=frames.send, args=(writer, frames.frame(header, buffers)))  # type: ignore[arg-type]
        sender.start()  # a frame can be larger than the pipe's buffer
        received = frames.receive(reader)
        sender.join()
    return received


def test_a_frame_carries_every_buffer_layout_across_a_pipe() -> None:
    """Arrays and tables travel as raw buffers: strided, Fortran-ordered, empty and sliced ones
    must arrive equal, and arrive writable (numpy's own memory, not a read-only view)."""
    from vcfstream.runtime import frames

    values: list[tuple[object, object]] = [
        (np.ndarray, np.arange(12).reshape(3, 4)[:, ::2]), (np.ndarray, np.asfortranarray(np.arange(12).reshape(3, 4))),
        (np.ndarray, np.zeros((0, 3), dtype=np.int8)), (np.ndarray, np.arange(5)[::-1]),
        (np.ndarray, np.array([[True, False]])),
        (pa.Table, pa.table({"a": pa.array(["x", "y", None]), "b": pa.array([1, 2, 3])}).slice(1)),
        (bytes, b""), (bytes, b"\x80pickle?"), (tuple[str, int | None], ("x", None))]
    for expected, value in values:
        buffers: list[Any] = []
        header, received = _across_a_pipe({"value": frames.encode(value, buffers)}, buffers)
        back = frames.decode(expected, header["value"], received)
        if isinstance(value, np.ndarray):
            assert back.dtype == value.dtype and back.shape == value.shape and (back == value).all()
            assert back.flags.writeable
        elif isinstance(value, pa.Table):
            assert back.equals(value)
        else:
            assert back == value


def test_a_chunk_read_crosses_as_data_with_its_table_and_matrices_not_copied(tmp_path: Path) -> None:
    from vcfstream.runtime import frames

    source = open_source(str(REAL / "sample.vcf.gz"))
    read = read_chunk(ReadContext.open("d", "GRCh38", source), plan_chunks(source, 10)[0])
    buffers: list[Any] = []
    header, received = _across_a_pipe({"read": frames.encode(read, buffers)}, buffers)
    back = frames.decode(ChunkRead, header["read"], received)
    _same(read, back)
    assert back.digest == read.digest and back.quarantined == read.quarantined
    # the table's columns and the matrices lie in the buffers read from the pipe
    inside = [(b.ctypes.data, b.ctypes.data + b.nbytes) for b in received]
    for array in (back.batch.gt, back.batch.dp):
        assert any(lo <= array.ctypes.data < hi for lo, hi in inside)
    column = back.batch.table.column("value").chunks[0].buffers()[2]
    assert any(lo <= column.address < hi for lo, hi in inside)


@pytest.mark.parametrize("payload", [
    pickle.dumps(("ok", "anything")),  # what a reader sent before: a pickle, never loaded now
    b"VSF1" + b"\xff" * 8,  # a header over the limits
    b"VSF1\x05\x00\x00\x00\x00\x00\x00\x00{\"a\":",  # a header that is not JSON
])
def test_bytes_that_are_not_a_frame_are_refused_unread(payload: bytes) -> None:
    from vcfstream.runtime import frames

    class Exploding:  # a pickle that would run code on load
        def __reduce__(self) -> tuple[object, ...]:
            return (os.system, ("touch /tmp/should-never-exist",))

    for data in (payload, pickle.dumps(Exploding())):
        with pytest.raises(FrameError):
            frames.receive(io.BytesIO(data))  # type: ignore[arg-type]
    assert not os.path.exists("/tmp/should-never-exist")


@pytest.mark.parametrize("header", [
    {"kind": "pickle", "data": "gASV"},  # an unknown kind of answer
    {"kind": "ok", "read": {"batch": None}},  # an answer that is not a ChunkRead
    {"kind": "error", "error": {"type": "SystemExit", "message": "bye"}},  # an error outside the known classes
    {"kind": "ok", "read": {"__reduce__": "os.system"}},  # a field no ChunkRead has
])
def test_a_reader_that_sends_something_else_is_killed_and_its_chunk_fails(
        pool: ReadPool, monkeypatch: pytest.MonkeyPatch, header: dict[str, Any]) -> None:
    import vcfstream.runtime.readpool as readpool
    from vcfstream.runtime import frames

    source = open_source(str(REAL / "sample.vcf.gz"))
    chunk = plan_chunks(source, 10)[0]
    ctx = ReadContext.open("d", "GRCh38", source)
    others = _readers()
    pool.read(ctx, chunk)
    (reader,) = _readers(others)
    real = frames.receive
    answers = iter([real, lambda pipe: (real(pipe), (header, []))[1]])  # the line count, then the crafted answer

    def crafted(pipe: Any) -> Any:
        return next(answers)(pipe)

    monkeypatch.setattr(frames, "receive", crafted)
    with pytest.raises(readpool.ReaderMisbehaved, match=r"sample\.vcf\.gz: the reader process of chunk .* sent a "
                                                        r"message that is not a reader's answer \(.*\); it was killed"):
        pool.read(ctx, chunk)
    monkeypatch.setattr(frames, "receive", real)
    assert not reader.is_running() or reader.status() == psutil.STATUS_ZOMBIE
    _same(pool.read(ctx, chunk), read_chunk(ReadContext.open("d", "GRCh38", source), chunk))  # a new reader


@pytest.mark.parametrize("error", [
    InputError("/data/x.vcf", "no such file"),
    FileChanged("/data/x.vcf", "chunk records 0-9 not read: the file changed since it was planned"),
    VcfFormatError("/data/x.vcf", 12, "header.chrom_line", "no #CHROM line"),
    VcfFormatError("/data/x.vcf", None, "file.truncated", "BGZF end-of-file marker missing"),
    OSError("Error closing BGZFile object"),
])
def test_errors_cross_as_data_with_their_type_and_fields(error: Exception) -> None:
    from vcfstream.runtime import frames

    back = frames.error_from_data(orjson.loads(orjson.dumps(frames.error_data(error))))
    assert type(back) is type(error) and str(back) == str(error)
    assert {k: getattr(back, k, None) for k in ("path", "line", "rule")} == \
        {k: getattr(error, k, None) for k in ("path", "line", "rule")}


def test_an_error_outside_the_known_classes_arrives_as_a_vcfstream_error_naming_its_type() -> None:
    from vcfstream.runtime import frames

    back = frames.error_from_data(frames.error_data(KeyError("AF")))
    assert type(back) is VcfstreamError and str(back) == "KeyError: 'AF'"
    back = frames.error_from_data(frames.error_data(FileNotFoundError(2, "No such file or directory")))
    assert type(back) is OSError and str(back) == "FileNotFoundError: [Errno 2] No such file or directory"


def test_a_request_carries_no_pickle_and_a_reader_reads_the_lines_it_is_sent(pool: ReadPool) -> None:
    import vcfstream.runtime.readpool as readpool

    source = open_source(str(REAL / "sample.vcf.gz"))
    chunk = plan_chunks(source, 10)[0]
    ctx = ReadContext.open("d", "GRCh38", source)
    lines = [*iter_chunk_lines(source, chunk)]
    lines[0] = (lines[0][0], LongLine.of(lines[0][1], 10**9))  # a line over the limit, kept as its head
    frame = b"".join(bytes(memoryview(piece)) for piece in readpool._request_frame(ctx, chunk, lines))
    assert frame.startswith(b"VSF1") and b"vcfstream.model" not in frame  # data; a pickle names its classes
    read = pool.read(ctx, chunk, lines)
    assert read.quarantined[0].rule == "record.line_length" and read.records == len(lines)
