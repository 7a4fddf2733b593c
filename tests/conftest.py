"""Shared fixtures: test settings, the local services integration tests talk to, unique names.

``services`` runs the same ``vcfstream.devservices.services.up`` as ``vcfstream services up`` and, at the end of
the session, stops only what it started itself, and only if no other live test session (another
developer's run, an xdist worker) has registered as a user of the same ``VCFSTREAM_HOME``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from vcfstream.devservices import services as local_services
from vcfstream.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]

# In CI every tool the tests use is installed (infra/install.sh), so a skip for a missing one
# means the install broke: it fails there. Only a live Iggy server may be absent.
ALLOWED_CI_SKIPS = ("VCFSTREAM_IGGY_URL",)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("CI") == "true" and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2])
        if not any(allowed in reason for allowed in ALLOWED_CI_SKIPS):
            report.outcome = "failed"
            report.longrepr = f"skipped in CI, where every tool is installed: {reason}"


# Fixtures that start or need the local services (PostgreSQL, Kafka, the Prefect server).
SERVICE_FIXTURES = frozenset({"services"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs the local services (through any fixture chain) ``services``,
    so ``pytest -m "not services"`` runs the unit tests alone, in seconds."""
    for item in items:
        if SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.services)


def unique_name(prefix: str = "t") -> str:
    """A dataset/topic/table-safe name no other test or session will use."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session", autouse=True)
def input_roots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Flow runs read only under their input roots: the tests' files are in ../shared and in this
    session's temporary folders (set before any settings are read; workers the tests start inherit it)."""
    previous = os.environ.get("VCFSTREAM_INPUT_ROOTS")
    given = previous.replace(":", ",") if previous and "," not in previous else previous
    roots = ",".join(filter(None, [given, str(REPO.parent / "shared"), str(tmp_path_factory.getbasetemp())]))
    os.environ["VCFSTREAM_INPUT_ROOTS"] = roots
    yield roots
    if previous is None:
        os.environ.pop("VCFSTREAM_INPUT_ROOTS", None)
    else:
        os.environ["VCFSTREAM_INPUT_ROOTS"] = previous


@pytest.fixture(scope="session")
def settings() -> Settings:
    """Settings from the environment; a relative home (the default .vcfstream) is the repo's."""
    configured = load_settings()
    return load_settings(home=REPO / configured.home)


@pytest.fixture(scope="session")
def services(settings: Settings) -> Iterator[Settings]:
    """PostgreSQL, Kafka and the Prefect server, running and ready; yields the settings."""
    sessions = settings.home_dir / "run" / "test-sessions"
    sessions.mkdir(parents=True, exist_ok=True)
    lease = sessions / str(os.getpid())
    lease.touch()
    try:
        report = local_services.up(settings)
        ready = settings.with_groups()  # now with the credentials `up` wrote to the services file
        with _prefect_login(ready):
            yield ready
    finally:
        lease.unlink(missing_ok=True)
    started = [name for name, info in report.items() if info.get("started")]
    if started and not _other_live_sessions(sessions):
        local_services.down(settings, started)


@contextmanager
def _prefect_login(settings: Settings) -> Iterator[None]:
    """Prefect clients of this session log in to the local server (its basic auth)."""
    from prefect.settings import PREFECT_API_AUTH_STRING, temporary_settings

    auth = settings.services.prefect_auth_string
    if auth is None or PREFECT_API_AUTH_STRING.value():
        yield
        return
    with temporary_settings(updates={PREFECT_API_AUTH_STRING: auth.get_secret_value()}):
        yield


def _other_live_sessions(sessions: Path) -> bool:
    """True if another test process still uses these services; forgets leases of dead ones."""
    others = False
    for lease in sessions.iterdir():
        if lease.name.isdigit() and psutil.pid_exists(int(lease.name)):
            others = True
        else:
            lease.unlink(missing_ok=True)
    return others


@pytest.fixture
def dataset() -> str:
    """A fresh dataset name for one test."""
    return unique_name("ds")


@pytest.fixture
def make_name() -> Callable[[str], str]:
    """``make_name("sample")`` -> a fresh unique name with that prefix."""
    return unique_name
