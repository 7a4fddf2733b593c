"""The fault suite: real services, real processes killed. ``pytest -m faults``.

The faults kill and restart PostgreSQL and the Kafka broker, so the suite runs its own: a
``services`` fixture that starts PostgreSQL, Kafka and a Prefect server under a home of their
own, on free ports, through the same ``vcfstream.devservices.services.up`` as ``vcfstream services
up``, and stops them (and removes the home) when the module ends. Services already running (the
shared development ones, another session's) are never touched. The environment points every
``vcfstream`` process the tests start at these services for the module's duration, and
confines their input to ``<home>/inbox``.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from vcfstream.devservices import services as local_services
from vcfstream.ledger import db
from vcfstream.settings import Settings, load_settings

# Settings that would point the tests' processes at other services than their own.
FOREIGN = ("VCFSTREAM_PG_DSN", "VCFSTREAM_KAFKA_BOOTSTRAP", "VCFSTREAM_PREFECT_AUTH_STRING", "PREFECT_API_URL",
           "PREFECT_API_AUTH_STRING", "PREFECT_API_KEY", "PREFECT_PROFILE")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "faults: kills or restarts a service or process mid-ingest (tests/faults/)")


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports nothing listens on now."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


@pytest.fixture(scope="module")
def services(settings: Settings) -> Iterator[Settings]:
    """PostgreSQL, Kafka and the Prefect server of this module alone, ready; yields their settings."""
    home = Path(tempfile.mkdtemp(prefix="vcfstream-faults-"))
    pg, kafka, controller, prefect = free_ports(4)
    if (settings.kafka_libs / ".vcfstream-kafka-version").exists():  # the broker's jars, not fetched again
        shutil.copytree(settings.kafka_libs, home / "kafka" / "libs")
    environment = {"VCFSTREAM_HOME": str(home), "VCFSTREAM_PG_PORT": str(pg), "VCFSTREAM_KAFKA_PORT": str(kafka),
                   "VCFSTREAM_KAFKA_CONTROLLER_PORT": str(controller), "VCFSTREAM_PREFECT_PORT": str(prefect),
                   "VCFSTREAM_INPUT_ROOTS": str(home / "inbox")}  # where the tests write their input
    with pytest.MonkeyPatch.context() as patch:
        for name in FOREIGN:
            patch.delenv(name, raising=False)
        for name, value in environment.items():
            patch.setenv(name, value)
        own = load_settings()
        try:
            local_services.up(own)
            ready = own.with_groups()  # with the credentials `up` wrote to the services file
            db.migrate(ready)  # the tests look at the ledger before the first run creates it
            yield ready
        finally:
            local_services.down(own)
            shutil.rmtree(home, ignore_errors=True)
