"""Where an ingest run's chunk tasks run: the flow's own task runner (threads of its process), or a
Dask cluster through prefect-dask's ``DaskTaskRunner`` (``ingest.task_runner = dask``).

Only chunk tasks go to Dask; plan and store tasks stay on the flow's runner, so every store write
(Kuzu's single writer included) is made on the flow's host from the staged files the chunk tasks
left under ``<home>/staging``. The cluster's TLS and HTTP routes: ``vcfstream.runtime.cluster``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect import Task
from prefect.futures import PrefectFuture
from prefect.task_runners import TaskRunner

from vcfstream.settings import Settings


@contextmanager
def chunk_task_runner(settings: Settings) -> Iterator[TaskRunner[Any] | None]:
    """The Dask task runner for chunk tasks while the block runs (None: the flow's own runner).

    With ``dask.address`` unset, a local cluster of ``dask.local_workers`` processes starts when
    the first chunk is submitted and stops when the block ends."""
    if settings.ingest.task_runner != "dask":
        yield None
        return
    # Imported here: Dask adds 0.2 s to every import of the flow, and most runs do not use it.
    import dask
    from distributed import LocalCluster
    from prefect_dask import DaskTaskRunner

    from vcfstream.runtime.cluster import CLUSTER_CONFIG, cluster_security, local_cluster_options

    security = cluster_security(settings.dask)
    if settings.dask.address is not None:
        runner = DaskTaskRunner(address=settings.dask.address, client_kwargs={"security": security})
    else:
        runner = DaskTaskRunner(cluster_class=LocalCluster, client_kwargs={"security": security},
                                cluster_kwargs=local_cluster_options(settings.dask, security))
    # The cluster logs each start, connection and stop at INFO; the run's log has where chunks ran.
    distributed_logger = logging.getLogger("distributed")
    level = distributed_logger.level
    distributed_logger.setLevel(max(level, logging.WARNING))
    try:
        with dask.config.set(CLUSTER_CONFIG), runner:
            yield runner
    finally:
        distributed_logger.setLevel(level)


def submit(task: Task[..., Any], runner: TaskRunner[Any] | None, **parameters: Any) -> PrefectFuture[Any]:
    """``task`` submitted with ``parameters`` to ``runner``, or to the flow's runner when None."""
    if runner is None:
        return task.submit(**parameters)
    return runner.submit(task, parameters)
