"""The local process worker: ``start_worker(settings)`` starts ``prefect worker start`` on the
deployments' pool as a detached process with a PID file ``<home>/run/worker-<name>.json`` (the
format of ``services.py``); ``stop_workers(settings)`` stops every worker started that way.

Example:
    >>> from vcfstream.settings import load_settings
    >>> start_worker(load_settings())["state"]  # doctest: +SKIP
    'running'
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from contextlib import AbstractContextManager
from typing import Any

from blocks.register import prefect_api
from flows.deploy import HEARTBEAT_SECONDS, REPO, WORK_POOL, deploy, ensure_work_pool
from vcfstream.devservices.services import (
    Tracked,
    pid_file,
    read_pid_file,
    run_dir,
    run_lock,
    spawn,
    terminate,
    write_pid_file,
)
from vcfstream.errors import ServiceError
from vcfstream.runtime.malloc import MALLOC_ARENAS
from vcfstream.settings import Settings

WORKER_STARTUP_TIMEOUT_S = 90.0
WORKER_QUERY_SECONDS = 5  # how often a worker asks for scheduled runs (Prefect's default is 10)

def start_worker(settings: Settings, *, name: str | None = None, limit: int | None = None,
                 pool: str = WORK_POOL) -> dict[str, Any]:
    """Start a process worker on ``pool`` unless one of that name runs; wait until it polls.

    Args:
        settings: ``home`` (PID file, log, result storage) and the Prefect API.
        name: worker name (default ``vcfstream-<host>``); one PID file per name.
        limit: at most this many flow runs at once on this worker (None = no limit).
        pool: the process work pool to poll (created when missing).

    Returns:
        ``state``, ``address`` (the pool), ``pid``, ``log``, ``started`` (False if it already ran).
    """
    name = name or f"vcfstream-{socket.gethostname()}"
    with prefect_api(settings) as api_url, _worker_lock(settings):
        tracked = _read_worker(settings, name)
        if tracked is not None and tracked.process() is not None:
            if tracked.secured:
                _await_worker(name, tracked, pool)
                return _worker_entry(name, tracked, started=False, pool=pool)
            _stop(settings, name, tracked)  # started before the server required its login
        ensure_work_pool(pool)
        log = settings.home_dir / "prefect" / f"worker-{name}.log"
        command = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", "process",
                   "--name", name, "--install-policy", "never"]
        if limit is not None:
            command += ["--limit", str(limit)]
        tracked = spawn(command, log=log, env=worker_environment(settings, api_url), cwd=REPO, address=pool)
        write_pid_file(settings, f"worker-{name}", tracked)
        try:
            _await_worker(name, tracked, pool)
        except ServiceError:
            _stop(settings, name, tracked)
            raise
        return _worker_entry(name, tracked, started=True, pool=pool)


def worker_environment(settings: Settings, api_url: str) -> dict[str, str]:
    """The worker's environment, inherited by every flow run it starts.

    Results persist under ``<home>/results`` so a flow run retried from the UI gets its completed
    chunks back as Cached; ``VCFSTREAM_HOME`` is made absolute because flow runs start in the
    repository folder. Secrets never go here (flows take them from blocks), except the Prefect
    API's own login, which the worker and its flow runs need to talk to the server at all. Flow
    runs send a heartbeat every ``HEARTBEAT_SECONDS`` (``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``, 30
    at least), by which the server's crash automation (``flows.deploy``) tells a dead run.
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env.update(
        PREFECT_API_URL=api_url,
        PREFECT_HOME=os.environ.get("PREFECT_HOME", str(settings.home_dir / "prefect" / "client")),
        PREFECT_RESULTS_PERSIST_BY_DEFAULT="true",
        PREFECT_LOCAL_STORAGE_PATH=str(settings.home_dir / "results"),
        PREFECT_WORKER_QUERY_SECONDS=str(WORKER_QUERY_SECONDS),
        PREFECT_LOGGING_LEVEL=os.environ.get("PREFECT_LOGGING_LEVEL", "INFO"),
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY=os.environ.get("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", str(HEARTBEAT_SECONDS)),
        VCFSTREAM_HOME=str(settings.home_dir),
    )
    env.setdefault("MALLOC_ARENA_MAX", str(MALLOC_ARENAS))  # the flow runs' malloc arenas (runtime.malloc)
    for key in ("PREFECT_DEFAULT_RESULT_STORAGE_BLOCK", "PREFECT_API_KEY", "PREFECT_API_AUTH_STRING"):
        if key in os.environ:  # production: shared result storage, authenticated API
            env[key] = os.environ[key]
    local_auth = settings.services.prefect_auth_string
    if local_auth is not None and api_url.rstrip("/") == settings.services.prefect_api_url:
        env["PREFECT_API_AUTH_STRING"] = local_auth.get_secret_value()  # the local server's basic auth
    return env


