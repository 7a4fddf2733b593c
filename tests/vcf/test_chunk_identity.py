"""A chunk is read only from the file that was planned: a file appended to, cut, rewritten,
replaced or swapped for a symbolic link between planning and reading fails its chunk with a clear
input error (not retried); an unchanged file reads as before, and every read of a chunk has the
same digest of its lines, which the run record keeps."""

from __future__ import annotations

import gzip
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from uuid import UUID

import pytest
from paths import REAL

from vcfstream.errors import FileChanged, InputError
from vcfstream.model import Chunk
from vcfstream.runtime.readpool import ReadPool
from vcfstream.settings import Settings
from vcfstream.vcf.chunks import plan_chunks
from vcfstream.vcf.reader import ChunkRead, ReadContext, read_chunk
from vcfstream.vcf.source import SourceFile, iter_chunk_lines, open_source

SAMPLE = REAL / "sample.vcf.gz"  # 9 records, tabix-indexed: region chunks


def _plan(tmp_path: Path, kind: str) -> tuple[Path, SourceFile, list[Chunk]]:
    """A private copy of a file, opened and planned: plain text (``range``: record-range chunks)
    or BGZF with its index (``region``: region chunks)."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    if kind == "range":
        path = inbox / "sample.vcf"
        path.write_bytes(gzip.decompress(SAMPLE.read_bytes()))
    else:
        path = inbox / "sample.vcf.gz"
        shutil.copyfile(SAMPLE, path)
        shutil.copyfile(f"{SAMPLE}.tbi", f"{path}.tbi")
        os.utime(f"{path}.tbi")  # newer than the file: used
    source = open_source(str(path))
    chunks = plan_chunks(source, 4)
    assert all(chunk.identity == source.identity for chunk in chunks)
    assert bool(chunks[0].regions) == (kind == "region")
    return path, source, chunks


@pytest.fixture(params=["range", "region"])
def planned(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, SourceFile, list[Chunk]]:
    return _plan(tmp_path, request.param)


def _read(source: SourceFile, chunk: Chunk) -> ChunkRead:
    return read_chunk(ReadContext.open("d", "GRCh38", source), chunk)


def test_an_unchanged_file_reads_every_chunk_with_the_same_digest_each_time(planned: Any) -> None:
    path, source, chunks = planned
    first = [_read(source, chunk) for chunk in chunks]
    assert sum(read.records for read in first) == 9
    again = open_source(str(path))  # planned again: the same plan, the same digests
    assert plan_chunks(again, 4) == chunks
    assert [_read(again, chunk).digest for chunk in chunks] == [read.digest for read in first]
    assert len({read.digest for read in first}) == len(chunks)  # each chunk's own lines
    assert all(len(read.digest) == 64 for read in first)


def test_a_file_appended_to_after_planning_fails_its_chunk_naming_the_file_and_its_growth(planned: Any) -> None:
    path, source, chunks = planned
    size = path.stat().st_size
    record = b"chr1\t999999\t.\tA\tG\t.\t.\t.\n"
    with open(path, "ab") as fh:
        fh.write(record)
    with pytest.raises(FileChanged, match=rf"^{path}: chunk .* not read: the file changed since it was planned \(when "
                                          rf"opened: it grew to {size + len(record):,} bytes \(planned: {size:,}\)"):
        _read(source, chunks[0])


def test_a_file_cut_short_after_planning_fails_its_chunk(planned: Any) -> None:
    path, source, chunks = planned
    size = path.stat().st_size
    os.truncate(path, size - 100)
    with pytest.raises(FileChanged, match=rf"it shrank to {size - 100:,} bytes \(planned: {size:,}\)"):
        _read(source, chunks[-1])


def test_a_file_rewritten_in_place_fails_its_chunk_naming_its_modification_time(planned: Any) -> None:
    path, source, chunks = planned
    data = path.read_bytes()
    path.write_bytes(data.replace(b"rs6054257", b"rs6054258"))  # same size
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, source.identity.mtime_ns + 1_000_000_000))  # a clock tick apart, surely
    with pytest.raises(FileChanged, match=r"it was modified at \d{4}-\d\d-\d\dT[\d:]+\.\d{9}Z \(planned: .*Z\)"):
        _read(source, chunks[0])


def test_a_rewrite_that_keeps_size_and_time_passes_the_identity_but_not_the_digest(tmp_path: Path) -> None:
    """What identity cannot see (a writer that sets the time back) the digest shows."""
    path, source, chunks = _plan(tmp_path, "range")
    before = [_read(source, chunk).digest for chunk in chunks]
    stat = path.stat()
    path.write_bytes(path.read_bytes().replace(b"rs6054257", b"rs6054258"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    after = [_read(source, chunk).digest for chunk in chunks]
    assert after != before and sum(a != b for a, b in zip(after, before, strict=True)) == 1


def test_a_file_replaced_by_another_fails_its_chunk(planned: Any, tmp_path: Path) -> None:
    path, source, chunks = planned
    other = tmp_path / "other"
    shutil.copyfile(path, other)  # the same bytes, another inode
    os.replace(other, path)
    with pytest.raises(FileChanged, match=rf"^{path}: chunk .* not read: .*it is another file now \(device \d+, "
                                          rf"inode \d+; planned: device \d+, inode {source.identity.inode}\)"):
        _read(source, chunks[0])


def test_a_file_swapped_for_a_symbolic_link_is_not_followed(planned: Any, tmp_path: Path) -> None:
    path, source, chunks = planned
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / path.name
    shutil.copyfile(path, secret)  # e.g. a file outside the input roots, same bytes even
    os.replace(path, outside / "moved")
    path.symlink_to(secret)
    with pytest.raises(FileChanged, match=rf"^{path}: chunk .* not read: the path is a symbolic link now"):
        _read(source, chunks[0])


def test_a_file_deleted_after_planning_fails_its_chunk(planned: Any) -> None:
    path, source, chunks = planned
    path.unlink()
    with pytest.raises(FileChanged, match=rf"^{path}: chunk .* not read: the file is gone since it was planned"):
        _read(source, chunks[0])


def test_a_file_written_to_while_its_chunk_is_read_fails_the_chunk(planned: Any) -> None:
    path, source, chunks = planned
    lines = iter_chunk_lines(source, chunks[0])
    next(lines)  # opened and checked
    with open(path, "ab") as fh:
        fh.write(b"\n")
    with pytest.raises(FileChanged, match=r"changed since it was planned \(after reading the chunk: it grew"):
        list(lines)


def test_a_reader_process_refuses_a_changed_file_with_the_same_error(planned: Any) -> None:
    path, source, chunks = planned
    pool = ReadPool(1)
    try:
        ctx = ReadContext.open("d", "GRCh38", source)
        assert pool.read(ctx, chunks[0]).digest == _read(source, chunks[0]).digest
        with open(path, "ab") as fh:
            fh.write(b"\n")
        with pytest.raises(FileChanged, match=rf"^{path}: chunk .* not read: the file changed") as failure:
            pool.read(ctx, chunks[0])
        assert failure.value.path == str(path)
    finally:
        pool.close()


def test_a_changed_file_is_an_input_error_the_chunk_task_does_not_retry() -> None:
    from tasks.chunk import _not_a_data_error

    def state(exc: Exception) -> Any:
        def result() -> None:
            raise exc
        return SimpleNamespace(result=result)

    changed = FileChanged("/in/a.vcf", "chunk records 0-3 not read: the file changed since it was planned")
    assert isinstance(changed, InputError)
    assert _not_a_data_error(None, None, state(changed)) is False
    assert _not_a_data_error(None, None, state(OSError("I/O error"))) is True  # a fault: retried


@pytest.fixture
def prefect_server(services: Settings) -> Iterator[Settings]:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: services.services.prefect_api_url}):
        yield services


def test_the_run_record_keeps_each_chunks_digest_and_a_rerun_records_the_same(prefect_server: Settings,
                                                                            make_name: Any) -> None:
    from vcfstream.cli.run import run_ingest
    from vcfstream.ledger import db

    settings = prefect_server.with_groups(ingest={"chunk_size": 4})
    source = open_source(str(SAMPLE))
    expected = {chunk.chunk_id: _read(source, chunk).digest for chunk in plan_chunks(source, 4)}
    recorded = []
    for dataset in (make_name("identity"), make_name("identity")):
        summary = run_ingest([str(SAMPLE)], settings=settings, dataset=dataset, stores=[])
        assert summary.state == "Completed", summary.errors
        with db.connect(settings) as conn:
            rows = conn.execute("SELECT c.chunk_id, c.read_digest FROM catalog.chunks c JOIN catalog.source_files f "
                                "ON f.id = c.source_file_id WHERE f.dataset = %s", (dataset,)).fetchall()
        recorded.append(dict(rows))
    assert recorded[0] == recorded[1] == expected


def test_a_file_changed_after_the_flow_planned_it_fails_its_chunks_by_name_without_retries(
        prefect_server: Settings, make_name: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    import tasks.chunk
    from vcfstream.cli.run import run_ingest
    from vcfstream.ledger import db

    path, _, _ = _plan(tmp_path, "range")
    planned = tasks.chunk.plan_chunks

    def plan_then_append(source: SourceFile, chunk_size: int) -> list[Chunk]:
        chunks = planned(source, chunk_size)
        with open(path, "ab") as fh:  # between the plan task and the chunk tasks
            fh.write(b"20\t1300000\t.\tA\tG\t.\t.\t.\tGT\t0|1\t0|0\t0/0\n")
        return chunks

    monkeypatch.setattr(tasks.chunk, "plan_chunks", plan_then_append)
    settings = prefect_server.with_groups(ingest={"chunk_size": 2, "chunk_workers": 1})
    dataset = make_name("changed")
    summary = run_ingest([str(path)], settings=settings, dataset=dataset, stores=[])
    assert summary.state == "Failed"
    assert any(f"{path}: chunk records" in error and "the file changed since it was planned" in error
               for error in summary.errors), summary.errors
    with db.connect(settings) as conn:
        rows = conn.execute("SELECT c.state, c.message, c.read_digest FROM catalog.chunks c JOIN catalog.source_files f "
                            "ON f.id = c.source_file_id WHERE f.dataset = %s", (dataset,)).fetchall()
    failed = [row for row in rows if row[0] != "Completed"]
    assert failed and all("changed since it was planned" in row[1] and row[2] is None for row in failed)
    # An input error is not retried: each failed chunk ran once. Task-run states reach the server as
    # events, a moment after the flow returns: read until every failed chunk's run is there.
    deadline = time.monotonic() + 30
    while True:
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(summary.flow_run_id)])))
        failed_runs = [run for run in runs if run.name.startswith("ingest-chunk") and run.state and run.state.is_failed()]
        if len(failed_runs) >= len(failed) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(failed_runs) == len(failed) and all(run.run_count == 1 for run in failed_runs)
