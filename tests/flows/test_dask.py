"""Chunk tasks on a Dask cluster (``ingest.task_runner = dask``): the cluster takes only mutual TLS,
and a file ingested on a local cluster of two worker processes gives what the default runner gives,
with every store write made in the flow's process."""

from __future__ import annotations

import contextlib
import operator
import os
import socket
import ssl
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask
import psutil
import pytest
from distributed import Client, LocalCluster, Security
from paths import REPO
from pydantic import ValidationError

from vcfstream.errors import ConfigurationError
from vcfstream.ledger import db
from vcfstream.runtime.cluster import CLUSTER_CONFIG, cluster_security, local_cluster_options
from vcfstream.settings import DaskSettings, Settings
from vcfstream.vcf.keys import message_ids
from vcfstream.verify import verify_dataset

sys.path.insert(0, str(REPO / "bench"))

from synth_vcf import generate


@pytest.fixture(scope="module")
def tls_cluster() -> Iterator[tuple[LocalCluster, Security]]:
    """A local cluster made as a run makes it, with one worker process."""
    security = cluster_security(DaskSettings())
    with dask.config.set(CLUSTER_CONFIG), \
            LocalCluster(**local_cluster_options(DaskSettings(local_workers=1), security)) as cluster:
        yield cluster, security


def _pem_files(folder: Path, security: Security, name: str) -> tuple[str, str, str]:
    """The CA, client certificate and key of ``security`` (in-memory PEM) as files of mode 0600."""
    paths = []
    for part, text in (("ca", security.tls_ca_file), ("cert", security.tls_client_cert),
                       ("key", security.tls_client_key)):
        path = folder / f"{name}-{part}.pem"
        path.touch(mode=0o600)
        path.write_text(text)
        paths.append(str(path))
    return paths[0], paths[1], paths[2]


def _tls_answer(address: str, ca_file: str, cert: tuple[str, str] | None) -> bytes:
    """The first bytes the scheduler sends over a TLS session that trusts the cluster's CA and
    shows ``cert`` (certificate and key files), or b"" when the scheduler ends the session."""
    host, port = address.removeprefix("tls://").rsplit(":", 1)
    context = ssl.create_default_context(cafile=ca_file)
    context.check_hostname = False  # the certificate names no host; the CA is what is checked
    if cert is not None:
        context.load_cert_chain(*cert)
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        try:
            with context.wrap_socket(raw) as tls:
                return tls.recv(64)
        except (ssl.SSLError, ConnectionError):
            return b""


def test_the_clusters_certificate_lets_a_client_run_code(tls_cluster: tuple[LocalCluster, Security]) -> None:
    cluster, security = tls_cluster
    assert cluster.scheduler_address.startswith("tls://127.0.0.1:")
    assert all(address.startswith("tls://127.0.0.1:") for address in cluster.scheduler_info["workers"])
    with Client(cluster.scheduler_address, security=security, timeout=30) as client:
        assert client.submit(operator.add, 1, 2).result(timeout=30) == 3