def stop_worker(settings: Settings, name: str) -> int | None:
    """Stop the worker ``start_worker`` started under this name; returns its PID (None: not running)."""
    with _worker_lock(settings):
        return _stop(settings, name, _read_worker(settings, name))


def stop_workers(settings: Settings) -> dict[str, dict[str, Any]]:
    """Stop every worker ``start_worker`` started under ``settings.home`` (SIGTERM, then SIGKILL)."""
    report: dict[str, dict[str, Any]] = {}
    with _worker_lock(settings):
        for name in _worker_names(settings):
            tracked = _read_worker(settings, name)
            report[f"worker {name}"] = {"state": "stopped", "address": tracked.address if tracked else WORK_POOL,
                                        "stopped_pid": _stop(settings, name, tracked)}
    return report


def worker_status(settings: Settings) -> dict[str, dict[str, Any]]:
    """State of each worker with a PID file (starts nothing)."""
    report = {}
    for name in _worker_names(settings):
        tracked = _read_worker(settings, name)
        alive = tracked is not None and tracked.process() is not None
        report[f"worker {name}"] = _worker_entry(name, tracked if alive else None, started=False)
    return report


def up(settings: Settings) -> dict[str, dict[str, Any]]:
    """``deploy`` then ``start_worker``: what ``vcfstream services up`` adds after the servers."""
    deploy(settings)
    return {"worker": start_worker(settings)}


def _worker_lock(settings: Settings) -> AbstractContextManager[None]:
    """Serialize starts/stops of workers (not services.lock: services.up may hold it)."""
    return run_lock(settings, "workers")


def _worker_names(settings: Settings) -> list[str]:
    return [path.stem.removeprefix("worker-") for path in sorted(run_dir(settings).glob("worker-*.json"))]


def _read_worker(settings: Settings, name: str) -> Tracked | None:
    return read_pid_file(settings, f"worker-{name}")


def _stop(settings: Settings, name: str, tracked: Tracked | None) -> int | None:
    stopped = None
    proc = tracked.process() if tracked is not None else None
    if proc is not None:
        # Flow runs still running 30 s after the SIGTERM are killed with it (they end Crashed; Retry).
        terminate(proc, signal.SIGTERM)
        stopped = tracked.pid if tracked is not None else None
    pid_file(settings, f"worker-{name}").unlink(missing_ok=True)
    return stopped


def _await_worker(name: str, tracked: Tracked, pool: str) -> None:
    """Wait until the pool lists the worker as online (it has sent a heartbeat)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import WorkerFilter, WorkerFilterStatus

    deadline = time.monotonic() + WORKER_STARTUP_TIMEOUT_S
    while True:
        if tracked.process() is None:
            raise ServiceError(f"worker {name}: exited during startup; see {tracked.log}")
        with get_client(sync_client=True) as client:
            workers = client.read_workers_for_work_pool(
                pool, worker_filter=WorkerFilter(status=WorkerFilterStatus(any_=["ONLINE"])))
        if any(worker.name == name for worker in workers):
            return
        if time.monotonic() > deadline:
            raise ServiceError(f"worker {name}: not polling {pool} after {WORKER_STARTUP_TIMEOUT_S:.0f}s; "
                               f"see {tracked.log}")
        time.sleep(1.0)


def _worker_entry(name: str, tracked: Tracked | None, *, started: bool, pool: str | None = None) -> dict[str, Any]:
    pool = pool or (tracked.address if tracked is not None else WORK_POOL)
    return {"state": "running" if tracked is not None else "stopped", "address": f"{pool} ({name})", "name": name,
            "pid": tracked.pid if tracked is not None else None,
            "log": tracked.log if tracked is not None else None, "started": started}
