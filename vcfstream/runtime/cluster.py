"""The Dask cluster chunk tasks run on (``ingest.task_runner = dask``): its TLS, and how a run's
local cluster is made.

Every connection of the cluster (client, scheduler, nannies, workers) is mutual TLS
(``distributed.Security`` with ``require_encryption``): a peer whose certificate the cluster's CA
did not sign, or that shows none, is refused before it can send a task, so the cluster adds no
unauthenticated way to run code. A run's local cluster gets a key and self-signed certificate made
for it in memory (``Security.temporary()``: never written to disk, gone with the run); a running
cluster elsewhere is reached with the CA, certificate and key files of ``DaskSettings``. The
scheduler's and workers' HTTP servers (which TLS does not cover) answer only ``/health``
(``CLUSTER_CONFIG``): no task names, no call stacks, no proxy.

Only chunk tasks (read, validate, claim, publish, stage) go to the cluster; their staged files
are read back by the store tasks in the flow's process, so every store write, Kuzu's single
writer included, stays on the flow's host.

Example:
    >>> from vcfstream.settings import DaskSettings
    >>> security = cluster_security(DaskSettings())
    >>> security.require_encryption, local_cluster_options(DaskSettings(), security)["protocol"]
    (True, 'tls://')
"""

from __future__ import annotations

import os
from typing import Any

from distributed import Security

from vcfstream.errors import ConfigurationError
from vcfstream.settings import DaskSettings

# Dask configuration while a run's cluster starts (a local cluster's worker processes inherit it).
CLUSTER_CONFIG: dict[str, Any] = {
    "distributed.scheduler.http.routes": ["distributed.http.health"],
    "distributed.worker.http.routes": ["distributed.http.health"],
}


def cluster_security(dask: DaskSettings) -> Security:
    """Mutual TLS for the cluster: a fresh in-memory certificate for a local cluster (its scheduler,
    workers and this client share it), else this client's files for the cluster at ``dask.address``
    (a ``ConfigurationError`` names the setting of a file that cannot be read)."""
    if dask.address is None:
        return Security.temporary()
    for field in ("tls_ca_file", "tls_cert_file", "tls_key_file"):
        path = getattr(dask, field)
        if not os.access(path, os.R_OK):
            problem = "no such file" if not os.path.exists(path) else "not readable"
            raise ConfigurationError(f"dask: {DaskSettings.env_var(field)} {path}: {problem}")
    return Security(require_encryption=True, tls_ca_file=str(dask.tls_ca_file),
                    tls_client_cert=str(dask.tls_cert_file), tls_client_key=str(dask.tls_key_file))


def local_cluster_options(dask: DaskSettings, security: Security) -> dict[str, Any]:
    """``distributed.LocalCluster`` keyword arguments: ``dask.local_workers`` worker processes of one
    thread each, listening on the loopback interface only, over TLS, without the dashboards (they
    take no login); the scheduler's HTTP server takes a free port, not Dask's usual 8787."""
    return {"n_workers": dask.local_workers, "threads_per_worker": 1, "processes": True, "protocol": "tls://",
            "host": "127.0.0.1", "dashboard_address": None, "worker_dashboard_address": None, "security": security,
            "scheduler_kwargs": {"dashboard_address": "127.0.0.1:0"}}
