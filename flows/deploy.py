"""Deployments: ``deploy(settings)`` registers the blocks, creates the process work pool (with a
job template a run cannot change the command, environment or folder of), the automation that
marks a flow run Crashed when its heartbeats stop, sets the Prefect variables ``prefect.yaml``
reads and applies ``prefect.yaml`` with ``prefect deploy --all`` from the repository root (its
pull step is the repository folder, so a worker on this host runs the checked-out code). The
local worker process is ``vcfstream.devservices.workers``.

Example:
    >>> from vcfstream.settings import load_settings
    >>> deploy(load_settings())  # doctest: +SKIP
    ['ingest_vcf/ingest-vcf', 'ingest_cohort/nightly-cohort', 'repair_dataset/repair-dataset']
"""

from __future__ import annotations

import os
import subprocess
import sys
import zoneinfo
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from blocks.register import prefect_api, register_blocks
from vcfstream.errors import ServiceError
from vcfstream.settings import Settings

REPO = Path(__file__).resolve().parents[1]
PREFECT_FILE = REPO / "prefect.yaml"
WORK_POOL = "vcfstream-process"
DEPLOYMENTS = ("ingest_vcf/ingest-vcf", "ingest_cohort/nightly-cohort", "repair_dataset/repair-dataset")
# Prefect variables prefect.yaml reads at deploy time (change them, then deploy again).
TIMEZONE_VARIABLE = "vcfstream_nightly_timezone"
DIRECTORY_VARIABLE = "vcfstream_nightly_directory"
# Crash detection: a flow run sends a heartbeat event every HEARTBEAT_SECONDS (the local worker
# passes PREFECT_FLOWS_HEARTBEAT_FREQUENCY to its runs; Prefect's default elsewhere is 180 s); a
# Running run without one for CRASH_AFTER_SECONDS is marked Crashed. The window must stay longer
# than every client's heartbeat frequency, or live runs would be marked Crashed.
HEARTBEAT_SECONDS = 60
CRASH_AFTER_SECONDS = 300
CRASH_AUTOMATION = "vcfstream-crash-silent-flow-runs"
CRASH_MESSAGE = "Crashed: no heartbeat from the flow run's process (it or its host died)"
# Job variables a run may set on the process pool: none of them runs a command. `command`, `env`
# and `working_dir` are fixed (a flow run process runs `python -m prefect.engine` in a fresh
# temporary folder, which `-m` puts first on sys.path, with the worker's environment).
ALLOWED_JOB_VARIABLES = ("name", "labels", "stream_output")


