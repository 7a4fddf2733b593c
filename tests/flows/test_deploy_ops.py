"""Prefect operations: a flow run whose process and worker die is marked Crashed by the crash
automation, which frees the nightly cohort's one-at-a-time slot; the process pool's job template
lets no deployment or run choose the command, environment or folder of a flow run's process.

The tests use a work pool, deployment, worker and automation of their own (the automation watches
only their deployment, with a short window), so the shared deployments and worker are untouched.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
from deploy_ops_flows import PROBE_VARIABLE
from paths import REPO

from flows.deploy import (
    CRASH_MESSAGE,
    DEPLOYMENTS,
    HEARTBEAT_SECONDS,
    PREFECT_FILE,
    crash_automation,
    ensure_crash_automation,
    ensure_work_pool,
    locked_job_template,
)
from vcfstream.devservices.workers import worker_environment
from vcfstream.settings import Settings

TEST_HEARTBEAT_SECONDS = 30  # Prefect's minimum
TEST_CRASH_AFTER_SECONDS = 60  # the test automation's window: two heartbeats
ENTRYPOINT = "tests/flows/deploy_ops_flows.py:probe"


def _nightly_concurrency() -> dict[str, Any]:
    """The nightly cohort's concurrency limit, as prefect.yaml sets it."""
    deployments = yaml.safe_load(PREFECT_FILE.read_text())["deployments"]
    return dict(next(entry for entry in deployments if entry["name"] == "nightly-cohort")["concurrency_limit"])


@pytest.fixture
def ops(services: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A private process pool, a probe deployment with the nightly cohort's concurrency limit, a
    worker whose runs beat every 30 s and a crash automation for that deployment only."""
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import ConcurrencyLimitConfig

    from blocks.register import prefect_api
    from vcfstream.devservices.workers import start_worker, stop_worker

    tag = uuid.uuid4().hex[:8]
    pool, worker, automation = f"vcfstream-ops-{tag}", f"ops-{tag}", f"vcfstream-crash-{tag}"
    monkeypatch.setenv("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", str(TEST_HEARTBEAT_SECONDS))
    with prefect_api(services):
        ensure_work_pool(pool)
        deployment_id = flow.from_source(source=str(REPO), entrypoint=ENTRYPOINT).deploy(
            name=f"probe-{tag}", work_pool_name=pool, print_next_steps=False, ignore_warnings=True,
            concurrency_limit=ConcurrencyLimitConfig(**_nightly_concurrency()))
        automation_id = ensure_crash_automation(TEST_CRASH_AFTER_SECONDS, name=automation,
                                                deployment_ids=[deployment_id])
        flow_pids: list[int] = []
        try:
            started = start_worker(services, name=worker, pool=pool)
            yield {"pool": pool, "worker": worker, "worker_pid": started["pid"], "deployment_id": deployment_id,
                   "automation_id": automation_id, "flow_pids": flow_pids,
                   "start_worker": lambda: start_worker(services, name=worker, pool=pool)}
        finally:
            stop_worker(services, worker)
            for pid in flow_pids:  # a probe still sleeping after a failed test
                try:
                    psutil.Process(pid).kill()
                except psutil.Error:
                    pass
            with get_client(sync_client=True) as client:
                client.delete_automation(automation_id)
                client.delete_deployment(deployment_id)
                client.delete_work_pool(pool)


def _wait_for(what: str, check: Callable[[], Any], timeout_s: float) -> Any:
    """Poll ``check`` every second until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(1.0)


def _state(run_id: uuid.UUID) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id).state


def _start_probe(deployment_id: uuid.UUID, record: Path, seconds: float) -> uuid.UUID:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(deployment_id,
                                                     parameters={"record": str(record), "seconds": seconds})
    return run.id


def _running_probe(ops: dict[str, Any], record: Path, seconds: float) -> tuple[uuid.UUID, dict[str, Any]]:
    """Start a probe run; return its id and its record once its flow runs (the process is killed
    at teardown if the test leaves it running)."""
    run = _start_probe(ops["deployment_id"], record, seconds)
    written = _wait_for(f"flow run {run} writes {record.name}", lambda: record.exists() and json.loads(record.read_text()),
                        180)
    ops["flow_pids"].append(written["pid"])
    return run, written


def _final_state(run_id: uuid.UUID, timeout_s: float) -> Any:
    return _wait_for(f"flow run {run_id} ends", lambda: (state := _state(run_id)).is_final() and state, timeout_s)


