"""The fault suite: real services, real processes killed. ``pytest -m faults``."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "faults: kills or restarts a service or process mid-ingest (tests/faults/)")