def test_a_client_without_the_clusters_certificate_is_refused(
        tls_cluster: tuple[LocalCluster, Security], tmp_path: Path) -> None:
    cluster, security = tls_cluster
    ca, cert, key = _pem_files(tmp_path, security, "cluster")
    other = Security.temporary()  # a certificate the cluster's CA did not sign
    _, other_cert, other_key = _pem_files(tmp_path, other, "other")

    assert _tls_answer(cluster.scheduler_address, ca, (cert, key))  # the same session with the certificate is served
    assert _tls_answer(cluster.scheduler_address, ca, None) == b""
    assert _tls_answer(cluster.scheduler_address, ca, (other_cert, other_key)) == b""
    with pytest.raises(OSError):  # Dask's own client, with that certificate
        Client(cluster.scheduler_address, timeout=5,
               security=Security(require_encryption=True, tls_ca_file=ca, tls_client_cert=other_cert,
                                 tls_client_key=other_key))
    host, port = cluster.scheduler_address.removeprefix("tls://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as plain:  # no TLS at all
        plain.sendall(b"\x00" * 64)
        with contextlib.suppress(ConnectionError):
            assert plain.recv(64) == b""


def test_a_running_cluster_is_reached_with_the_certificate_files_of_the_settings(
        tls_cluster: tuple[LocalCluster, Security], tmp_path: Path) -> None:
    cluster, security = tls_cluster
    ca, cert, key = _pem_files(tmp_path, security, "client")
    settings = DaskSettings(address=cluster.scheduler_address, tls_ca_file=ca, tls_cert_file=cert, tls_key_file=key)
    with Client(settings.address, security=cluster_security(settings), timeout=30) as client:
        assert client.submit(operator.mul, 6, 7).result(timeout=30) == 42


def test_the_clusters_http_server_answers_only_health(tls_cluster: tuple[LocalCluster, Security]) -> None:
    cluster, _ = tls_cluster
    http = cluster.scheduler.http_server
    assert http.address == "127.0.0.1" and http.port != 8787
    with urllib.request.urlopen(f"http://127.0.0.1:{http.port}/health", timeout=10) as answer:
        assert answer.read() == b"ok"
    for page in ("/info/main/workers.html", "/json/counts.json", "/metrics", "/proxy/8786/127.0.0.1/"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{http.port}{page}", timeout=10)
        assert refused.value.code == 404, page


def test_a_remote_cluster_is_reached_only_over_mutual_tls(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="must be tls://"):
        DaskSettings(address="tcp://10.0.0.5:8786")
    with pytest.raises(ValidationError, match="needs tls_cert_file, tls_key_file"):
        DaskSettings(address="tls://10.0.0.5:8786", tls_ca_file=tmp_path / "ca.pem")
    files = {"tls_ca_file": tmp_path / "ca.pem", "tls_cert_file": tmp_path / "c.pem", "tls_key_file": tmp_path / "k.pem"}
    files["tls_ca_file"].write_text("")
    with pytest.raises(ConfigurationError, match=f"VCFSTREAM_DASK_TLS_CERT_FILE {tmp_path / 'c.pem'}: no such file"):
        cluster_security(DaskSettings(address="tls://10.0.0.5:8786", **files))
    for path in files.values():
        path.write_text("")
    security = cluster_security(DaskSettings(address="tls://10.0.0.5:8786", **files))
    assert security.require_encryption
    assert (security.tls_ca_file, security.tls_client_cert, security.tls_client_key) == tuple(map(str, files.values()))


class ProcessWatcher(threading.Thread):
    """Records (parent, command line) of every process started below this one while it runs."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.seen: dict[int, tuple[int, str]] = {}
        self._before = {child.pid for child in psutil.Process().children(recursive=True)}  # e.g. readers closing
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(0.1):
            for child in psutil.Process().children(recursive=True):
                if child.pid in self._before:
                    continue
                with contextlib.suppress(psutil.Error):
                    self.seen.setdefault(child.pid, (child.ppid(), " ".join(child.cmdline())))

    def parents_of(self, module: str) -> set[int]:
        return {parent for parent, cmdline in self.seen.values() if f"-m {module}" in cmdline}

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)


@pytest.fixture(scope="module")
def prefect_server(services: Settings) -> Iterator[Settings]:
    """The local Prefect server answers this module's flow runs (and, through the runs' settings,
    their tasks on the cluster's workers)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: services.services.prefect_api_url}):
        yield services


def _ledger(settings: Settings, dataset: str) -> dict[bytes, tuple[str, str]]:
    with db.connect(settings) as conn:
        rows = conn.execute("SELECT message_id, variant_key, source_digest FROM ledger WHERE dataset = %s",
                            (dataset,)).fetchall()
    return {row[0].bytes: (row[1], row[2]) for row in rows}


def _ingest(settings: Settings, path: Path, dataset: str, runner: str) -> dict[str, Any]:
    """``vcfstream ingest`` of ``path`` in 6 chunks on ``runner``, into ``dataset`` and the assembly of that
    name (store keys), so the stores write every variant."""
    from vcfstream.cli.run import run_ingest

    os.environ["VCFSTREAM_TASK_RUNNER"] = runner  # what the flow reads; the CLI reads ``settings``
    ingest = {"assembly": dataset, "chunk_size": 2000, "task_runner": runner}
    return run_ingest([str(path)], settings=settings.with_groups(ingest=ingest), dataset=dataset).to_json()


@pytest.mark.slow
def test_a_file_on_a_tls_local_cluster_gives_what_the_default_runner_gives(
        prefect_server: Settings, make_name: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    services = prefect_server
    path = generate(tmp_path / "synth.vcf.gz", 12_000)
    monkeypatch.setenv("VCFSTREAM_TASK_RUNNER", "default")
    monkeypatch.setenv("VCFSTREAM_READ_PROCESSES", "1")  # each chunk task parses in a reader child of its process
    monkeypatch.setenv("VCFSTREAM_STORES", "catalog,lancedb,kuzu")
    # Distinct datasets (ledger, topics) and assemblies (store keys), so both runs write everything.
    default_run, dask_run = make_name("dflt"), make_name("dask")

    default = _ingest(services, path, default_run, "default")
    monkeypatch.setenv("VCFSTREAM_DASK_LOCAL_WORKERS", "2")
    watcher = ProcessWatcher()
    watcher.start()
    try:
        on_dask = _ingest(services, path, dask_run, "dask")
    finally:
        watcher.stop()

    assert default["state"] == on_dask["state"] == "Completed", (default["errors"], on_dask["errors"])
    counts = ("records", "alleles", "reference_blocks", "new", "duplicates", "quarantined", "in_doubt", "failovers",
              "published", "stored", "rules")
    assert {key: on_dask[key] for key in counts} == {key: default[key] for key in counts}
    assert default["new"] > 12_000 and set(default["stored"].values()) == {default["new"]}
    # The same alleles, each under the id its dataset and file give it.
    ledger_default, ledger_dask = _ledger(services, default_run), _ledger(services, dask_run)
    assert len(ledger_dask) == len(ledger_default) == default["new"]
    assert sorted(key.split(":", 1)[1] for key, _ in ledger_dask.values()) == \
        sorted(key.split(":", 1)[1] for key, _ in ledger_default.values())
    assert all(message_ids(dask_run, digest)(key) == message_id for message_id, (key, digest) in ledger_dask.items())
    reports = {name: verify_dataset(services, name) for name in (default_run, dask_run)}
    assert reports[default_run].pop("dataset") == default_run and reports[dask_run].pop("dataset") == dask_run
    assert reports[dask_run] == reports[default_run]
    assert reports[dask_run]["ledger_published"] == default["new"]
    assert (reports[dask_run]["missing"], reports[dask_run]["duplicates"]) == (0, 0)
    # Chunks were parsed below two worker processes of the cluster, never below the flow's process;
    # the store writer (Kuzu, LanceDB) ran below the flow's process.
    readers = watcher.parents_of("vcfstream.runtime.readpool")
    assert len(readers) == 2 and os.getpid() not in readers, watcher.seen
    assert all(watcher.seen[reader][0] == os.getpid() for reader in readers)  # the workers: the flow's children
    assert watcher.parents_of("vcfstream.stores.writer") == {os.getpid()}, watcher.seen