def _heartbeat_seen(run_id: uuid.UUID) -> bool:
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    with get_client(sync_client=True) as client:
        page = client.read_events(EventFilter(event=EventNameFilter(name=["prefect.flow-run.heartbeat"]),
                                              resource=EventResourceFilter(id=[f"prefect.flow-run.{run_id}"])), limit=1)
    return bool(page.events)


def _sigkill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)

    def gone() -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    _wait_for(f"process {pid} dies", gone, 30)


def test_the_nightly_cohort_runs_one_at_a_time_and_cancels_new_runs() -> None:
    assert _nightly_concurrency() == {"limit": 1, "collision_strategy": "CANCEL_NEW"}


def test_deploy_reports_every_deployment_of_prefect_yaml() -> None:
    deployments = yaml.safe_load(PREFECT_FILE.read_text())["deployments"]
    assert [entry["name"] for entry in deployments] == [name.split("/")[1] for name in DEPLOYMENTS]


@pytest.mark.slow
def test_a_run_whose_process_and_worker_die_is_marked_crashed_and_frees_its_slot(
        ops: dict[str, Any], tmp_path: Path) -> None:
    live, record = _running_probe(ops, tmp_path / "live.json", seconds=600)
    assert _state(live).is_running()
    _wait_for("the live run's first heartbeat reaches the server", lambda: _heartbeat_seen(live), 60)

    # While the live run holds the slot, a new run is cancelled and never starts its flow.
    new = _start_probe(ops["deployment_id"], tmp_path / "new.json", seconds=0)
    assert _final_state(new, 120).is_cancelled()
    assert not (tmp_path / "new.json").exists()

    # The host "dies": the worker and the flow run's process are SIGKILLed; nothing reports an end.
    _sigkill(ops["worker_pid"])
    _sigkill(record["pid"])
    killed = time.monotonic()
    assert _state(live).is_running()
    crashed = _final_state(live, TEST_CRASH_AFTER_SECONDS + TEST_HEARTBEAT_SECONDS + 90)
    assert crashed.is_crashed(), crashed
    assert crashed.message == CRASH_MESSAGE
    assert time.monotonic() - killed < TEST_CRASH_AFTER_SECONDS + TEST_HEARTBEAT_SECONDS + 30

    # The crashed run no longer holds the slot: the next run, on a new worker, runs to the end.
    ops["start_worker"]()
    after = _start_probe(ops["deployment_id"], tmp_path / "after.json", seconds=0)
    assert _final_state(after, 180).is_completed()
    assert (tmp_path / "after.json").exists()


@pytest.mark.slow
def test_a_run_whose_process_dies_under_a_live_worker_is_marked_crashed_by_the_worker(
        ops: dict[str, Any], tmp_path: Path) -> None:
    run, record = _running_probe(ops, tmp_path / "run.json", seconds=600)
    _sigkill(record["pid"])
    crashed = _final_state(run, 60)  # shorter than the automation's window: the worker saw the exit
    assert crashed.is_crashed(), crashed
    assert crashed.message != CRASH_MESSAGE


