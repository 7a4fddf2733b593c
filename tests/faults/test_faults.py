"""Nothing lost, nothing hangs: an ingest of a small synthetic file is hit by one fault (a broker
or PostgreSQL killed or restarted, the flow's process or a reader process killed, the same file
ingested twice at once), the run is retried as an operator would, and then ``verify --repair``
and ``verify`` find nothing missing and every extra copy explained by an in-doubt mark. A broker
whose acknowledgements are durable (Kafka with acks=all, Iggy with persisted topics) loses
nothing to a SIGKILL: ``verify`` finds nothing missing before any repair.

The services are this module's own (``conftest.py``): each test restarts what it killed through
the same code path as ``vcfstream services up``, in a ``finally``, so they are up again for the
next test whatever happens.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
from paths import REPO

from vcfstream.devservices import services as local_services
from vcfstream.errors import ServiceError
from vcfstream.ledger import db
from vcfstream.settings import Settings

sys.path.insert(0, str(REPO / "bench"))

from synth_vcf import generate

pytestmark = [pytest.mark.faults, pytest.mark.services]

RECORDS = 40_000
CHUNK = "4000"  # 10 chunks: a fault lands while some are published and others are not
# Small publish batches: a fault hits one batch in flight, not the whole chunk. (The stores are
# written too, in the module's own home.)
ENV = {"VCFSTREAM_PUBLISH_BATCH_SIZE": "1000"}


@pytest.fixture(scope="module")
def synthetic(services: Settings) -> Path:
    inbox = services.home_dir / "inbox"  # the input root of the module's services
    inbox.mkdir(exist_ok=True)
    return generate(inbox / "faults.vcf.gz", RECORDS, 3, seed=23)


def start_ingest(path: Path, dataset: str, **env: str) -> subprocess.Popen[str]:
    """``vcfstream ingest`` in its own process group (so the flow's process and its readers can be
    killed together)."""
    args = [sys.executable, "-m", "vcfstream.cli.main", "ingest", str(path), "--dataset", dataset,
            "--chunk-size", CHUNK, "--json"]
    return subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **ENV, **env}, start_new_session=True)


def finish(proc: subprocess.Popen[str], timeout: float = 300) -> tuple[int, dict | None, str]:
    out, err = proc.communicate(timeout=timeout)
    try:
        summary = json.loads(out) if out.strip() else None
    except json.JSONDecodeError:
        summary = None
    return proc.returncode, summary, err


def ingest(path: Path, dataset: str) -> dict:
    """The retried run (or a plain one): it must complete."""
    code, summary, err = finish(start_ingest(path, dataset))
    assert code == 0 and summary is not None, err[-3000:]
    return summary


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vcfstream.cli.main", *args], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, **ENV}, timeout=600)


def published_rows(settings: Settings, dataset: str) -> int:
    with db.connect(settings) as conn:
        row = conn.execute("SELECT count(*) FROM ledger_state WHERE dataset = %s AND state IN ('published', 'in_doubt')",
                           (dataset,)).fetchone()
    return int(row[0]) if row else 0


def wait_until(what: str, ready: Callable[[], bool], proc: subprocess.Popen[str] | None = None,
               timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the ingest ended before {what}: {proc.stderr.read()[-2000:] if proc.stderr else ''}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:g} s")
        time.sleep(0.05)


def publishing(settings: Settings, dataset: str, proc: subprocess.Popen[str]) -> None:
    """Wait until the ingest has published some, but far from all, of the file."""
    wait_until("some messages were published", lambda: published_rows(settings, dataset) > 0, proc)


def assert_repaired_and_clean(dataset: str, alleles: int) -> dict:
    repair = cli("verify", "--dataset", dataset, "--repair", "--json")
    assert repair.returncode == 0, repair.stdout[-3000:] + repair.stderr[-3000:]
    result = cli("verify", "--dataset", dataset, "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 0, report
    assert (report["missing"], report["duplicates"], report["unknown"], report["unpublished"]) == (0, 0, 0, 0), report
    assert report["ledger_published"] == report["distinct_ids"] == alleles, report
    # every copy beyond one per id is explained by an in-doubt mark
    assert report["messages"] == alleles + report["in_doubt_copies"], report
    return report


def assert_nothing_missing_before_repair(dataset: str, alleles: int) -> None:
    """What durable acknowledgements promise: after the fault and the retried run, ``verify`` alone
    (no repair) finds every published id, and every copy beyond one per id explained by an
    in-doubt mark; a repair then finds nothing to republish."""
    result = cli("verify", "--dataset", dataset, "--json")
    report = json.loads(result.stdout)
    assert (report["missing"], report["expired"], report["duplicates"], report["unknown"], report["unpublished"]) == (
        0, 0, 0, 0, 0), report
    assert report["ledger_published"] == report["distinct_ids"] == alleles, report
    assert report["messages"] == alleles + report["in_doubt_copies"], report
    assert result.returncode == 0, report
    assert assert_repaired_and_clean(dataset, alleles)["messages"] == report["messages"]  # nothing republished


def service_process(settings: Settings, name: str) -> psutil.Process:
    tracked = local_services.read_pid_file(settings, name)
    proc = tracked.process() if tracked is not None else None
    assert proc is not None, f"{name} is not running under vcfstream services"
    return proc


def bring_up(settings: Settings, name: str, attempts: int = 3) -> None:
    """``vcfstream services up`` for one service. A broker recovering its logs after a SIGKILL on a
    busy machine may take longer than one ``up`` waits, so it is asked again."""
    for attempt in range(attempts):
        try:
            local_services.up(settings, [name])
            return
        except ServiceError:
            if attempt == attempts - 1:
                raise


@contextmanager
def up_again(settings: Settings, name: str) -> Iterator[None]:
    """``name`` is running again when the block ends, whatever happened in it."""
    try:
        yield
    finally:
        bring_up(settings, name)


def test_a_kafka_broker_killed_mid_ingest_loses_no_acknowledged_message(
        services: Settings, dataset: str, synthetic: Path) -> None:
    proc = start_ingest(synthetic, dataset)
    with up_again(services, "kafka"):  # `vcfstream services up`
        publishing(services, dataset, proc)
        service_process(services, "kafka").send_signal(signal.SIGKILL)
        finish(proc)  # the run fails, or completes once its task retries find the broker back
    summary = ingest(synthetic, dataset)
    assert_nothing_missing_before_repair(dataset, summary["alleles"])


def test_postgresql_restarted_mid_ingest_loses_nothing_once_the_run_is_retried(
        services: Settings, dataset: str, synthetic: Path) -> None:
    proc = start_ingest(synthetic, dataset)
    with up_again(services, "postgres"):
        publishing(services, dataset, proc)
        local_services.down(services, ["postgres"])
    finish(proc)
    summary = ingest(synthetic, dataset)
    assert_repaired_and_clean(dataset, summary["alleles"])


def test_the_flow_process_killed_mid_ingest_loses_nothing_once_the_run_is_retried(
        services: Settings, dataset: str, synthetic: Path) -> None:
    proc = start_ingest(synthetic, dataset)
    publishing(services, dataset, proc)
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI's flow and its reader processes
    proc.communicate(timeout=60)
    summary = ingest(synthetic, dataset)
    assert_repaired_and_clean(dataset, summary["alleles"])


def test_a_reader_process_killed_mid_ingest_fails_only_its_chunk_and_the_run_completes(
        services: Settings, dataset: str, synthetic: Path) -> None:
    proc = start_ingest(synthetic, dataset, VCFSTREAM_READ_PROCESSES="2")

    def readers() -> list[psutil.Process]:
        try:
            children = psutil.Process(proc.pid).children(recursive=True)
        except psutil.Error:
            return []
        return [c for c in children if "vcfstream.runtime.readpool" in " ".join(c.cmdline())]

    wait_until("a reader process started", lambda: bool(readers()), proc)
    publishing(services, dataset, proc)
    readers()[0].kill()
    code, summary, err = finish(proc)
    assert code == 0 and summary is not None, err[-3000:]  # the chunk task's retry read it again
    assert_repaired_and_clean(dataset, summary["alleles"])


def test_the_same_file_ingested_twice_at_once_is_published_once(
        services: Settings, dataset: str, synthetic: Path) -> None:
    procs = [start_ingest(synthetic, dataset) for _ in range(2)]
    results = [finish(p) for p in procs]
    for code, summary, err in results:
        assert code == 0 and summary is not None, err[-3000:]
    alleles = results[0][1]["alleles"]  # type: ignore[index]
    assert sum(summary["new"] for _, summary, _ in results) == alleles  # type: ignore[index]
    report = assert_repaired_and_clean(dataset, alleles)
    assert report["in_doubt_copies"] == 0


@pytest.mark.iggy
def test_an_iggy_server_killed_mid_ingest_loses_no_acknowledged_message(
        services: Settings, dataset: str, synthetic: Path) -> None:
    url, kill, start = (os.environ.get(name) for name in
                        ("VCFSTREAM_IGGY_URL", "VCFSTREAM_IGGY_KILL_CMD", "VCFSTREAM_IGGY_START_CMD"))
    if not (url and kill and start):
        pytest.skip("no live Iggy server to kill: set VCFSTREAM_IGGY_URL, VCFSTREAM_IGGY_KILL_CMD and "
                    "VCFSTREAM_IGGY_START_CMD (a server of its own: the test kills it) to run the Iggy fault test")
    proc = start_ingest(synthetic, dataset)
    try:
        publishing(services, dataset, proc)
        subprocess.run(shlex.split(kill), check=True, timeout=60)
        finish(proc)
    finally:
        subprocess.run(shlex.split(start), check=True, timeout=120)
    summary = ingest(synthetic, dataset)
    assert_nothing_missing_before_repair(dataset, summary["alleles"])
