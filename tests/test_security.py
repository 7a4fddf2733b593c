"""Secure by default: every local service refuses a client without credentials, Kafka's ACLs
separate the writer from the reader, the home is its owner's only, and ``services up`` migrates
a home made with trust authentication and a PLAINTEXT broker."""

from __future__ import annotations

import json
import logging
import os
import pwd
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from vcfstream.devservices import services as local_services
from vcfstream.devservices.credentials import Credentials, read_credentials
from vcfstream.settings import KafkaSettings, Settings, load_settings, write_services_file

REPO = Path(__file__).resolve().parents[1]
QUIET = logging.getLogger("test.security.librdkafka")  # refusals are what these tests expect
QUIET.addHandler(logging.NullHandler())
QUIET.propagate = False


# -- helpers ----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _credentials(settings: Settings) -> Credentials:
    credentials = read_credentials(settings)
    assert credentials is not None, "services up generates the credentials"
    return credentials


def _kafka_refuses(config: dict[str, Any]) -> bool:
    try:
        AdminClient({**config, "logger": QUIET}).list_topics(timeout=5)
    except KafkaException:
        return True
    return False


def _prefect_status(api_url: str, auth_string: str | None = None) -> int:
    request = urllib.request.Request(f"{api_url}/flows/filter", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
    if auth_string is not None:
        import base64

        request.add_header("Authorization", "Basic " + base64.b64encode(auth_string.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _as_user(user: str, *command: str) -> subprocess.CompletedProcess[str]:
    """Run ``command`` as another account (we are root in the test environment)."""
    account = pwd.getpwnam(user)
    return subprocess.run(["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--clear-groups",
                           "--", *command], capture_output=True, text=True, timeout=30)


def _fresh_home_settings(parent: Path, names: list[str], shared: Settings) -> Settings:
    """Settings of a new home in ``parent`` on free ports, the session's Kafka jars linked in."""
    kafka_port = _free_port()
    settings = load_settings(home=parent / "home", services={
        "pg_port": _free_port(), "kafka_port": kafka_port, "kafka_controller_port": _free_port(),
        "prefect_port": _free_port()}, kafka={"bootstrap_servers": f"127.0.0.1:{kafka_port}"})
    if "kafka" in names:
        settings.kafka_libs.parent.mkdir(parents=True)
        settings.kafka_libs.symlink_to(shared.kafka_libs)  # no second Maven fetch
    return settings


@pytest.fixture
def world_traversable_folder() -> Iterator[Path]:
    """A folder every local user may enter and list (like /home or a shared project folder)."""
    folder = Path(tempfile.mkdtemp(prefix="vcfstream-security-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        subprocess.run(["rm", "-rf", str(folder)], check=False)


# -- refusals -----------------------------------------------------------------------------------


def test_postgres_refuses_a_client_without_the_password(services: Settings) -> None:
    if services.postgres.dsn is not None:
        pytest.skip("VCFSTREAM_PG_DSN names an external server")
    address = f"127.0.0.1:{services.services.pg_port}"
    for dsn in (f"postgresql://postgres@{address}/vcfstream", f"postgresql://vcfstream@{address}/vcfstream",
                f"postgresql://postgres:wrong@{address}/postgres"):
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(dsn, connect_timeout=10).close()
    with psycopg.connect(services.postgres_dsn(), connect_timeout=10) as conn:
        user, superuser = conn.execute("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    assert (user, superuser) == (_credentials(services).pg_user, False)


def test_the_prefect_api_refuses_a_client_without_the_login(services: Settings) -> None:
    api = services.services.prefect_api_url
    assert _prefect_status(api) == 401
    assert _prefect_status(api, "vcfstream:wrong") == 401
    assert _prefect_status(api, _credentials(services).prefect_auth_string) == 200
    with urllib.request.urlopen(f"{api}/health", timeout=10) as response:  # probes stay open
        assert response.status == 200


def test_kafka_refuses_a_client_without_the_login(services: Settings) -> None:
    address = services.kafka.bootstrap_servers
    assert _kafka_refuses({"bootstrap.servers": address})  # PLAINTEXT: anonymous
    wrong = {**_credentials(services).kafka_client(_credentials(services).kafka_user), "sasl.password": "wrong"}
    assert _kafka_refuses({"bootstrap.servers": address, **wrong})
    controller = f"127.0.0.1:{services.services.kafka_controller_port}"
    assert _kafka_refuses({"bootstrap.servers": controller})
    assert not _kafka_refuses(services.kafka.client_config())


def test_only_vcfstream_writes_its_topics_and_the_reader_only_reads_them(services: Settings, dataset: str) -> None:
    credentials = _credentials(services)
    writer = services.kafka.client_config()
    assert writer["sasl.username"] == credentials.kafka_user
    reader = {"bootstrap.servers": services.kafka.bootstrap_servers,
              **credentials.kafka_client(credentials.kafka_reader_user), "logger": QUIET}
    topic = services.kafka.topic(dataset)
    admin = AdminClient(writer)
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)
    producer = Producer(writer)
    producer.produce(topic, value=b"from vcfstream")
    assert producer.flush(30) == 0

    errors: list[KafkaError] = []
    intruder = Producer({**reader, "enable.idempotence": False, "message.timeout.ms": 10_000})
    intruder.produce(topic, value=b"from the reader", on_delivery=lambda error, _message: errors.append(error))
    intruder.flush(30)
    assert [error.code() if error else None for error in errors] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
    other_topic = f"vcfstream.{dataset}.reader"
    with pytest.raises(KafkaException):
        reader_admin = AdminClient(reader)
        reader_admin.create_topics([NewTopic(other_topic, num_partitions=1, replication_factor=1)])[other_topic].result(30)

    consumer = Consumer({**reader, "group.id": dataset, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    try:
        values = []
        deadline = time.monotonic() + 60
        while not values and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                values.append(message.value())
        assert values == [b"from vcfstream"]
    finally:
        consumer.close()


# -- the home -----------------------------------------------------------------------------------


def test_the_home_and_its_files_are_their_owners_only(services: Settings, world_traversable_folder: Path) -> None:
    settings = _fresh_home_settings(world_traversable_folder, ["postgres", "kafka", "prefect"], services)
    local_services.up(settings)
    try:
        home = settings.home_dir
        pg_account = pwd.getpwnam(local_services.PG_SYSTEM_USER) if os.geteuid() == 0 else None
        # The server's own account (when we are root) may traverse, not list, its way to its folder.
        traversed = {home, home / "postgres"} if pg_account else set()
        assert stat.S_IMODE(home.stat().st_mode) == (0o710 if pg_account else 0o700)
        for path in [home, *home.rglob("*")]:
            if path.is_symlink() or not path.exists():
                continue
            mode = stat.S_IMODE(path.stat().st_mode)
            if path in traversed:
                assert (mode, path.stat().st_gid) == (0o710, pg_account.pw_gid), path  # type: ignore[union-attr]
            else:
                assert mode & 0o077 == 0, f"{path} has mode {mode:o}"
        for secret in ("services.env", "credentials.json", "kafka/config/server.properties", "prefect/prefect.db"):
            assert stat.S_IMODE((home / secret).stat().st_mode) == 0o600
            assert _as_user("nobody", "cat", str(home / secret)).returncode != 0
        assert _as_user("nobody", "ls", str(home)).returncode != 0
        if pg_account:  # traversal only: the server's account reads no secret of ours
            assert _as_user(pg_account.pw_name, "cat", str(home / "credentials.json")).returncode != 0
            assert _as_user(pg_account.pw_name, "ls", str(home)).returncode != 0

        printed = subprocess.run([sys.executable, "-m", "vcfstream.cli", "services", "credentials", "--json"],
                                 env={**os.environ, "VCFSTREAM_HOME": str(home)}, capture_output=True, text=True,
                                 timeout=60, cwd=REPO)
        assert printed.returncode == 0, printed.stderr
        report = json.loads(printed.stdout)
        assert report["prefect"]["auth_string"] == _credentials(settings).prefect_auth_string
        assert report["postgres"]["dsn"].split("@")[0] == settings.postgres_dsn().split("@")[0]  # user:password
    finally:
        local_services.down(settings)
    for log in home.rglob("*.log"):  # the passwords are never logged
        text = log.read_text(errors="replace")
        for password in (_credentials(settings).pg_password, _credentials(settings).pg_superuser_password,
                         _credentials(settings).kafka_admin_password, _credentials(settings).prefect_password):
            assert password not in text, log


def test_credentials_without_a_home_say_how_to_make_them(tmp_path: Path) -> None:
    printed = subprocess.run([sys.executable, "-m", "vcfstream.cli", "services", "credentials"],
                             env={**os.environ, "VCFSTREAM_HOME": str(tmp_path / "none")}, capture_output=True,
                             text=True, timeout=60, cwd=REPO)
    assert printed.returncode == 1
    assert "vcfstream services up" in printed.stderr


# -- migration ----------------------------------------------------------------------------------


def test_an_old_home_with_trust_and_plaintext_is_migrated(services: Settings, world_traversable_folder: Path) -> None:
    """Made secure, then put back the way homes were before (trust, no vcfstream role, PLAINTEXT
    broker data, a Prefect server and default blocks without credentials, world-readable files);
    ``up`` migrates it and the old table is the vcfstream role's."""
    from blocks.postgres import PostgresConnection
    from blocks.register import prefect_api

    settings = _fresh_home_settings(world_traversable_folder, ["postgres", "kafka", "prefect"], services)
    first = local_services.up(settings)
    home, old = settings.home_dir, _credentials(settings)
    pg_address = first["postgres"]["address"]
    try:
        with prefect_api(settings.with_groups()):  # the local server: its own login
            PostgresConnection(dsn=f"postgresql://postgres@{pg_address}/vcfstream").save(
                PostgresConnection.default_name, overwrite=True)
        superuser = f"postgresql://postgres:{old.pg_superuser_password}@{pg_address}"
        with psycopg.connect(f"{superuser}/vcfstream", autocommit=True) as conn:
            conn.execute("CREATE SCHEMA legacy")
            conn.execute("CREATE TABLE legacy.marks (id bigserial PRIMARY KEY, note text)")
            conn.execute("INSERT INTO legacy.marks (note) VALUES ('before')")
        data = home / "postgres" / "data"
        (data / "pg_hba.conf").write_text("host all all 127.0.0.1/32 trust\n")
        with psycopg.connect(f"{superuser}/postgres", autocommit=True) as conn:
            conn.execute("SELECT pg_reload_conf()")
            conn.execute("ALTER DATABASE vcfstream OWNER TO postgres")
            conn.execute("ALTER ROLE postgres PASSWORD NULL")
        with psycopg.connect(f"postgresql://postgres@{pg_address}/vcfstream", autocommit=True) as conn:
            conn.execute("DROP OWNED BY vcfstream")
            conn.execute("DROP ROLE vcfstream")
        local_services.down(settings, ["kafka"])
        kafka_data = home / "kafka" / "data"
        subprocess.run(["rm", "-rf", str(kafka_data)], check=True)
        kafka_data.mkdir()
        (kafka_data / "meta.properties").write_text("version=1\ncluster.id=plaintext-era\nnode.id=1\n")
        prefect = json.loads(local_services.pid_file(settings, "prefect").read_text())
        local_services.pid_file(settings, "prefect").write_text(json.dumps({**prefect, "secured": False}))
        (home / "credentials.json").unlink()
        (home / "services.env").unlink()
        for path in [home, *home.rglob("*")]:
            if not path.is_symlink() and path.owner() == "root":
                path.chmod(0o755 if path.is_dir() else 0o644)

        again = local_services.up(settings)
        migrated = settings.with_groups()
        new = _credentials(migrated)
        assert new != old
        assert again["postgres"]["started"] is False  # secured in place
        assert again["prefect"]["started"] is True and again["prefect"]["pid"] != prefect["pid"]
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(f"postgresql://postgres@{pg_address}/vcfstream", connect_timeout=10).close()
        with psycopg.connect(migrated.postgres_dsn(), autocommit=True) as conn:
            assert conn.execute("SELECT note FROM legacy.marks").fetchall() == [("before",)]
            conn.execute("INSERT INTO legacy.marks (note) VALUES ('after')")
            owner = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'marks'").fetchone()
            assert owner == (new.pg_user,)
        assert (kafka_data / ".vcfstream-scram").exists()
        assert "plaintext-era" not in (kafka_data / "meta.properties").read_text()
        assert not _kafka_refuses(migrated.kafka.client_config())
        assert _prefect_status(migrated.services.prefect_api_url) == 401
        with prefect_api(migrated):
            assert PostgresConnection.load(PostgresConnection.default_name).dsn.get_secret_value() == \
                migrated.postgres_dsn()  # type: ignore[union-attr]
        assert stat.S_IMODE((home / "kafka" / "config" / "server.properties").stat().st_mode) == 0o600
        assert _as_user("nobody", "ls", str(home)).returncode != 0
    finally:
        local_services.down(settings)


# -- settings and environment ---------------------------------------------------------------------


def test_settings_take_the_local_credentials_below_the_environment(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    write_services_file(tmp_path / "services.env", {
        "VCFSTREAM_KAFKA_BOOTSTRAP": "127.0.0.1:19092", "VCFSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "VCFSTREAM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "VCFSTREAM_KAFKA_SASL_USERNAME": "vcfstream",
        "VCFSTREAM_KAFKA_SASL_PASSWORD": "local-secret", "VCFSTREAM_PREFECT_AUTH_STRING": "vcfstream:ui-secret"})
    for name in [name for name in os.environ if name.startswith(("VCFSTREAM_KAFKA", "VCFSTREAM_PREFECT"))]:
        monkeypatch.delenv(name)
    settings = load_settings(home=tmp_path)
    assert settings.kafka.client_config() == {
        "bootstrap.servers": "127.0.0.1:19092", "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "vcfstream", "sasl.password": "local-secret"}
    assert settings.services.prefect_auth_string is not None
    assert settings.services.prefect_auth_string.get_secret_value() == "vcfstream:ui-secret"

    monkeypatch.setenv("VCFSTREAM_KAFKA_SASL_USERNAME", "vcfstream-reader")
    monkeypatch.setenv("VCFSTREAM_PREFECT_AUTH_STRING", "operator:own")
    settings = load_settings(home=tmp_path)
    assert settings.kafka.sasl_username == "vcfstream-reader"
    assert settings.services.prefect_auth_string.get_secret_value() == "operator:own"  # type: ignore[union-attr]

    elsewhere = settings.with_groups(kafka=KafkaSettings(bootstrap_servers="kafka.internal:9092"))
    assert elsewhere.kafka.security_protocol == "PLAINTEXT" and elsewhere.kafka.sasl_password is None
    saved_before = KafkaSettings.model_validate(KafkaSettings(bootstrap_servers="127.0.0.1:19092").model_dump())
    local = settings.with_groups(kafka=saved_before)
    assert local.kafka.sasl_mechanism == "SCRAM-SHA-512"
    assert saved_before.security_protocol == "PLAINTEXT"  # the block itself is left as it was


def test_the_prefect_server_gets_the_operators_settings_but_not_a_clients(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path, services={"prefect_port": 14999})
    env = local_services.prefect_server_environment(settings, {
        "PATH": "/usr/bin", "PREFECT_SERVER_API_KEEPALIVE_TIMEOUT": "9",
        "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "50", "PREFECT_API_URL": "http://elsewhere/api",
        "PREFECT_SERVER_API_AUTH_STRING": "mine:weak", "PREFECT_SERVER_API_PORT": "1"})
    assert env["PREFECT_SERVER_API_KEEPALIVE_TIMEOUT"] == "9"
    assert env["PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE"] == "50"  # over our default
    assert "PREFECT_API_URL" not in env
    assert env["PREFECT_SERVER_API_PORT"] == "14999"
    assert env["PREFECT_SERVER_API_AUTH_STRING"] == _credentials(settings).prefect_auth_string
    assert env["PATH"] == "/usr/bin"