@pytest.mark.slow
def test_a_run_cannot_set_the_command_environment_or_folder_of_its_process(
        ops: dict[str, Any], tmp_path: Path) -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.deployments.runner import DeploymentApplyError
    from prefect.exceptions import PrefectHTTPStatusError

    command_marker, folder_marker = tmp_path / "command-ran", tmp_path / "folder-imported"
    folder = tmp_path / "folder"
    (folder / "prefect").mkdir(parents=True)  # `python -m prefect.engine` started here would import this
    (folder / "prefect" / "__init__.py").write_text(f"open({str(folder_marker)!r}, 'w').close()\n")
    overrides: list[dict[str, Any]] = [
        {"command": f"touch {command_marker}"},
        {"env": {PROBE_VARIABLE: "set"}},
        {"env.PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "3600"},
        {"working_dir": str(folder)},
    ]
    with get_client(sync_client=True) as client:
        pool = client.read_work_pool(ops["pool"])
        assert pool.base_job_template == locked_job_template()
        assert not {"command", "env", "working_dir"} & set(pool.base_job_template["variables"]["properties"])

        # The API refuses them on a run of the deployment (the UI's custom run) ...
        for variables in overrides:
            with pytest.raises(PrefectHTTPStatusError, match="422"):
                client.create_flow_run_from_deployment(
                    ops["deployment_id"], parameters={"record": str(tmp_path / "x.json")}, job_variables=variables)
        # ... and on a deployment.
        with pytest.raises(DeploymentApplyError, match="'env' was unexpected"):
            flow.from_source(source=str(REPO), entrypoint=ENTRYPOINT).deploy(
                name=f"probe-env-{uuid.uuid4().hex[:8]}", work_pool_name=ops["pool"], print_next_steps=False,
                ignore_warnings=True, job_variables={"env": {PROBE_VARIABLE: "set"}})

        # POST /flow_runs/ stores job variables unchecked: the worker still starts the flow's own
        # command, with the worker's environment, in a folder of its own.
        deployment = client.read_deployment(ops["deployment_id"])
        response = client.request("POST", "/flow_runs/", json={
            "flow_id": str(deployment.flow_id), "deployment_id": str(deployment.id), "work_pool_name": ops["pool"],
            "work_queue_name": deployment.work_queue_name, "name": "job-variables-bypass",
            "parameters": {"record": str(tmp_path / "bypass.json"), "seconds": 0},
            "job_variables": {key: value for variables in overrides for key, value in variables.items()},
            "state": {"type": "SCHEDULED", "name": "Scheduled"},
        })
        run_id = uuid.UUID(response.json()["id"])
        assert client.read_flow_run(run_id).job_variables["command"] == f"touch {command_marker}"
    assert _final_state(run_id, 180).is_completed()
    record = json.loads((tmp_path / "bypass.json").read_text())
    assert record["argv"][-2:] == ["-m", "prefect.engine"], record["argv"]
    assert record["probe"] is None
    assert not command_marker.exists()
    assert not folder_marker.exists()


def test_ensure_work_pool_locks_a_pool_made_with_the_default_template(services: Settings) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.workers.process import ProcessWorker

    from blocks.register import prefect_api

    name = f"vcfstream-old-{uuid.uuid4().hex[:8]}"
    with prefect_api(services), get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=name, type="process",
                                               base_job_template=ProcessWorker.get_default_base_job_template()))
        try:
            assert "command" in client.read_work_pool(name).base_job_template["variables"]["properties"]
            ensure_work_pool(name)
            assert client.read_work_pool(name).base_job_template == locked_job_template()
            ensure_work_pool(name)  # again: nothing to change
            assert client.read_work_pool(name).base_job_template == locked_job_template()
        finally:
            client.delete_work_pool(name)


def test_the_crash_automation_is_created_once_and_follows_its_window(services: Settings) -> None:
    from prefect.client.orchestration import get_client

    from blocks.register import prefect_api
    from flows.deploy import _automation_fields

    name, scope = f"vcfstream-crash-{uuid.uuid4().hex[:8]}", [uuid.uuid4()]  # a deployment that does not exist
    with prefect_api(services), get_client(sync_client=True) as client:
        first = ensure_crash_automation(120, name=name, deployment_ids=scope)
        try:
            assert ensure_crash_automation(120, name=name, deployment_ids=scope) == first
            (stored,) = client.read_automations_by_name(name)
            assert _automation_fields(stored) == _automation_fields(crash_automation(120, name=name,
                                                                                     deployment_ids=scope))
            assert ensure_crash_automation(240, name=name, deployment_ids=scope) == first
            (stored,) = client.read_automations_by_name(name)
            assert stored.trigger.within.total_seconds() == 240
        finally:
            client.delete_automation(first)


def test_worker_flow_runs_beat_more_often_than_the_crash_window(settings: Settings,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.deploy import CRASH_AFTER_SECONDS

    monkeypatch.delenv("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", raising=False)
    env = worker_environment(settings, "http://127.0.0.1:1/api")
    assert int(env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"]) == HEARTBEAT_SECONDS
    assert HEARTBEAT_SECONDS >= 30 and 3 * HEARTBEAT_SECONDS <= CRASH_AFTER_SECONDS
    assert CRASH_AFTER_SECONDS > 180  # Prefect's default frequency, which runs of other clients use
    assert crash_automation().trigger.match_related == []  # every flow run on the server


def test_worker_flow_runs_get_the_malloc_arena_limit_unless_the_environment_has_one(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from vcfstream.runtime.malloc import MALLOC_ARENAS

    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert worker_environment(settings, "http://127.0.0.1:1/api")["MALLOC_ARENA_MAX"] == str(MALLOC_ARENAS)
    monkeypatch.setenv("MALLOC_ARENA_MAX", "8")
    assert worker_environment(settings, "http://127.0.0.1:1/api")["MALLOC_ARENA_MAX"] == "8"
