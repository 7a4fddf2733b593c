"""Iggy publisher. Without a server: connection handling, error mapping, timeouts and a clean
interpreter exit after failed connects. With ``VCFSTREAM_IGGY_URL`` set (``-m iggy``): round trips
against the live server; without it those tests are skipped."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from fakes import make_batch
from tasks.errors import PublishInDoubt, PublishUnavailable
from tasks.publishers.base import Publisher
from tasks.publishers.iggy import IggyPublisher, _message_id, connection_string, header_value, partition_index
from tasks.settings import Settings


def dead_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def black_hole_server() -> Iterator[int]:
    """A TCP server that accepts connections and never answers (a hung Iggy)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1]
    server.close()
    for conn in held:
        conn.close()


def iggy_settings(port: int, **overrides: object) -> Settings:
    values: dict[str, object] = {"iggy_url": f"iggy://iggy:iggy@127.0.0.1:{port}", "iggy_timeout_s": 0.5}
    values.update(overrides)
    return Settings(**values)


# -- configuration -------------------------------------------------------------------------------
def test_connection_string_gets_a_finite_reconnection_policy() -> None:
    assert connection_string("iggy://u:p@h:8090") == \
        "iggy://u:p@h:8090?reconnection_retries=1&reconnection_interval=100ms"
    assert connection_string("iggy+quic://u:p@h:8080") == \
        "iggy+quic://u:p@h:8080?reconnection_max_retries=1&reconnection_interval=100ms"
    assert connection_string("iggy://u:p@h:8090?reconnection_retries=5&reconnection_interval=1s") == \
        "iggy://u:p@h:8090?reconnection_retries=5&reconnection_interval=1s"
    assert connection_string("iggy+http://u:p@h:3000") == "iggy+http://u:p@h:3000"


def test_message_id_is_the_big_endian_u128_and_never_zero() -> None:
    assert _message_id(b"\x00" * 15 + b"\x02") == 2
    assert _message_id(b"\xff" * 16) == 2**128 - 1
    with pytest.raises(ValueError):
        _message_id(b"\x00" * 16)
    with pytest.raises(ValueError):
        _message_id(b"\x01" * 8)


def test_headers_respect_iggys_length_limit() -> None:
    assert header_value("GRCh38:chr1:1:A:T") == "GRCh38:chr1:1:A:T"
    long_key = "GRCh38:chr1:1:" + "A" * 300 + ":T"
    assert header_value(long_key).startswith("b2:") and len(header_value(long_key)) == 35
    assert header_value("") is None


def test_a_variant_key_always_maps_to_the_same_partition() -> None:
    keys = [f"GRCh38:chr1:{i}:A:T".encode() for i in range(1000)]
    first = [partition_index(k, 6) for k in keys]
    assert first == [partition_index(k, 6) for k in keys]
    assert set(first) == set(range(6))


def test_iggy_publisher_implements_the_publisher_protocol() -> None:
    publisher = IggyPublisher(iggy_settings(dead_port()))
    assert isinstance(publisher, Publisher)
    publisher.close()


def test_iggy_not_configured_is_unavailable() -> None:
    with pytest.raises(PublishUnavailable, match="not configured"):
        IggyPublisher(Settings(iggy_url=None))


# -- failures without a server ---------------------------------------------------------------------
def test_a_dead_server_is_unavailable_at_once() -> None:
    publisher = IggyPublisher(iggy_settings(dead_port(), iggy_timeout_s=2.0))
    started = time.monotonic()
    with pytest.raises(PublishUnavailable, match="connect: Cannot establish connection"):
        publisher.publish(make_batch("ds", 3))
    assert time.monotonic() - started < 1.0  # finite reconnection retries: no endless wait
    assert publisher.healthy() is False
    with pytest.raises(PublishUnavailable):
        list(publisher.read_back("ds"))
    publisher.close()
    with pytest.raises(PublishUnavailable, match="closed"):
        publisher.publish(make_batch("ds", 1))


def test_a_server_that_never_answers_times_out_within_the_call_timeout(black_hole_server: int) -> None:
    publisher = IggyPublisher(iggy_settings(black_hole_server, iggy_timeout_s=0.5))
    started = time.monotonic()
    with pytest.raises(PublishUnavailable, match="no answer within 0.5s"):
        publisher.publish(make_batch("ds", 3))  # nothing sent yet: the login never completed
    assert time.monotonic() - started < 1.5
    started = time.monotonic()
    assert publisher.healthy() is False
    assert time.monotonic() - started < 1.5
    publisher.close()


def test_errors_after_sending_are_in_doubt_and_not_connected_is_unavailable() -> None:
    publisher = IggyPublisher(iggy_settings(dead_port()))
    classify = publisher._classify
    assert isinstance(classify(TimeoutError(), "send", sending=True), PublishInDoubt)
    assert isinstance(classify(RuntimeError("Connection closed"), "send", sending=True), PublishInDoubt)
    assert isinstance(classify(RuntimeError("Disconnected"), "send", sending=True), PublishUnavailable)
    assert isinstance(classify(RuntimeError("Cannot establish connection"), "send", sending=True),
                      PublishUnavailable)
    partial = classify(RuntimeError("Disconnected"), "send", sending=True, sent=2000, total=5000)
    assert isinstance(partial, PublishInDoubt) and "2000 of 5000 messages were already stored" in str(partial)
    assert isinstance(classify(TimeoutError(), "connect"), PublishUnavailable)
    publisher.close()


