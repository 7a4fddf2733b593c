"""Blocks: each service's block is its settings group, keeps its secrets out of reprs, errors,
logs, state messages and artifacts; `blocks register` saves defaults that match `services up`."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import pytest
from paths import REAL
from pydantic import ValidationError

from blocks import (
    BLOCK_TYPES,
    BlockNames,
    BlockNotFound,
    IggyConnection,
    KafkaConnection,
    KuzuStore,
    LanceDBStore,
    PostgresConnection,
    RoutingPolicy,
    resolve,
)
from vcfstream.errors import LedgerError, PublishError
from vcfstream.publish.base import OutgoingBatch
from vcfstream.settings import GROUPS, Settings, load_settings

SECRET = "s3cret-" + uuid.uuid4().hex  # a value that appears nowhere unless leaked
DEFAULT_NAMES = {cls.default_name for cls in BLOCK_TYPES.values()}
SLUGS = {cls.get_block_type_slug() for cls in BLOCK_TYPES.values()}


def dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def secret_blocks() -> list[object]:
    return [
        KafkaConnection(bootstrap_servers="kafka.internal:9093", security_protocol="SASL_SSL",
                        sasl_mechanism="SCRAM-SHA-512", sasl_username="vcfstream", sasl_password=SECRET),
        IggyConnection(host="iggy.internal", username="vcfstream", password=SECRET, tls=True),
        IggyConnection(connection_string=f"iggy://vcfstream:{SECRET}@iggy.internal:8090"),
        PostgresConnection(dsn=f"postgresql://vcf:{SECRET}@db.internal:5432/vcfstream"),
    ]


@pytest.fixture
def prefect_server(services: Settings) -> Iterator[Settings]:
    """The Prefect API of `services up`; block documents the test saved are deleted afterwards."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: services.services.prefect_api_url}):
        with get_client(sync_client=True) as client:
            before = {document.id for document in client.read_block_documents()}
        yield services
        with get_client(sync_client=True) as client:
            for document in client.read_block_documents():
                ours = document.block_type is not None and document.block_type.slug in SLUGS
                if ours and document.id not in before and document.name not in DEFAULT_NAMES:
                    client.delete_block_document(document.id)


# -- settings ---------------------------------------------------------------------------------


def test_each_block_replaces_its_own_settings_group() -> None:
    base = load_settings()
    settings = base.with_groups(
        kafka=KafkaConnection(bootstrap_servers="k1:9092,k2:9092", security_protocol="SSL",
                              ssl_ca_location="/etc/ssl/kafka-ca.pem", topic_prefix="prod.", partitions=12),
        iggy=IggyConnection(host="iggy.internal", port=8091, transport="quic", username="u", password="p",
                            stream="variants", timeout_s=5),
        postgres=PostgresConnection(dsn="postgresql://db.internal/vcfstream"),
        lancedb=LanceDBStore(uri="s3://genomics/lancedb", index_min_rows=500),
        kuzu=KuzuStore(path="/data/graph.kuzu", lock_timeout_s=60),
        routing=RoutingPolicy(strategy="round_robin", breaker_fail_max=2, breaker_storage="memory"),
    )
    assert settings.kafka.client_config() == {"bootstrap.servers": "k1:9092,k2:9092", "security.protocol": "SSL",
                                              "ssl.ca.location": "/etc/ssl/kafka-ca.pem"}
    assert (settings.kafka.topic("ds"), settings.kafka.partitions) == ("prod.ds", 12)
    assert settings.iggy.url() is not None
    assert settings.iggy.url().get_secret_value() == "iggy+quic://u:p@iggy.internal:8091"
    assert (settings.iggy.stream, settings.iggy.timeout_s) == ("variants", 5)
    assert settings.postgres.dsn is not None and settings.postgres.dsn.get_secret_value() == "postgresql://db.internal/vcfstream"
    assert (settings.lancedb_location, settings.lancedb.index_min_rows) == ("s3://genomics/lancedb", 500)
    assert (str(settings.kuzu_location), settings.kuzu.lock_timeout_s) == ("/data/graph.kuzu", 60)
    assert (settings.routing.strategy, settings.routing.breaker_fail_max, settings.routing.breaker_storage) == \
        ("round_robin", 2, "memory")
    assert (settings.ingest.chunk_size, settings.home) == (base.ingest.chunk_size, base.home)  # untouched fields stay


