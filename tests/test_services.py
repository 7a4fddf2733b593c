"""`vcfstream services`: PostgreSQL, Kafka and the Prefect server come up, answer, and go down."""

from __future__ import annotations

import json
import logging
import socket
import time
import urllib.request
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from vcfstream.devservices import services as local_services
from vcfstream.errors import ServiceError
from vcfstream.settings import Settings, load_settings

SERVICE_NAMES = ["postgres", "kafka", "prefect"]


def test_a_second_up_finds_the_running_services_and_starts_nothing(services: Settings) -> None:
    before = local_services.status(services)
    again = local_services.up(services)
    assert list(again) == SERVICE_NAMES
    for name in SERVICE_NAMES:
        assert again[name]["state"] == "running"
        assert again[name]["started"] is False
        assert again[name]["pid"] == before[name]["pid"]


def test_status_reports_each_service_running_with_its_address(services: Settings) -> None:
    report = local_services.status(services)
    assert {name: info["state"] for name, info in report.items()} == dict.fromkeys(SERVICE_NAMES, "running")
    if services.postgres.dsn is None:
        assert report["postgres"]["address"] == f"127.0.0.1:{services.services.pg_port}"
    assert report["kafka"]["address"] == f"127.0.0.1:{services.services.kafka_port}"
    assert report["prefect"]["address"] == f"http://127.0.0.1:{services.services.prefect_port}"


def test_postgres_answers_a_query(services: Settings) -> None:
    with psycopg.connect(services.postgres_dsn(), connect_timeout=10) as conn:
        database, version = conn.execute(
            "SELECT current_database(), current_setting('server_version_num')::int"
        ).fetchone()
        assert (database, version) == (conn.info.dbname, conn.info.server_version)  # the server we asked
    if services.postgres.dsn is None:  # the embedded server
        assert (database, version // 10000) == (local_services.PG_DATABASE, 18)


def test_kafka_answers_an_admin_call(services: Settings) -> None:
    admin = AdminClient(services.kafka.client_config())
    assert len(admin.list_topics(timeout=10).brokers) == 1
    assert admin.describe_cluster().result(timeout=10).controller is not None


def test_kafka_commits_a_transaction_on_one_node(services: Settings, dataset: str) -> None:
    config = services.kafka.client_config()
    topic = services.kafka.topic(dataset)
    admin = AdminClient(config)  # must outlive the future, or the request is cancelled
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)
    producer = Producer({**config, "transactional.id": f"test-{dataset}", "enable.idempotence": True})
    producer.init_transactions(60)
    producer.begin_transaction()
    producer.produce(topic, key=b"k", value=b"committed")
    producer.commit_transaction(60)

    consumer = Consumer({**config, "group.id": dataset, "auto.offset.reset": "earliest",
                         "isolation.level": "read_committed", "enable.auto.commit": False})
    consumer.subscribe([topic])
    try:
        message = None
        for _ in range(60):
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                break
        assert message is not None and message.error() is None
        assert message.value() == b"committed"
    finally:
        consumer.close()


def test_a_producer_right_after_up_gets_its_id_without_retrying(services: Settings, tmp_path: Path) -> None:
    """Before, the first run after `up` logged "Failed to acquire idempotence PID" while it retried."""
    settings = load_settings(home=tmp_path / "home", services={"kafka_port": _free_port(), "kafka_controller_port": _free_port()})
    settings.kafka_libs.parent.mkdir(parents=True)
    settings.kafka_libs.symlink_to(services.kafka_libs)  # the session's jars: no second Maven fetch
    local_services.up(settings, ["kafka"])
    settings = settings.with_groups(kafka={"bootstrap_servers": f"127.0.0.1:{settings.services.kafka_port}"})  # + its login
    try:
        logged: list[str] = []
        handler = logging.Handler()
        handler.emit = lambda record: logged.append(record.getMessage())  # type: ignore[method-assign]
        logger = logging.getLogger(f"test.kafka.{settings.services.kafka_port}")
        logger.addHandler(handler)
        logger.propagate = False
        states: list[str] = []
        producer = Producer({**settings.kafka.client_config(), "enable.idempotence": True,
                             "statistics.interval.ms": 100, "logger": logger,
                             "stats_cb": lambda raw: states.append(json.loads(raw)["eos"]["idemp_state"])})
        deadline = time.monotonic() + 30
        while "Assigned" not in states and time.monotonic() < deadline:
            producer.poll(0.1)
        assert "Assigned" in states
        assert [message for message in logged if "PID" in message] == []
    finally:
        local_services.down(settings, ["kafka"])


def test_prefect_server_health_answers(services: Settings) -> None:
    with urllib.request.urlopen(f"{services.services.prefect_api_url}/health", timeout=10) as response:
        assert response.status == 200
        assert json.loads(response.read()) is True


def test_embedded_dsn_without_a_server_says_how_to_start_it(tmp_path: Path) -> None:
    with pytest.raises(ServiceError, match=r"vcfstream services up.*postgres\.log"):
        local_services.embedded_pg_dsn(load_settings(home=tmp_path))


def test_down_stops_exactly_what_up_started(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / "home", services={"pg_port": _free_port()})
    first = local_services.up(settings, ["postgres"])
    assert first["postgres"]["started"] is True
    try:
        assert local_services.up(settings, ["postgres"])["postgres"]["started"] is False
        with psycopg.connect(local_services.embedded_pg_dsn(settings), connect_timeout=10) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        stopped = local_services.down(settings, ["postgres"])
    assert stopped["postgres"]["state"] == "stopped"
    assert stopped["postgres"]["stopped_pid"] == first["postgres"]["pid"]
    assert local_services.status(settings)["postgres"]["state"] == "stopped"
    assert local_services.down(settings, ["postgres"])["postgres"]["stopped_pid"] is None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