_EXIT_CHILD = textwrap.dedent("""
    import sys
    from tasks.errors import PublishUnavailable
    from tasks.publishers.base import OutgoingBatch
    from tasks.publishers.iggy import IggyPublisher
    from tasks.settings import Settings
    publisher = IggyPublisher(Settings(iggy_url=f"iggy://iggy:iggy@127.0.0.1:{sys.argv[1]}"))
    batch = OutgoingBatch("ds", "/x.vcf", [bytes(15) + b"\\x01"], [b"GRCh38:chr1:1:A:T"], [b"{}"])
    try:
        publisher.publish(batch)
    except PublishUnavailable:
        pass
    if sys.argv[2] == "close":
        publisher.close()
    # otherwise exit right after the failed connect, the moment the abort used to strike
""")


def test_the_interpreter_exits_cleanly_after_failed_connects() -> None:
    """~1 exit in 10 used to abort (SIGABRT) when a Tokio thread re-took the GIL during finalization."""
    port = dead_port()

    def run(i: int) -> int:
        done = subprocess.run([sys.executable, "-c", _EXIT_CHILD, str(port), "close" if i % 4 == 0 else "exit"],
                              capture_output=True, timeout=60)
        return done.returncode

    with ThreadPoolExecutor(max_workers=2) as pool:
        codes = list(pool.map(run, range(32)))
    assert codes == [0] * 32, Counter(codes)


# -- live server (VCFSTREAM_IGGY_URL) -------------------------------------------------------------------
@pytest.fixture
def live_iggy(settings: Settings) -> Iterator[IggyPublisher]:
    if settings.iggy_url is None:
        pytest.skip("VCFSTREAM_IGGY_URL is not set: no live Iggy server")
    publisher = IggyPublisher(settings)
    yield publisher
    publisher.close()


@pytest.mark.iggy
def test_published_messages_read_back_with_ids_headers_and_stable_partitions(live_iggy: IggyPublisher,
                                                                              dataset: str) -> None:
    batch = make_batch(dataset, 500)
    acks = live_iggy.publish(batch)
    assert acks.message_ids == batch.message_ids and set(acks.offsets) == {-1}
    stored = list(live_iggy.read_back(dataset))
    assert Counter(m.message_id for m in stored) == Counter(batch.message_ids)
    partition_of = dict(zip(batch.message_ids, acks.partitions, strict=True))
    by_id = {m.message_id: m for m in stored}
    for message_id, key in zip(batch.message_ids, batch.keys, strict=True):
        message = by_id[message_id]
        assert message.partition == partition_of[message_id]
        assert message.headers["variant_key"] == key
        assert message.headers["dataset"] == dataset.encode()
        assert message.headers["source"] == batch.source.encode()
    assert len(set(acks.partitions)) == live_iggy.settings.iggy_partitions


@pytest.mark.iggy
def test_republishing_stores_again_and_consumers_dedup_by_id(live_iggy: IggyPublisher, dataset: str) -> None:
    batch = make_batch(dataset, 50)
    live_iggy.publish(batch)
    live_iggy.publish(batch)  # stored twice unless the server was started with message dedup on
    stored = Counter(m.message_id for m in live_iggy.read_back(dataset))
    assert set(stored) == set(batch.message_ids)  # deduped by id, each message is there once
    assert set(stored.values()) <= {1, 2}


@pytest.mark.iggy
def test_live_server_is_healthy(live_iggy: IggyPublisher) -> None:
    assert live_iggy.healthy() is True


@pytest.mark.iggy
@pytest.mark.parametrize("fault", ["cut", "black_hole"])
def test_failover_from_live_iggy_to_kafka_keeps_every_message_once_per_id(live_iggy: IggyPublisher, services: Settings,
                                                                         dataset: str, fault: str) -> None:
    from urllib.parse import urlsplit, urlunsplit

    from pydantic import SecretStr
    from tcp_proxy import TcpProxy

    from tasks.breakers import Breakers
    from tasks.health import Health
    from tasks.publishers.kafka import KafkaPublisher
    from tasks.routing import Router

    url = urlsplit(services.iggy_url.get_secret_value())
    proxy = TcpProxy(url.hostname or "127.0.0.1", url.port or 8090)
    credentials = url.netloc.rsplit("@", 1)[0] + "@" if "@" in url.netloc else ""
    proxied = urlunsplit((url.scheme, credentials + proxy.address, url.path, url.query, ""))
    settings = services.model_copy(update={"iggy_url": SecretStr(proxied), "breaker_storage": "memory"})
    primary, fallback = IggyPublisher(settings), KafkaPublisher(services)
    router = Router(settings, {"iggy": primary, "kafka": fallback}, Breakers(settings, ["iggy", "kafka"]), Health())
    sent: set[bytes] = set()
    in_doubt: set[bytes] = set()
    platforms = []
    try:
        for i in range(9):
            if i == 3:
                getattr(proxy, fault)()
            batch = make_batch(dataset, 200, start=i * 200)
            result = router.route(batch)
            platforms.append(result.platform)
            sent.update(batch.message_ids)
            if result.in_doubt_platforms:
                in_doubt.update(batch.message_ids)
    finally:
        proxy.stop()
        router.close()
    assert platforms == ["iggy"] * 3 + ["kafka"] * 6
    on_iggy = Counter(m.message_id for m in live_iggy.read_back(dataset))
    on_kafka = Counter(m.message_id for m in fallback.read_back(dataset))
    assert set(on_iggy) | set(on_kafka) == sent
    assert set(on_iggy) & set(on_kafka) <= in_doubt
