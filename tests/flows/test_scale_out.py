"""Two process workers on one work pool share the file runs of a cohort run, and the ledger keeps
every message published once, even when the same content is ingested by both at once.

The test uses a work pool of its own (with its own ingest and cohort deployments), so a worker
that `services up` runs on vcfstream-process cannot take the runs away from the two under test.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from paths import REAL, REPO

from vcfstream.settings import Settings
from vcfstream.verify import verify_dataset

pytestmark = pytest.mark.slow

FILES = {"sample.vcf.gz": 11, "chr22.vcf.gz": 104, "mixed_ploidy.vcf.gz": 8, "1kg_2020_chrM.vcf.gz": 46,
         "chr_m_indels.vcf.gz": 230}


@pytest.fixture
def pool(services: Settings) -> Iterator[dict[str, Any]]:
    """A private process pool with ingest and cohort deployments and two workers of 2 slots each."""
    from prefect import flow
    from prefect.client.orchestration import get_client

    from blocks.register import prefect_api
    from flows.deploy import ensure_work_pool
    from vcfstream.devservices.workers import start_worker, stop_worker

    tag = uuid.uuid4().hex[:8]
    name = f"vcfstream-scale-{tag}"
    with prefect_api(services):
        ensure_work_pool(name)
        deployments = {
            kind: flow.from_source(source=str(REPO), entrypoint=entrypoint).deploy(
                name=f"{kind}-{tag}", work_pool_name=name, print_next_steps=False)
            for kind, entrypoint in (("ingest-vcf", "flows/ingest.py:ingest_vcf"),
                                     ("cohort", "flows/cohort.py:ingest_cohort"))
        }
        workers = [f"scale-{side}-{tag}" for side in "ab"]
        watcher = ChildWatcher()
        try:
            for worker in workers:
                started = start_worker(services, name=worker, limit=2, pool=name)
                watcher.watch(worker, started["pid"])
            watcher.start()
            yield {"name": name, "tag": tag, "workers": workers, "deployments": deployments, "watcher": watcher}
        finally:
            watcher.stop()
            for worker in workers:
                stop_worker(services, worker)
            with get_client(sync_client=True) as client:
                for deployment_id in deployments.values():
                    client.delete_deployment(deployment_id)
                client.delete_work_pool(name)


def test_two_workers_share_a_cohort_and_each_variant_is_published_once(
        pool: dict[str, Any], services: Settings, dataset: str, tmp_path: Path) -> None:
    from prefect.deployments import run_deployment

    alias = tmp_path / "chr22-again.vcf.gz"  # the same content under a second name, ingested concurrently
    alias.symlink_to(REAL / "chr22.vcf.gz")
    manifest = tmp_path / "cohort.txt"
    manifest.write_text("\n".join([*(str(REAL / name) for name in FILES), str(alias)]) + "\n")

    cohort = run_deployment(
        f"ingest_cohort/cohort-{pool['tag']}", timeout=900, poll_interval=3,
        parameters={"manifest": str(manifest), "dataset": dataset, "max_concurrent": 3, "dispatch": "deployment",
                    "ingest_deployment": f"ingest_vcf/ingest-vcf-{pool['tag']}", "stores": [],
                    "files_per_run": 1})  # a run per file: the two copies of chr22 run at once

    assert cohort.state is not None and cohort.state.is_completed(), cohort.state
    file_runs = _file_runs(pool["deployments"]["ingest-vcf"])
    assert len(file_runs) == len(FILES) + 1 and all(run.state.is_completed() for run in file_runs)
    ran_on = {run.id: _worker_of(run.id, pool["watcher"]) for run in [cohort, *file_runs]}
    assert set(ran_on.values()) == set(pool["workers"]), ran_on  # both took part
    report = verify_dataset(services, dataset)
    assert report["ledger_published"] == sum(FILES.values())
    assert (report["duplicates"], report["missing"], report["unknown"]) == (0, 0, 0)


def test_small_files_share_deployment_runs_and_each_file_gets_its_own_outcome_back(
        pool: dict[str, Any], services: Settings, dataset: str, tmp_path: Path) -> None:
    from prefect.deployments import run_deployment

    manifest = tmp_path / "cohort.txt"
    manifest.write_text("\n".join(str(REAL / name) for name in FILES) + "\n")

    cohort = run_deployment(
        f"ingest_cohort/cohort-{pool['tag']}", timeout=900, poll_interval=3,
        parameters={"manifest": str(manifest), "dataset": dataset, "max_concurrent": 2, "dispatch": "deployment",
                    "ingest_deployment": f"ingest_vcf/ingest-vcf-{pool['tag']}", "stores": []})

    assert cohort.state is not None and cohort.state.is_completed(), cohort.state
    file_runs = _file_runs(pool["deployments"]["ingest-vcf"])
    assert sorted(len(run.parameters["paths"]) for run in file_runs) == [2, 3]  # 5 files, 2 at once
    summary = cohort.state.result()
    assert {row["file"]: (row["status"], row["new"]) for row in summary["outcomes"]} == {
        name: ("ingested", alleles) for name, alleles in FILES.items()}
    assert {row["flow_run"] for row in summary["outcomes"]} == {str(run.id) for run in file_runs}
    report = verify_dataset(services, dataset)
    assert (report["ledger_published"], report["duplicates"], report["missing"]) == (sum(FILES.values()), 0, 0)


def _file_runs(deployment_id: Any) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))


class ChildWatcher(threading.Thread):
    """Records the descendant processes of each worker while the test runs.

    A process worker runs each flow run in a child process and stores its PID on the flow run
    (``infrastructure_pid``), so PID -> worker says who ran it. The worker's own "submitting" log
    line is no proof: the API may drop a log batch when the server is busy.
    """

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.workers: dict[str, int] = {}
        self.owner: dict[int, str] = {}
        self._stop_event = threading.Event()

    def watch(self, name: str, pid: int) -> None:
        self.workers[name] = pid

    def run(self) -> None:
        while not self._stop_event.wait(0.1):
            for name, pid in self.workers.items():
                try:
                    children = psutil.Process(pid).children(recursive=True)
                except psutil.Error:
                    continue
                for child in children:
                    self.owner.setdefault(child.pid, name)

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout=5)


def _worker_of(flow_run_id: Any, watcher: ChildWatcher) -> str:
    """The worker whose child process ran the flow run (its ``infrastructure_pid``)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
    assert run.infrastructure_pid, f"flow run {flow_run_id} has no infrastructure_pid"
    pid = int(str(run.infrastructure_pid).rsplit(":", 1)[-1])
    assert pid in watcher.owner, f"flow run {flow_run_id} ran in PID {pid}, not a child of {watcher.workers}"
    return watcher.owner[pid]


def test_services_down_stops_the_workers_started_for_its_home(services: Settings, tmp_path: Path) -> None:
    """Under a home of its own (no servers of its own: down() finds none to stop) a worker is
    started on a private pool; `services down` stops it and removes its PID file."""
    from prefect.client.orchestration import get_client

    from blocks.register import prefect_api
    from vcfstream.devservices import services as local_services
    from vcfstream.devservices.workers import start_worker, worker_status

    home = Settings.model_validate({**services.model_dump(), "home": tmp_path / "home"})
    pool = f"vcfstream-down-{uuid.uuid4().hex[:8]}"
    with prefect_api(home):
        started = start_worker(home, name="down-test", pool=pool)
        try:
            assert started["started"] and psutil.pid_exists(started["pid"])
            report = local_services.down(home)
            assert report["worker down-test"]["stopped_pid"] == started["pid"]
            assert not psutil.pid_exists(started["pid"]) or psutil.Process(started["pid"]).status() == "zombie"
            assert worker_status(home) == {}
            assert {report[name]["state"] for name in ("postgres", "kafka", "prefect")} == {"stopped"}
        finally:
            with get_client(sync_client=True) as client:
                client.delete_work_pool(pool)
