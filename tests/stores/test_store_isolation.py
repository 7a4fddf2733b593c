"""Kuzu and LanceDB written in a store-writer process (``vcfstream.stores.writer``): a writer that
dies mid-write fails that write alone, naming the store, and a retry writes everything; a
normal write stores what an in-process write stores.

The groups are staged Arrow files, as the flow leaves them (``vcfstream.runtime.staging``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pyarrow as pa
import pytest
from paths import REAL

from vcfstream.errors import StoreError
from vcfstream.model import ALLELE_SCHEMA, AlleleBatch, Chunk
from vcfstream.runtime import staging
from vcfstream.settings import Settings, load_settings
from vcfstream.stores import graph, lance, writer
from vcfstream.stores.registry import open_store
from vcfstream.stores.writer import WriterDied, WriterTimedOut, close_writers, write_staged, writer_pids, writer_pss


def cohort_batch(variants: int, samples: int, *, seed: int = 7, dataset: str = "wide") -> AlleleBatch:
    """``variants`` SNVs on chr1 with random diploid calls of ``samples`` samples (about a third
    of the calls carry the allele, some are missing)."""
    rng = np.random.default_rng(seed)
    pos = np.arange(1, variants + 1, dtype=np.int64) * 10
    ref = rng.choice(["A", "C"], variants).tolist()
    alt = rng.choice(["G", "T"], variants).tolist()
    keys = [f"GRCh38:chr1:{p}:{r}:{a}" for p, r, a in zip(pos.tolist(), ref, alt, strict=True)]
    table = pa.table({
        "message_id": [hashlib.md5(key.encode()).digest() for key in keys], "variant_key": keys,
        "assembly": ["GRCh38"] * variants, "contig": ["chr1"] * variants, "pos": pos, "ref": ref, "alt": alt,
        "end": pos, "variant_type": ["SNV"] * variants, "allele_index": [1] * variants, "n_alts": [1] * variants,
        "vcf_id": [None] * variants, "qual": rng.uniform(10, 99, variants), "filters": [["PASS"]] * variants,
        "info": ["{}"] * variants, "af": [None] * variants, "line": list(range(10, 10 + variants)),
        "value": [b"{}"] * variants,
    }, schema=ALLELE_SCHEMA)  # fmt: skip
    gt = rng.choice(np.array([0, 0, 1, -1], dtype=np.int8), size=(variants, samples, 2), p=[0.6, 0.1, 0.28, 0.02])
    phased = rng.random((variants, samples)) < 0.5
    dp = rng.integers(5, 60, (variants, samples), dtype=np.int32)
    gq = rng.integers(10, 99, (variants, samples), dtype=np.int32)
    names = [f"S{i:04d}" for i in range(samples)]
    return AlleleBatch(dataset, "wide.vcf.gz", hashlib.sha256(b"wide.vcf.gz").hexdigest(), names, table, gt, phased, dp, gq)


def stage(batch: AlleleBatch, stage_dir: Path, chunks: int) -> list[str]:
    """The batch staged as ``chunks`` chunks of one file, in order."""
    bounds = np.linspace(0, len(batch), chunks + 1, dtype=int)
    paths = []
    for index, (start, stop) in enumerate(itertools.pairwise(bounds)):
        part = AlleleBatch(batch.dataset, batch.source_path, batch.source_digest, batch.samples,
                           batch.table.slice(start, stop - start), batch.gt[start:stop], batch.phased[start:stop],
                           batch.dp[start:stop], batch.gq[start:stop])
        paths.append(staging.stage_batch(part, stage_dir, Chunk(path=batch.source_path, index=index,
                                                                digest=batch.source_digest)))
    return paths


def settings_under(root: Path, **kuzu: object) -> Settings:
    return load_settings(home=root, lancedb={"uri": str(root / "lancedb")}, kuzu={"path": root / "graph.kuzu", **kuzu})


@pytest.fixture(autouse=True)
def no_writers_left() -> Iterator[None]:
    yield
    close_writers()
    assert writer_pids() == []


def test_a_writer_process_stores_what_an_in_process_write_stores(tmp_path: Path) -> None:
    paths = stage(cohort_batch(600, 40), tmp_path / "staging", chunks=3)
    isolated, in_process = settings_under(tmp_path / "isolated"), settings_under(tmp_path / "in-process")
    [batch] = staging.load_group(paths)
    for store in ("kuzu", "lancedb"):
        with open_store(store, in_process) as backend:
            expected = backend.write(batch)
        written = write_staged(store, paths, isolated)
        assert (written.written, written.alleles, written.dataset, written.source_path) == (
            expected, 600, "wide", "wide.vcf.gz")
        assert write_staged(store, paths, isolated).written == 0  # idempotent, as in process
    assert writer_pids() and writer_pss() > 10 * 2**20  # the writers' memory counts toward the run's

    counts = graph.graph_counts(isolated)
    assert counts == graph.graph_counts(in_process)
    assert counts["Variant"] == 600 and counts["CARRIED_BY"] == int((batch.gt == 1).any(axis=2).sum())
    for key in batch.table.column("variant_key").to_pylist()[::150]:
        assert graph.carriers(isolated, key) == graph.carriers(in_process, key)
        assert graph.carriers(isolated, key)  # about a third of 40 samples carry each variant
    assert graph.shared_variants(isolated, "S0001", "S0002") == graph.shared_variants(in_process, "S0001", "S0002")
    assert lance.count_variants(isolated) == lance.count_variants(in_process) == 600
    key = batch.table.column("variant_key")[10].as_py()
    assert lance.similar_variants(isolated, key, k=5) == lance.similar_variants(in_process, key, k=5)


def test_an_idle_writer_exits_and_the_next_write_starts_another(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer, "IDLE_S", 0.5)
    settings = settings_under(tmp_path / "isolated")
    paths = stage(cohort_batch(100, 5), tmp_path / "staging", chunks=2)
    assert write_staged("kuzu", paths[:1], settings).written == 50
    (first,) = writer_pids()
    deadline = time.monotonic() + 30
    while writer_pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert writer_pids() == []
    assert write_staged("kuzu", paths, settings).written == 50
    assert writer_pids() != [first]


def _held_by_another(lock: Path) -> bool:
    """Whether another process holds ``lock`` exclusively (a Kuzu write is under way)."""
    if not lock.exists():
        return False
    fd = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def _stop_mid_write(settings: Settings, store: str = "kuzu") -> int:
    """Wait until the store's writer holds its write lock (Kuzu: and has begun its WAL), then
    freeze it (SIGSTOP) there; its PID."""
    if store == "kuzu":
        database = Path(settings.kuzu_location)
        lock, wal = database.with_name(database.name + ".lock"), database.with_name(database.name + ".wal")
    else:
        lock = wal = Path(settings.lancedb_location) / f"{lance.TABLE}.write.lock"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pids = writer_pids()
        if pids and _held_by_another(lock) and wal.exists() and (store != "kuzu" or wal.stat().st_size > 0):
            os.kill(pids[0], signal.SIGSTOP)
            if _held_by_another(lock):  # stopped before the write ended
                return pids[0]
            os.kill(pids[0], signal.SIGCONT)
            break
        time.sleep(0.01)
    raise AssertionError(f"the {store} writer never held its lock with a WAL: the write is too short to interrupt")


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGSEGV])
def test_a_writer_killed_mid_write_fails_naming_the_store_and_a_retry_writes_everything(
        tmp_path: Path, how: signal.Signals) -> None:
    # A 16 MiB pool: the group is written as many transactions of at most ~16k carrier edges,
    # so the writer dies between committed parts and uncommitted ones.
    settings = settings_under(tmp_path / "isolated", buffer_pool_mb=16)
    stage_dir = tmp_path / "staging"
    paths = stage(cohort_batch(4_000, 100), stage_dir, chunks=4)
    queue = staging.StoreQueue(["kuzu"], stage_dir, batch_alleles=10_000)
    queue.expect("wide-file", chunks=len(paths))
    for path in paths:
        queue.add(staging.Staged(path, 1_000, "wide-file"))
    group = queue.take("kuzu")
    assert [item.path for item in group] == paths

    failure: list[BaseException] = []

    def write() -> None:
        try:
            write_staged("kuzu", [item.path for item in group], settings)
        except BaseException as exc:  # the test thread checks it
            failure.append(exc)

    writing = threading.Thread(target=write)
    writing.start()
    pid = _stop_mid_write(settings)
    os.kill(pid, how)
    with contextlib.suppress(ProcessLookupError):  # gone already (SIGKILL)
        os.kill(pid, signal.SIGCONT)  # a stopped process takes SIGSEGV only once it runs again
    writing.join(60)
    assert not writing.is_alive()
    assert len(failure) == 1 and isinstance(failure[0], WriterDied)
    assert failure[0].store == "kuzu"
    assert str(failure[0]).startswith(f"kuzu: writer process died with {how.name} writing 4 staged chunk(s)")
    assert "a retry writes them" in str(failure[0])
    queue.abandon("kuzu")  # what the flow does with a store that failed: nothing is recorded

    retried = staging.StoreQueue(["kuzu"], stage_dir, batch_alleles=10_000)  # a retry of the run
    assert retried.earlier["kuzu"] == 0
    for path in paths:
        retried.add(staging.Staged(path, 1_000, "wide-file"))
    again = retried.take("kuzu")
    assert [item.path for item in again] == paths
    written = write_staged("kuzu", paths, settings)  # a new writer; Kuzu rolls back the dead one's part
    retried.finish("kuzu", again, written.written)

    reference = settings_under(tmp_path / "in-process", buffer_pool_mb=16)
    [batch] = staging.load_group(paths)
    graph.GraphStore(reference).write(batch)
    assert graph.graph_counts(settings) == graph.graph_counts(reference)
    assert graph.graph_counts(settings)["Variant"] == 4_000
    for key in batch.table.column("variant_key").to_pylist()[::997]:
        assert graph.carriers(settings, key) == graph.carriers(reference, key)
    # A write rolled back in process can leave Kuzu 0.11 growing its file without bound at the
    # next write (docs/architecture.md, known limits); a writer's death does not.
    retried_size, reference_size = (Path(s.kuzu_location).stat().st_size for s in (settings, reference))
    assert retried_size <= 2 * reference_size


_PARENT = """
import json, sys
from vcfstream.settings import load_settings
from vcfstream.stores.writer import write_staged
root, paths = sys.argv[1], json.loads(sys.argv[2])
write_staged("kuzu", paths, load_settings(home=root, kuzu={"path": root + "/graph.kuzu", "buffer_pool_mb": 64}))
"""


def test_a_writer_whose_process_is_killed_mid_write_ends_too_and_a_retry_writes_everything(tmp_path: Path) -> None:
    root = tmp_path / "isolated"
    settings = settings_under(root, buffer_pool_mb=64)
    paths = stage(cohort_batch(12_000, 100), tmp_path / "staging", chunks=2)  # seconds of parts of 67k edges
    lock = Path(settings.kuzu_location).with_name("graph.kuzu.lock")
    parent = subprocess.Popen([sys.executable, "-c", _PARENT, str(root), json.dumps(paths)])
    try:
        deadline = time.monotonic() + 60
        while not (_held_by_another(lock) and psutil.Process(parent.pid).children()):
            assert time.monotonic() < deadline and parent.poll() is None, "the writer never began its write"
            time.sleep(0.01)
        (orphan,) = psutil.Process(parent.pid).children()
    finally:
        parent.kill()  # the flow's process dies mid-write
        parent.wait()
    orphan.wait(timeout=10)  # gone within seconds (psutil.TimeoutExpired if not)
    assert not _held_by_another(lock)
    kept = graph.graph_counts(settings)["Variant"]  # the parts it committed before it ended
    assert kept < 12_000  # it did not finish the write nobody waits for
    assert write_staged("kuzu", paths, settings).written == 12_000 - kept
    assert graph.graph_counts(settings)["Variant"] == 12_000


def test_a_writer_that_does_not_answer_in_time_is_killed_and_the_write_can_be_retried(tmp_path: Path) -> None:
    settings = settings_under(tmp_path / "isolated")
    paths = stage(cohort_batch(400, 20), tmp_path / "staging", chunks=2)
    assert write_staged("kuzu", paths[:1], settings).written == 200  # the writer is running
    (pid,) = writer_pids()
    os.kill(pid, signal.SIGSTOP)  # hung: it will never answer
    hurried = settings.with_groups(ingest={"store_timeout_s": 2.0})
    with pytest.raises(WriterTimedOut, match=r"^kuzu: writer process sent no answer within 2 s "
                                             r"\(ingest.store_timeout_s\) writing 2 staged chunk\(s\); it was killed"):
        write_staged("kuzu", paths, hurried)
    assert pid not in writer_pids()
    assert write_staged("kuzu", paths, settings).written == 200  # a new writer: the rest
    assert graph.graph_counts(settings)["Variant"] == 400


def test_a_store_error_in_the_writer_comes_back_naming_the_store(tmp_path: Path) -> None:
    paths = stage(cohort_batch(50, 5), tmp_path / "staging", chunks=1)
    tiny = settings_under(tmp_path / "isolated", buffer_pool_mb=1, lock_timeout_s=0.5)
    lock = Path(tiny.kuzu_location).with_name("graph.kuzu.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another writer holds the database
    try:
        with pytest.raises(StoreError, match=r"^kuzu: .*graph\.kuzu\.lock is still locked by another writer") as failure:
            write_staged("kuzu", paths, tiny)
    finally:
        os.close(fd)
    assert not isinstance(failure.value, WriterDied)  # the writer answered; it lives on
    assert writer_pids()
    with pytest.raises(StoreError, match=r"^catalog: not written in a writer process"):
        write_staged("catalog", paths, tiny)


def test_a_failed_kuzu_transaction_is_left_to_the_next_writer_which_writes_everything(tmp_path: Path) -> None:
    """An 8 MiB buffer pool cannot hold the group's lookups: the write fails inside a
    transaction. Its writer answers with Kuzu's error, then exits without rolling back; the next
    writer (a retry with a pool that fits) finds the database as a crash would leave it."""
    paths = stage(cohort_batch(4_000, 100), tmp_path / "staging", chunks=2)
    small = settings_under(tmp_path / "isolated", buffer_pool_mb=8)
    with pytest.raises(StoreError, match=r"^kuzu: writing 4000 alleles of wide\.vcf\.gz failed \(raise "
                                         r"VCFSTREAM_KUZU_BUFFER_POOL_MB, now 8\): Buffer manager") as failure:
        write_staged("kuzu", paths, small)
    assert not isinstance(failure.value, WriterDied)
    assert writer_pids() == []  # the writer is gone, its transaction not rolled back

    fits = settings_under(tmp_path / "isolated", buffer_pool_mb=64)
    assert write_staged("kuzu", paths, fits).written == 4_000
    reference = settings_under(tmp_path / "in-process", buffer_pool_mb=64)
    graph.GraphStore(reference).write(staging.load_group(paths)[0])
    assert graph.graph_counts(fits) == graph.graph_counts(reference)


def test_a_lancedb_writer_killed_mid_write_fails_naming_the_store_and_a_retry_writes_everything(tmp_path: Path) -> None:
    settings = settings_under(tmp_path / "isolated")
    paths = stage(cohort_batch(20_000, 20), tmp_path / "staging", chunks=4)
    failure: list[BaseException] = []

    def write() -> None:
        try:
            write_staged("lancedb", paths, settings)
        except BaseException as exc:  # the test thread checks it
            failure.append(exc)

    writing = threading.Thread(target=write)
    writing.start()
    pid = _stop_mid_write(settings, "lancedb")
    os.kill(pid, signal.SIGSEGV)
    os.kill(pid, signal.SIGCONT)
    writing.join(60)
    assert len(failure) == 1 and isinstance(failure[0], WriterDied)
    assert str(failure[0]).startswith("lancedb: writer process died with SIGSEGV writing 4 staged chunk(s)")
    kept = lance.count_variants(settings)  # 0, or all: a LanceDB commit is one manifest
    assert kept in (0, 20_000)
    assert write_staged("lancedb", paths, settings).written == 20_000 - kept
    assert lance.count_variants(settings) == 20_000


@pytest.fixture
def prefect_server(services: Settings) -> Iterator[Settings]:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: services.services.prefect_api_url}):
        yield services


def test_a_run_whose_graph_writer_crashes_fails_naming_kuzu_and_its_retry_writes_the_graph(
    prefect_server: Settings, dataset: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_name: Any,
) -> None:
    """The Kuzu writer dies of SIGSEGV as it starts: the run ends Failed naming the store, with
    everything published; retried as the UI's Retry does, it writes the graph."""
    from prefect import get_client
    from prefect.flow_engine import run_flow
    from prefect.states import AwaitingRetry

    from flows import ingest as flow_module

    monkeypatch.setenv("VCFSTREAM_KUZU_PATH", str(tmp_path / "graph.kuzu"))
    monkeypatch.setenv("VCFSTREAM_ASSEMBLY", make_name("asm"))  # keys new to the graph
    monkeypatch.setattr(flow_module, "store_chunks", flow_module.store_chunks.with_options(retries=0))
    params = {"paths": [str(REAL / "sample.vcf.gz")], "dataset": dataset, "chunk_size": 4, "stores": ["kuzu"]}
    crashed, stop = threading.Event(), threading.Event()

    def crash_the_first_writer() -> None:
        while not stop.is_set():
            if pids := writer_pids():
                os.kill(pids[0], signal.SIGSTOP)
                os.kill(pids[0], signal.SIGSEGV)
                os.kill(pids[0], signal.SIGCONT)
                crashed.set()
                return
            time.sleep(0.002)

    watcher = threading.Thread(target=crash_the_first_writer, daemon=True)
    watcher.start()
    try:
        with get_client(sync_client=True) as client:
            run = client.create_flow_run(flow_module.ingest_vcf, parameters=params)
            first = run_flow(flow_module.ingest_vcf, flow_run=run, parameters=params, return_type="state")
            assert crashed.is_set()
            assert first.is_failed()
            assert "store kuzu: kuzu: writer process died with SIGSEGV" in (first.message or "")
            failed = first.result(raise_on_failure=False).summary
            assert failed["published"] == {"kafka": 11} and failed["stored"] == {}

            client.set_flow_run_state(run.id, AwaitingRetry(), force=True)
            second = run_flow(flow_module.ingest_vcf, flow_run=client.read_flow_run(run.id), parameters=params,
                              return_type="state")
    finally:
        stop.set()
    assert second.is_completed(), second.message
    summary = second.result()
    assert summary["published"] == {"kafka": 11} and summary["stored"] == {"kuzu": 11}
    assert graph.graph_counts(load_settings(kuzu={"path": tmp_path / "graph.kuzu"}))["Variant"] == 11