def deploy(settings: Settings, *, timezone: str | None = None, cohort_directory: str | None = None) -> list[str]:
    """Register blocks, create the work pool and apply ``prefect.yaml``; returns the deployments.

    Args:
        settings: where the Prefect API is (``PREFECT_API_URL``, else ``settings.services.prefect_port``)
            and the block defaults.
        timezone: IANA time zone of the nightly schedule; None keeps the variable (default UTC).
        cohort_directory: folder the nightly cohort scans; None keeps the variable (default
            ``<home>/incoming``).
    """
    if timezone is not None:
        try:
            zoneinfo.ZoneInfo(timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ServiceError(f"deploy: {timezone!r} is not an IANA time zone (e.g. Europe/Berlin)") from None
    default_directory = settings.home_dir / "incoming"
    with prefect_api(settings) as api_url:
        register_blocks(settings)
        ensure_work_pool()
        ensure_crash_automation()
        _set_variable(TIMEZONE_VARIABLE, timezone, default="UTC")
        _set_variable(DIRECTORY_VARIABLE, cohort_directory, default=str(default_directory))
        if cohort_directory is None:
            default_directory.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all",
                   "--prefect-file", str(PREFECT_FILE)]
        from prefect.settings import PREFECT_API_AUTH_STRING

        env = {**os.environ, "PREFECT_API_URL": api_url}
        if PREFECT_API_AUTH_STRING.value():  # the server's basic auth (prefect_api sets the local one)
            env["PREFECT_API_AUTH_STRING"] = PREFECT_API_AUTH_STRING.value()
        result = subprocess.run(command, cwd=REPO, env=env,
                                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip()[-3000:]
            raise ServiceError(f"prefect deploy of {PREFECT_FILE} failed (exit {result.returncode}): {output}")
    return list(DEPLOYMENTS)


def locked_job_template() -> dict[str, Any]:
    """ProcessWorker's default base job template without the variables that could run a command.

    Only ``ALLOWED_JOB_VARIABLES`` stay in the variables schema, which refuses any other key
    (the API answers 422 to a deployment or run that sets ``command``, ``env`` or ``working_dir``);
    the job configuration no longer refers to them, so a worker leaves them at their defaults
    even for a run the API stored without checking its variables.
    """
    from prefect.workers.process import ProcessWorker

    template = ProcessWorker.get_default_base_job_template()
    template["job_configuration"] = {key: value for key, value in template["job_configuration"].items()
                                     if key in ALLOWED_JOB_VARIABLES}
    variables = template["variables"]
    variables["properties"] = {key: value for key, value in variables["properties"].items()
                               if key in ALLOWED_JOB_VARIABLES}
    if "required" in variables:
        variables["required"] = [key for key in variables["required"] if key in ALLOWED_JOB_VARIABLES]
    variables["additionalProperties"] = False
    return template


def ensure_work_pool(name: str = WORK_POOL) -> None:
    """Create the process work pool with ``locked_job_template()``, or put that template on a pool
    that has another (e.g. Prefect's default, which lets a run set its command)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    template = locked_job_template()
    with get_client(sync_client=True) as client:
        try:
            pool = client.read_work_pool(name)
        except ObjectNotFound:
            try:
                client.create_work_pool(WorkPoolCreate(
                    name=name, type="process", base_job_template=template,
                    description="vcfstream: local process workers (vcfstream services up starts one)",
                ))
                return
            except ObjectAlreadyExists:  # another deploy created it meanwhile
                pool = client.read_work_pool(name)
        if pool.type != "process":
            raise ServiceError(f"work pool {name!r} is of type {pool.type!r}; vcfstream's deployments need a "
                               f"process pool (delete it or choose another name)")
        if pool.base_job_template != template:
            client.update_work_pool(name, WorkPoolUpdate(base_job_template=template))


def crash_automation(within_seconds: float = CRASH_AFTER_SECONDS, *, name: str = CRASH_AUTOMATION,
                     deployment_ids: Sequence[UUID] = ()) -> Any:
    """The automation that marks a flow run Crashed when it has sent no heartbeat for
    ``within_seconds`` and has not ended (Prefect's zombie flow run detection).

    Args:
        within_seconds: how long a run may be silent; longer than any client's heartbeat frequency.
        name: the automation's name (one automation per name).
        deployment_ids: only runs of these deployments (default: every flow run on the server).

    Returns:
        A ``prefect.events.schemas.automations.AutomationCore`` to create or compare.
    """
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    related = ResourceSpecification({"prefect.resource.role": "deployment",
                                     "prefect.resource.id": [f"prefect.deployment.{id_}" for id_ in deployment_ids]})
    return AutomationCore(
        name=name,
        description=(f"vcfstream: a flow run silent for {within_seconds:.0f} s (no heartbeat, not ended) is "
                     "marked Crashed, which frees its deployment's concurrency slot (docs/operations.md)"),
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", "prefect.flow-run.Completed", "prefect.flow-run.Failed",
                    "prefect.flow-run.Cancelled", "prefect.flow-run.Crashed"},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            match_related=[related] if deployment_ids else [],
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=within_seconds),
        ),
        actions=[ChangeFlowRunState(name=None, state=StateType.CRASHED, message=CRASH_MESSAGE, force=False)],
    )


def ensure_crash_automation(within_seconds: float = CRASH_AFTER_SECONDS, *, name: str = CRASH_AUTOMATION,
                            deployment_ids: Sequence[UUID] = ()) -> UUID:
    """Create ``crash_automation(...)``, or make the one of that name match it; returns its id.

    Idempotent: an automation that already matches is left alone, one that differs is updated,
    and copies of the same name (two deploys at once) are deleted.
    """
    from prefect.client.orchestration import get_client

    wanted = crash_automation(within_seconds, name=name, deployment_ids=deployment_ids)
    with get_client(sync_client=True) as client:
        existing = client.read_automations_by_name(name)
        if not existing:
            return client.create_automation(wanted)
        keep, *copies = sorted(existing, key=lambda automation: str(automation.id))
        for copy in copies:
            client.delete_automation(copy.id)
        if _automation_fields(keep) != _automation_fields(wanted):
            client.update_automation(keep.id, wanted)
        return keep.id


def _automation_fields(automation: Any) -> dict[str, Any]:
    """What decides an automation's behaviour (ids of its trigger and the server's own fields left out)."""
    dumped = automation.model_dump(mode="json", include={"description", "enabled", "trigger", "actions"})
    trigger = dumped["trigger"]
    trigger.pop("id", None)
    for key in ("after", "expect", "for_each"):  # sets, listed in any order
        trigger[key] = sorted(trigger.get(key) or [])
    return dict(dumped)


def _set_variable(name: str, value: str | None, *, default: str) -> None:
    from prefect.variables import Variable

    if value is not None:
        Variable.set(name, value, overwrite=True)
    elif Variable.get(name, default=None) is None:
        Variable.set(name, default)
