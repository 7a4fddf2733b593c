"""The cohort flow's per-file task: is a file already in the ledger whole for a dataset?"""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NONE as NO_CACHE_POLICY

from vcfstream.cohort import FileCheck, check_file
from vcfstream.settings import IngestSettings, Settings


@task(name="check-file", cache_policy=NO_CACHE_POLICY, task_run_name="check {path}",
      timeout_seconds=IngestSettings().plan_timeout_s)  # the flow sets the run's (with_options)
def check_file_task(path: str, dataset: str, settings: Settings) -> FileCheck:
    """Ledger check of one file; logs why it is skipped or run."""
    result = check_file(settings, dataset, path)
    get_run_logger().info("%s: %s%s", path, result.state, f" ({result.reason})" if result.reason else "")
    return result
