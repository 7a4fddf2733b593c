"""Deployments: ``deploy(settings)`` registers the blocks, creates the process work pool, sets
the Prefect variables ``prefect.yaml`` reads and applies ``prefect.yaml`` with ``prefect deploy
--all`` from the repository root (its pull step is the repository folder, so a worker on this
host runs the checked-out code). The local worker process is ``vcfstream.devservices.workers``.

Example:
    >>> from vcfstream.settings import load_settings
    >>> deploy(load_settings())  # doctest: +SKIP
    ['ingest_vcf/ingest-vcf', 'ingest_cohort/nightly-cohort']
"""

from __future__ import annotations

import os
import subprocess
import sys
import zoneinfo
from pathlib import Path

from blocks.register import prefect_api, register_blocks
from vcfstream.errors import ServiceError
from vcfstream.settings import Settings

REPO = Path(__file__).resolve().parents[1]
PREFECT_FILE = REPO / "prefect.yaml"
WORK_POOL = "vcfstream-process"
DEPLOYMENTS = ("ingest_vcf/ingest-vcf", "ingest_cohort/nightly-cohort")
# Prefect variables prefect.yaml reads at deploy time (change them, then deploy again).
TIMEZONE_VARIABLE = "vcfstream_nightly_timezone"
DIRECTORY_VARIABLE = "vcfstream_nightly_directory"


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


def ensure_work_pool(name: str = WORK_POOL) -> None:
    """Create the process work pool with Prefect's default job template when it is missing."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
            return
        except ObjectNotFound:
            pass
        try:
            client.create_work_pool(WorkPoolCreate(
                name=name, type="process", base_job_template=ProcessWorker.get_default_base_job_template(),
                description="vcfstream: local process workers (vcfstream services up starts one)",
            ))
        except ObjectAlreadyExists:  # another deploy created it meanwhile
            pass


def _set_variable(name: str, value: str | None, *, default: str) -> None:
    from prefect.variables import Variable

    if value is not None:
        Variable.set(name, value, overwrite=True)
    elif Variable.get(name, default=None) is None:
        Variable.set(name, default)