def test_flow_parameters_win_over_blocks_and_blocks_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VCFSTREAM_KAFKA_BOOTSTRAP", "from-env:9092")
    monkeypatch.setenv("VCFSTREAM_ROUTING_STRATEGY", "primary_only")
    monkeypatch.setenv("VCFSTREAM_CHUNK_SIZE", "123")

    assert resolve(BlockNames(), load_settings()).kafka.bootstrap_servers == "from-env:9092"
    # What the flows do: blocks over the environment, then explicit parameters (None = not given).
    settings = load_settings().with_groups(kafka=KafkaConnection(bootstrap_servers="from-block:9092"),
                                           routing=RoutingPolicy(strategy="health"))
    settings = settings.with_groups(routing={"strategy": "fallback_only"}, ingest={"chunk_size": None})
    assert settings.kafka.bootstrap_servers == "from-block:9092"
    assert settings.routing.strategy == "fallback_only"  # the explicit parameter
    assert settings.ingest.chunk_size == 123  # None = not given: the environment's value stays


@pytest.mark.parametrize(("value", "stores"), [("none", []), (" None ", []), ("", ["catalog", "lancedb", "kuzu"]),
                                               ("catalog, kuzu", ["catalog", "kuzu"])])
def test_no_stores_is_spelt_none_and_an_empty_variable_keeps_the_default(
        value: str, stores: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VCFSTREAM_STORES", value)
    assert load_settings().stores.names == stores


def test_blocks_reproduce_the_settings_they_were_made_from() -> None:
    settings = load_settings(kafka={"sasl_mechanism": "PLAIN", "security_protocol": "SASL_PLAINTEXT", "sasl_username": "u", "sasl_password": SECRET}, lancedb={"uri": "/x/lance"})
    settings = settings.with_groups(postgres={"dsn": f"postgresql://postgres@127.0.0.1:{settings.services.pg_port}/vcfstream"})
    rebuilt = load_settings().with_groups(**{group: cls.from_settings(settings) for group, cls in BLOCK_TYPES.items()})
    for group in BLOCK_TYPES:
        fields = GROUPS[group].model_fields
        assert {f: getattr(getattr(rebuilt, group), f) for f in fields} == \
            {f: getattr(getattr(settings, group), f) for f in fields}, group
    assert (rebuilt.lancedb_location, rebuilt.kuzu_location) == (settings.lancedb_location, settings.kuzu_location)
    assert rebuilt.kafka.client_config()["sasl.password"] == SECRET
    assert rebuilt.postgres_dsn().endswith(f"127.0.0.1:{settings.services.pg_port}/vcfstream")


def test_inconsistent_blocks_are_refused_when_built() -> None:
    with pytest.raises(ValidationError, match="needs a sasl_mechanism"):
        KafkaConnection(security_protocol="SASL_SSL")
    with pytest.raises(ValidationError, match="needs a SASL security_protocol"):
        KafkaConnection(sasl_mechanism="PLAIN")
    with pytest.raises(ValidationError, match="both username and password"):
        IggyConnection(host="iggy", username="u")
    with pytest.raises(ValidationError, match="password contains") as refused:
        IggyConnection(host="iggy", username="u", password=f"{SECRET}@x")
    assert SECRET not in str(refused.value)


@pytest.mark.parametrize(("fields", "reason"), [
    ({"username": None, "password": None}, "host needs username and password"),
    ({"username": "u", "password": ""}, "host needs username and password"),
    ({"host": "::1"}, "not a host name or IPv4 address"),
    ({"host": "[::1]"}, "not a host name or IPv4 address"),
    ({"tls": True, "tls_ca_file": "/ca.pem&tls=false"}, "tls_ca_file contains one of"),
    ({"tls": True, "tls_domain": "iggy?x"}, "tls_domain contains one of"),
    ({"transport": "quic", "tls": True, "tls_domain": "iggy.internal"}, "not available with QUIC"),
    ({"transport": "quic", "tls": True, "tls_ca_file": "/ca.pem"}, "not available with QUIC"),
])
def test_iggy_blocks_the_sdk_could_not_parse_are_refused_without_showing_the_password(
        fields: dict[str, object], reason: str) -> None:
    short_secret = "pw" + uuid.uuid4().hex[:6]  # short enough that pydantic would not truncate it away
    values: dict[str, object] = {"host": "iggy", "username": "u", "password": short_secret}
    values.update(fields)
    with pytest.raises(ValidationError, match=reason) as refused:
        IggyConnection(**values)
    assert short_secret not in str(refused.value) and short_secret not in repr(refused.value)


def test_no_block_repeats_a_refused_input() -> None:
    """A refused value may be (or hold) a secret: no block's error shows it."""
    short_secret = "pw" + uuid.uuid4().hex[:6]
    for build in (lambda: KafkaConnection(security_protocol=f"SASL_{short_secret}"),
                  lambda: KafkaConnection(security_protocol="SASL_SSL", sasl_mechanism="PLAIN",
                                          sasl_username="u", sasl_password=[short_secret]),
                  lambda: PostgresConnection(dsn=[f"postgresql://u:{short_secret}@db/x"])):
        with pytest.raises(ValidationError) as refused:
            build()
        assert short_secret not in str(refused.value) and short_secret not in repr(refused.value)


def test_iggy_connection_string_carries_tls_options_and_no_iggy_means_none() -> None:
    block = IggyConnection(host="iggy.internal", username="u", password="p", tls=True, tls_ca_file="/ca.pem")
    url = block.url()
    assert url is not None
    assert url.get_secret_value() == "iggy://u:p@iggy.internal:8090?tls=true&tls_domain=iggy.internal&tls_ca_file=/ca.pem"
    assert IggyConnection().url() is None


@pytest.mark.parametrize(("fields", "expected"), [
    ({}, "iggy://u:p@iggy.internal:8090"),
    ({"transport": "ws"}, "iggy+ws://u:p@iggy.internal:8092"),
    ({"transport": "quic"}, "iggy+quic://u:p@iggy.internal:8080"),
    ({"port": 9000, "tls": True, "tls_domain": "iggy.example", "tls_ca_file": "/etc/my certs/ca.pem"},
     "iggy://u:p@iggy.internal:9000?tls=true&tls_domain=iggy.example&tls_ca_file=/etc/my certs/ca.pem"),
    ({"transport": "ws", "tls": True},
     "iggy+ws://u:p@iggy.internal:8092?tls=true&tls_domain=iggy.internal&tls_validate_certificate=true"),
    ({"transport": "quic", "tls": True}, "iggy+quic://u:p@iggy.internal:8080?validate_certificate=true"),
])
def test_every_iggy_block_makes_a_connection_string_the_sdk_accepts(fields: dict[str, object], expected: str) -> None:
    from apache_iggy import IggyClient

    from vcfstream.publish.iggy import connection_string

    url = IggyConnection(host="iggy.internal", username="u", password="p", **fields).url()
    assert url is not None and url.get_secret_value() == expected  # paths verbatim: the SDK decodes nothing
    IggyClient.from_connection_string(connection_string(url.get_secret_value()))  # raises if refused


# -- secrets ----------------------------------------------------------------------------------


@pytest.mark.parametrize("block", secret_blocks(), ids=lambda b: type(b).__name__)
def test_secrets_never_appear_in_reprs_or_dumps_of_blocks_and_settings(block: object) -> None:
    settings = load_settings().with_groups(**{block.group: block})  # type: ignore[attr-defined]
    texts = [repr(block), str(block), block.model_dump_json(), repr(settings), str(settings),  # type: ignore[attr-defined]
             settings.model_dump_json()]
    assert not [text for text in texts if SECRET in text]


def test_publisher_and_ledger_errors_name_the_server_but_not_the_password() -> None:
    port = dead_port()
    base = load_settings(kafka={"partitions": 1})
    batch = OutgoingBatch("ds", "f.vcf", [uuid.uuid4().bytes], [b"GRCh38:1:1:A:C"], [b"{}"])

    from vcfstream.ledger import db
    from vcfstream.publish.iggy import IggyPublisher
    from vcfstream.publish.kafka import KafkaPublisher

    kafka = KafkaPublisher(base.with_groups(kafka=KafkaConnection(
        bootstrap_servers=f"127.0.0.1:{port}", security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
        sasl_username="u", sasl_password=SECRET)))
    with pytest.raises(PublishError) as kafka_error:
        kafka.publish(batch)
    kafka.close()
    assert f"127.0.0.1:{port}" in str(kafka_error.value) and SECRET not in str(kafka_error.value)

    iggy = IggyPublisher(base.with_groups(iggy=IggyConnection(host="127.0.0.1", port=port, username="u",
                                                              password=SECRET, timeout_s=1)))
    try:
        with pytest.raises(PublishError) as iggy_error:
            iggy.publish(batch)
    finally:
        iggy.close()
    assert SECRET not in str(iggy_error.value) and SECRET not in repr(iggy_error.value)
    assert f"127.0.0.1:{port}" in str(iggy_error.value)

    postgres = PostgresConnection(dsn=f"postgresql://vcf:{SECRET}@127.0.0.1:{port}/vcfstream")
    with pytest.raises(LedgerError) as pg_error:
        db.connect(base.with_groups(postgres=postgres))
    assert SECRET not in str(pg_error.value)
    assert '"127.0.0.1", port ' + str(port) in str(pg_error.value)  # libpq's way of naming the server


# -- on the Prefect server --------------------------------------------------------------------


def test_register_saves_defaults_that_match_services_up(prefect_server: Settings) -> None:
    from blocks.register import register_blocks

    names = register_blocks(prefect_server)

    assert names == [cls.default_name for cls in BLOCK_TYPES.values()]
    settings = resolve(BlockNames(**dict(zip(BLOCK_TYPES, names))), prefect_server)
    assert settings.kafka.bootstrap_servers == prefect_server.kafka.bootstrap_servers
    assert settings.iggy.url() == prefect_server.iggy.url()  # no Iggy under `services up`
    assert settings.postgres.dsn is not None and settings.postgres.dsn.get_secret_value() == prefect_server.postgres_dsn()
    assert settings.lancedb_location == prefect_server.lancedb_location
    assert settings.kuzu_location == prefect_server.kuzu_location


def test_register_keeps_edited_blocks_unless_told_to_overwrite(prefect_server: Settings,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from blocks.register import register_blocks

    tag = uuid.uuid4().hex[:8]
    for cls in BLOCK_TYPES.values():  # private names: the shared defaults stay as they are
        monkeypatch.setattr(cls, "default_name", f"{cls.default_name}-{tag}")
    register_blocks(prefect_server)
    KafkaConnection(bootstrap_servers="production:9092").save(f"vcfstream-kafka-{tag}", overwrite=True)

    register_blocks(prefect_server)
    assert KafkaConnection.load(f"vcfstream-kafka-{tag}").bootstrap_servers == "production:9092"
    register_blocks(prefect_server, overwrite=True)
    assert KafkaConnection.load(f"vcfstream-kafka-{tag}").bootstrap_servers == prefect_server.kafka.bootstrap_servers


def test_the_server_stores_secrets_obfuscated_and_load_restores_them(prefect_server: Settings) -> None:
    from prefect.client.orchestration import get_client

    name = f"secret-{uuid.uuid4().hex[:8]}"
    KafkaConnection(bootstrap_servers="k:9092", security_protocol="SASL_SSL", sasl_mechanism="PLAIN",
                    sasl_username="u", sasl_password=SECRET).save(name)
    with get_client(sync_client=True) as client:
        document = client.read_block_document_by_name(name, KafkaConnection.get_block_type_slug(),
                                                      include_secrets=False)
    assert SECRET not in str(document.data) and document.data["sasl_username"] == "u"
    loaded = KafkaConnection.load(name)
    assert loaded.sasl_password is not None and loaded.sasl_password.get_secret_value() == SECRET


def test_a_missing_block_is_named_with_how_to_create_it(prefect_server: Settings) -> None:
    with pytest.raises(BlockNotFound, match=r"'no-such-kafka'.*vcfstream blocks register"):
        resolve(BlockNames(kafka="no-such-kafka"), load_settings())


def test_a_run_failing_on_a_secret_protected_kafka_shows_the_secret_nowhere(prefect_server: Settings,
                                                                           dataset: str) -> None:
    """The flow takes block names; its failure names the broker in the state message, and neither
    that message, the run's logs, its artifacts nor its parameters carry the password."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, LogFilter, LogFilterFlowRunId

    from flows.ingest import ingest_vcf

    tag = uuid.uuid4().hex[:8]
    port = dead_port()
    KafkaConnection(bootstrap_servers=f"127.0.0.1:{port}", security_protocol="SASL_PLAINTEXT",
                    sasl_mechanism="PLAIN", sasl_username="u", sasl_password=SECRET).save(f"kafka-{tag}")
    RoutingPolicy(strategy="fallback_only", breaker_storage="memory", breaker_fail_max=1000).save(f"routing-{tag}")

    state = ingest_vcf([str(REAL / "sample.vcf.gz")], dataset=dataset, stores=[],
                       blocks=BlockNames(kafka=f"kafka-{tag}", routing=f"routing-{tag}"), return_state=True)

    assert state.is_failed()
    assert f"127.0.0.1:{port} unreachable" in (state.message or "")
    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))
        run = client.read_flow_run(run_id)
    texts = [state.message or "", str(run.parameters), *(log.message for log in logs),
             *(str(artifact.data) for artifact in artifacts)]
    assert logs and not [text for text in texts if SECRET in text]
