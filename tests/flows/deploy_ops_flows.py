"""A flow for tests/flows/test_deploy_ops.py, deployed from this folder: it writes down how its
process was started, then sleeps.

Example:
    >>> probe.fn("/tmp/probe.json", seconds=0)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from prefect import flow

# A job variable `env` that reached the flow run's process would show here.
PROBE_VARIABLE = "VCFSTREAM_JOB_VARIABLE_PROBE"


@flow(name="vcfstream-ops-probe")
def probe(record: str, seconds: float = 0.0) -> None:
    """Write the process id, command line, folder and ``PROBE_VARIABLE`` to ``record``, then sleep."""
    written = Path(f"{record}.part")
    written.write_text(json.dumps({"pid": os.getpid(), "argv": sys.orig_argv, "cwd": os.getcwd(),
                                   "probe": os.environ.get(PROBE_VARIABLE)}))
    written.replace(record)  # whole or not at all: the test reads it as soon as it exists
    time.sleep(seconds)
