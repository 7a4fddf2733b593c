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
from datetime import timedelta

import pytest
from fakes import make_batch
from pydantic import ValidationError

from vcfstream.errors import FailureKind, PublishInDoubt, PublishUnavailable
from vcfstream.publish.base import Publisher
from vcfstream.publish.iggy import (
    IggyPublisher,
    _message_id,
    _NotSent,
    connection_string,
    expiry_seconds,
    header_value,
    name_problem,
    partition_index,
    redacted,
)
from vcfstream.settings import Settings


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
    values: dict[str, object] = {"connection_string": f"iggy://iggy:iggy@127.0.0.1:{port}", "timeout_s": 0.5}
    values.update(overrides)
    return Settings().with_groups(iggy=values)


def sdk_accepts(url: str) -> bool:
    """Whether the installed SDK's own parser takes the connection string."""
    from apache_iggy import IggyClient

    try:
        IggyClient.from_connection_string(url)
    except RuntimeError:
        return False
    return True


@pytest.fixture
def believed_connected() -> Iterator[IggyPublisher]:
    """A publisher whose client never connected (its server is gone) but which believes it did, with
    topic ``ds`` cached as partitions 0..2: a send then fails inside the real SDK ("Disconnected"),
    with the same error a connection lost while the request was on the wire gives."""
    from apache_iggy import IggyClient

    publisher = IggyPublisher(iggy_settings(dead_port()))
    publisher._runtime.client = IggyClient.from_connection_string(publisher._url)
    publisher._connected = True
    publisher._topics["ds"] = [0, 1, 2]
    yield publisher
    publisher.close()


# -- configuration -------------------------------------------------------------------------------
def test_connection_string_gets_a_finite_reconnection_policy_the_sdk_accepts() -> None:
    tcp_ws = "reconnection_retries=1&reconnection_interval=100ms&reestablish_after=0s"
    expected = {
        "iggy://u:p@h:8090": f"iggy://u:p@h:8090?{tcp_ws}",
        "iggy+tcp://u:p@h:8090?nodelay=true": f"iggy+tcp://u:p@h:8090?nodelay=true&{tcp_ws}",
        "iggy+ws://u:p@h:8092": f"iggy+ws://u:p@h:8092?{tcp_ws}",
        "iggy+quic://u:p@h:8080": "iggy+quic://u:p@h:8080?reconnection_max_retries=1&reconnection_interval=100ms"
                                  "&reconnection_reestablish_after=0s",
        "iggy://u:p@h:8090?reconnection_retries=5&reconnection_interval=1s&reestablish_after=2s":
            "iggy://u:p@h:8090?reconnection_retries=5&reconnection_interval=1s&reestablish_after=2s",
        "iggy://u:p@h:8090?": f"iggy://u:p@h:8090?{tcp_ws}",
    }
    for url, completed in expected.items():
        assert connection_string(url) == completed
        assert sdk_accepts(completed), completed


def test_a_password_with_url_characters_is_kept_as_the_sdk_reads_it() -> None:
    url = "iggy://u:p?w#/d@h:8090"  # the SDK splits at the @, decoding nothing
    completed = connection_string(url)
    assert completed == url + "?reconnection_retries=1&reconnection_interval=100ms&reestablish_after=0s"
    assert sdk_accepts(completed)
    assert redacted(completed) == "iggy://h:8090"
    assert redacted("u:secret@h:8090") == "?://h:8090"  # no scheme: still no password


def test_unsupported_schemes_are_unavailable_without_connecting() -> None:
    for url, reason in (("iggy+http://u:p@127.0.0.1:1", "iggy\\+http:// connects without logging in"),
                        ("IGGY://u:p@127.0.0.1:1", "unsupported scheme IGGY://")):
        publisher = IggyPublisher(Settings().with_groups(iggy={"connection_string": url}))
        with pytest.raises(PublishUnavailable, match=reason) as caught:
            publisher.publish(make_batch("ds", 1))
        assert caught.value.kind is FailureKind.INVALID  # the configuration, not the platform
        assert publisher.healthy() is False
        assert publisher._runtime.client is None
        publisher.close()


def test_names_the_sdk_would_misread_or_refuse() -> None:
    for name in ("2024", "0", "+7", "4294967295", "", "x" * 256, "é" * 128):
        assert name_problem(name), name
    for name in ("ds", "cohort-2024", "4294967296", "-1", "x" * 255, "é" * 127):
        assert name_problem(name) is None, name


@pytest.mark.parametrize("dataset", ["2024", "", "x" * 256])
def test_a_dataset_iggy_cannot_name_a_topic_by_is_unavailable_before_connecting(dataset: str) -> None:
    publisher = IggyPublisher(iggy_settings(dead_port()))
    with pytest.raises(PublishUnavailable, match=f"dataset '{dataset[:20]}.*cannot name a topic of stream vcfstream") \
            as caught:
        publisher.publish(make_batch(dataset, 3))
    assert caught.value.kind is FailureKind.INVALID
    with pytest.raises(PublishUnavailable, match="cannot name a topic"):
        list(publisher.read_back(dataset))
    assert publisher._runtime.client is None  # refused here, not by a failed connect
    publisher.close()


def test_an_all_digit_stream_name_is_refused_by_the_settings() -> None:
    with pytest.raises(ValidationError, match="stream name '123' is all digits"):
        iggy_settings(dead_port(), stream="123")


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
        IggyPublisher(Settings().with_groups(iggy={"connection_string": None}))


# -- durability ----------------------------------------------------------------------------------
class _FakeTopic:
    def __init__(self, options: dict[str, str], derived: dict[str, str] | None = None,
                 message_expiry: object = None) -> None:
        from apache_iggy import IggyExpiry, UserHeaders

        self.partitions = [type("P", (), {"id": i})() for i in range(3)]
        self.options, self.derived_options = UserHeaders(options), UserHeaders(derived or {})
        self.message_expiry = message_expiry or IggyExpiry.ServerDefault()


class _FakeClient:
    """An SDK client for stream and topic setup: ``topics`` by name, ``created`` records create_topic."""

    def __init__(self, topics: dict[str, _FakeTopic]) -> None:
        self.topics, self.created = topics, []

    async def get_stream(self, stream: str) -> object:
        return object()

    async def get_topic(self, stream: str, name: str) -> _FakeTopic | None:
        return self.topics.get(name)

    async def create_topic(self, stream: str, name: str, **options: object) -> None:
        self.created.append((name, options))
        durability = options.get("durability")
        self.topics[name] = _FakeTopic({"durability": durability.value} if durability else {})  # type: ignore[attr-defined]


def _connected_to(client: _FakeClient) -> IggyPublisher:
    publisher = IggyPublisher(iggy_settings(dead_port()))
    publisher._runtime.client, publisher._connected = client, True
    return publisher


def test_topics_are_created_persisted_so_an_ack_means_stable_storage() -> None:
    from apache_iggy import Durability

    client = _FakeClient({})
    publisher = _connected_to(client)
    assert publisher._ensure_topic("ds") == [0, 1, 2]
    ((name, options),) = client.created
    assert name == "ds" and options["durability"] is Durability.PERSISTED and options["partitions_count"] == 6
    publisher.close()


def test_an_existing_topic_that_acknowledges_before_stable_storage_is_refused_as_a_configuration_error() -> None:
    publisher = _connected_to(_FakeClient({"ds": _FakeTopic({}, derived={"durability": "replicated"})}))
    with pytest.raises(PublishUnavailable, match=r"topic vcfstream/ds .* has message durability 'replicated'.*"
                                                 r"nothing sent. Recreate the topic") as caught:
        publisher.publish(make_batch("ds", 2))
    assert caught.value.kind is FailureKind.INVALID  # the batch goes to Kafka; Iggy's breaker is not charged
    publisher.close()


def test_an_existing_topic_set_persisted_is_used_and_one_reporting_no_durability_is_used_with_a_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    publisher = _connected_to(_FakeClient({"kept": _FakeTopic({"durability": "persisted"},
                                                              derived={"durability": "replicated"}),
                                           "old": _FakeTopic({})}))
    with caplog.at_level("WARNING", logger="vcfstream.publish.iggy"):
        assert publisher._ensure_topic("kept") == [0, 1, 2]  # the explicit option wins over the default
        assert not caplog.records
        assert publisher._ensure_topic("old") == [0, 1, 2]
    assert [r.getMessage() for r in caplog.records] == [
        (f"iggy: topic vcfstream/old on {publisher.address} reports no message durability; its acknowledgements "
        "are trusted as persisted, which this server does not confirm")]
    publisher.close()


# -- failures without a server ---------------------------------------------------------------------
def test_a_dead_server_is_unavailable_at_once() -> None:
    publisher = IggyPublisher(iggy_settings(dead_port(), timeout_s=2.0))
    started = time.monotonic()
    with pytest.raises(PublishUnavailable, match="connect: Cannot establish connection") as caught:
        publisher.publish(make_batch("ds", 3))
    assert time.monotonic() - started < 2.0  # before the 2 s call timeout: finite reconnection retries
    assert caught.value.kind is FailureKind.REFUSED
    assert publisher.healthy() is False
    with pytest.raises(PublishUnavailable):
        list(publisher.read_back("ds"))
    publisher.close()
    with pytest.raises(PublishUnavailable, match="closed"):
        publisher.publish(make_batch("ds", 1))


def test_a_dead_websocket_server_is_unavailable_at_once() -> None:
    """Without reestablish_after=0s the SDK waits out a 5 s cooldown before it redials over ws."""
    publisher = IggyPublisher(Settings().with_groups(iggy={"connection_string": f"iggy+ws://iggy:iggy@127.0.0.1:{dead_port()}", "timeout_s": 2.0}))
    started = time.monotonic()
    with pytest.raises(PublishUnavailable, match="connect: Cannot establish connection"):
        publisher.publish(make_batch("ds", 3))
    assert time.monotonic() - started < 2.0  # before the call timeout, far before the 5 s cooldown
    publisher.close()


def test_a_server_that_never_answers_times_out_within_the_call_timeout(black_hole_server: int) -> None:
    publisher = IggyPublisher(iggy_settings(black_hole_server, timeout_s=0.5))
    started = time.monotonic()
    with pytest.raises(PublishUnavailable, match=r"no answer within 0\.5s") as caught:
        publisher.publish(make_batch("ds", 3))  # nothing sent yet: the login never completed
    assert caught.value.kind is FailureKind.TIMEOUT
    assert time.monotonic() - started < 2.0  # the 0.5 s timeout, with room for a loaded machine
    started = time.monotonic()
    assert publisher.healthy() is False
    assert time.monotonic() - started < 2.0
    publisher.close()


def test_send_errors_are_in_doubt_unless_they_prove_nothing_was_stored() -> None:
    """The SDK re-sends a request after reconnecting: a transport or login error can follow a stored copy."""
    publisher = IggyPublisher(iggy_settings(dead_port()))
    classify = publisher._classify
    for error in (TimeoutError(), RuntimeError("Connection closed"), RuntimeError("Disconnected"),
                  RuntimeError("Cannot establish connection"), RuntimeError("Unauthenticated"),
                  RuntimeError("Invalid credentials"), RuntimeError("Not connected"), RuntimeError("Empty response")):
        assert isinstance(classify(error, "send", sending=True), PublishInDoubt), error
    for error in (RuntimeError("Unauthorized"), RuntimeError("Too big message payload"),
                  RuntimeError("Invalid messages count"), _NotSent("Invalid identifier")):
        assert isinstance(classify(error, "send", sending=True), PublishUnavailable), error
    for error in (RuntimeError("Disconnected"), _NotSent("Invalid identifier")):
        partial = classify(error, "send", sending=True, sent=2000, total=5000)
        assert isinstance(partial, PublishInDoubt) and "2000 of 5000 messages were already stored" in str(partial)
    assert isinstance(classify(TimeoutError(), "connect"), PublishUnavailable)
    assert isinstance(classify(RuntimeError("Disconnected"), "connect"), PublishUnavailable)
    publisher.close()


def test_each_sdk_error_maps_to_its_kind_whatever_the_call() -> None:
    """The SDK gives errors no code: its texts are mapped in one table (``_SDK_TEXT``), to kinds."""
    publisher = IggyPublisher(iggy_settings(dead_port()))
    kinds = [
        (TimeoutError(), FailureKind.TIMEOUT),
        (RuntimeError("Cannot establish connection"), FailureKind.REFUSED),
        (RuntimeError("Disconnected"), FailureKind.DISCONNECTED),
        (RuntimeError("Connection closed"), FailureKind.DISCONNECTED),
        (RuntimeError("Not connected"), FailureKind.DISCONNECTED),
        (RuntimeError("Empty response"), FailureKind.DISCONNECTED),
        (RuntimeError("Unauthorized"), FailureKind.INVALID),
        (RuntimeError("Invalid credentials"), FailureKind.INVALID),
        (RuntimeError("Too big message payload"), FailureKind.INVALID),
        (RuntimeError("Invalid messages count"), FailureKind.INVALID),
        (RuntimeError("Topic with name: ds was not found."), FailureKind.UNAVAILABLE),
        (RuntimeError("Unauthenticated"), FailureKind.UNAVAILABLE),
        (RuntimeError("a server error no table lists"), FailureKind.UNAVAILABLE),
        (ValueError("a reply the SDK could not decode"), FailureKind.UNAVAILABLE),
        (_NotSent("Invalid identifier"), FailureKind.INVALID),
        (_NotSent("Not connected", FailureKind.DISCONNECTED), FailureKind.DISCONNECTED),
    ]
    for error, kind in kinds:
        for sending, sent in ((False, 0), (True, 0), (True, 10)):
            mapped = publisher._classify(error, "call", sending=sending, sent=sent, total=20)
            assert mapped.kind is kind, (error, sending, sent)
            assert mapped.platform_fault is (kind is not FailureKind.INVALID)
    publisher.close()


def test_a_send_the_sdk_fails_is_in_doubt(believed_connected: IggyPublisher) -> None:
    with pytest.raises(PublishInDoubt, match=r"send to vcfstream/ds partition .*: Disconnected") as caught:
        believed_connected.publish(make_batch("ds", 3))
    assert caught.value.kind is FailureKind.DISCONNECTED
    assert believed_connected._connected is False  # a new client next time


def test_a_message_the_sdk_refuses_is_unavailable_and_names_the_topic(believed_connected: IggyPublisher) -> None:
    batch = make_batch("ds", 1)  # one message: its request is the first the batch would make
    batch.values[0] = b""
    with pytest.raises(PublishUnavailable, match="send to vcfstream/ds: message 0: Invalid message payload length") \
            as caught:
        believed_connected.publish(batch)
    assert caught.value.kind is FailureKind.INVALID


def test_arguments_the_sdk_refuses_before_a_request_exists(believed_connected: IggyPublisher) -> None:
    def bad_topic(client: object) -> object:
        return client.get_topic("vcfstream", "")  # type: ignore[attr-defined]  # the SDK raises ValueError

    with pytest.raises(PublishUnavailable, match="Invalid identifier"):
        believed_connected._call(bad_topic, "send", sending=True)
    with pytest.raises(PublishInDoubt, match=r"Invalid identifier.*; 3 of 5 messages were already stored"):
        believed_connected._call(bad_topic, "send", sending=True, sent=3, total=5)


def test_a_client_is_shared_only_once_connected(black_hole_server: int) -> None:
    publisher = IggyPublisher(iggy_settings(black_hole_server, timeout_s=0.5))
    seen: list[object] = []
    worker = threading.Thread(target=publisher.healthy)
    worker.start()
    while worker.is_alive():
        seen.append(publisher._runtime.client)
        time.sleep(0.01)
    worker.join()
    assert len(seen) > 10 and set(seen) == {None}  # never the client that was still logging in
    with pytest.raises(PublishUnavailable, match="send: Not connected") as caught:
        publisher._call(lambda c: c.ping(), "send", sending=True)
    assert caught.value.kind is FailureKind.DISCONNECTED
    with pytest.raises(PublishInDoubt, match=r"send: Not connected.*; 2 of 4 messages were already stored"):
        publisher._call(lambda c: c.ping(), "send", sending=True, sent=2, total=4)
    publisher.close()


def test_stream_and_topics_are_looked_up_again_after_a_new_client_or_a_not_found() -> None:
    publisher = IggyPublisher(iggy_settings(dead_port()))
    publisher._stream_ready, publisher._topics["ds"] = True, [0, 1]
    with pytest.raises(PublishUnavailable, match="Cannot establish connection"):
        publisher.publish(make_batch("ds", 1))  # not connected: a new client is made
    assert (publisher._stream_ready, publisher._topics) == (False, {})
    publisher._stream_ready, publisher._topics["ds"] = True, [0, 1]
    publisher._classify(RuntimeError("Topic with name: ds was not found."), "send", sending=True)
    assert (publisher._stream_ready, publisher._topics) == (False, {})
    publisher.close()


@pytest.mark.parametrize("error", ["Disconnected", "Not connected", "Cannot establish connection", "Stale client",
                                   "Empty response", "Connection closed", "Client shutdown"])
def test_a_client_that_lost_its_connection_is_replaced(error: str) -> None:
    publisher = IggyPublisher(iggy_settings(dead_port()))
    publisher._connected = True
    publisher._classify(RuntimeError(error), "send", sending=True)
    assert publisher._connected is False
    publisher._connected = True
    publisher._classify(RuntimeError("Unauthorized"), "send", sending=True)
    assert publisher._connected is True
    publisher.close()


_EXIT_CHILD = textwrap.dedent("""
    import sys
    from vcfstream.errors import PublishUnavailable
    from vcfstream.publish.base import OutgoingBatch
    from vcfstream.publish.iggy import IggyPublisher
    from vcfstream.settings import Settings
    publisher = IggyPublisher(Settings().with_groups(iggy={"connection_string": f"iggy://iggy:iggy@127.0.0.1:{sys.argv[1]}"}))
    batch = OutgoingBatch("ds", "/x.vcf", [bytes(15) + b"\\x01"], [b"GRCh38:chr1:1:A:T"], [b"{}"])
    try:
        publisher.publish(batch)
    except PublishUnavailable:
        pass
    if sys.argv[2] == "close":
        publisher.close()
    # otherwise exit right after the failed connect, the moment the abort used to strike
""")


@pytest.mark.slow
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


# -- retention -----------------------------------------------------------------------------------
def test_a_topics_message_expiry_is_how_long_verify_counts_on_iggy_keeping_a_message() -> None:
    from apache_iggy import IggyExpiry

    week = IggyExpiry.ExpireDuration(timedelta(days=7))
    publisher = _connected_to(_FakeClient({"week": _FakeTopic({}, message_expiry=week),
                                           "never": _FakeTopic({}, message_expiry=IggyExpiry.NeverExpire()),
                                           "default": _FakeTopic({}, message_expiry=IggyExpiry.ServerDefault())}))
    assert publisher.retention_s("week") == 7 * 86400.0
    # never expires, or the server's default (which it does not tell): a lost id is missing, not expired
    assert publisher.retention_s("never") is None and publisher.retention_s("default") is None
    assert publisher.retention_s("absent") is None
    publisher.close()
    assert expiry_seconds(IggyExpiry.ExpireDuration(timedelta(microseconds=1500))) == 0.0015


# -- live server (VCFSTREAM_IGGY_URL) -------------------------------------------------------------------
@pytest.fixture
def live_iggy(settings: Settings) -> Iterator[IggyPublisher]:
    if settings.iggy.url() is None:
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
    assert len(set(acks.partitions)) == live_iggy.settings.iggy.partitions


@pytest.mark.iggy
def test_republishing_stores_every_message_again_or_none_and_ids_tell_the_copies_apart(
        live_iggy: IggyPublisher, dataset: str) -> None:
    batch = make_batch(dataset, 50)
    live_iggy.publish(batch)
    live_iggy.publish(batch)  # stored twice unless the server was started with message dedup on
    stored = Counter(m.message_id for m in live_iggy.read_back(dataset))
    assert set(stored) == set(batch.message_ids)  # a consumer deduping by id sees each message once
    assert set(stored.values()) in ({1}, {2})  # all twice, or all once (server dedup): never a mix


@pytest.mark.iggy
def test_a_topic_the_publisher_creates_on_a_live_server_is_persisted(live_iggy: IggyPublisher, dataset: str) -> None:
    from vcfstream.publish.iggy import topic_durability

    live_iggy.publish(make_batch(dataset, 3))
    topic = live_iggy._call(lambda c: c.get_topic(live_iggy.stream, dataset), "get_topic")
    assert topic_durability(topic) == "persisted"


@pytest.mark.iggy
def test_the_retention_of_a_live_topic_is_its_message_expiry(live_iggy: IggyPublisher, dataset: str) -> None:
    from apache_iggy import IggyExpiry

    live_iggy.publish(make_batch(dataset, 1))  # the stream and a topic of the server's default expiry
    assert live_iggy.retention_s(dataset) is None or live_iggy.retention_s(dataset) > 0
    expiring = f"{dataset}_x"
    live_iggy._call(lambda c: c.create_topic(live_iggy.stream, expiring, partitions_count=1,
                                             message_expiry=IggyExpiry.ExpireDuration(timedelta(hours=36))),
                    "create_topic")
    assert live_iggy.retention_s(expiring) == 36 * 3600.0


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

    from vcfstream.publish.breakers import Breakers
    from vcfstream.publish.health import Health
    from vcfstream.publish.kafka import KafkaPublisher
    from vcfstream.publish.routing import Router

    url = urlsplit(services.iggy.url().get_secret_value())
    proxy = TcpProxy(url.hostname or "127.0.0.1", url.port or 8090)
    credentials = url.netloc.rsplit("@", 1)[0] + "@" if "@" in url.netloc else ""
    proxied = urlunsplit((url.scheme, credentials + proxy.address, url.path, url.query, ""))
    settings = services.with_groups(iggy={"connection_string": SecretStr(proxied)}, routing={"breaker_storage": "memory"})
    primary, fallback = IggyPublisher(settings), KafkaPublisher(services)
    router = Router(settings, {"iggy": primary, "kafka": fallback}, Breakers(settings, ["iggy", "kafka"]), Health())
    batches: list[set[bytes]] = []
    in_doubt: set[bytes] = set()
    platforms = []
    try:
        for i in range(9):
            if i == 3:
                getattr(proxy, fault)()
            batch = make_batch(dataset, 200, start=i * 200)
            result = router.route(batch)
            platforms.append(result.platform)
            batches.append(set(batch.message_ids))
            if result.in_doubt_platforms:
                in_doubt.update(batch.message_ids)
    finally:
        proxy.stop()
        router.close()
    assert platforms == ["iggy"] * 3 + ["kafka"] * 6
    on_iggy = Counter(m.message_id for m in live_iggy.read_back(dataset))
    on_kafka = Counter(m.message_id for m in fallback.read_back(dataset))
    assert set(on_iggy) | set(on_kafka) == set().union(*batches)
    assert max(on_iggy.values()) == 1 and max(on_kafka.values()) == 1  # once per id on each platform
    assert set(on_iggy) & set(on_kafka) <= in_doubt
    assert set().union(*batches[:3]) <= set(on_iggy) - set(on_kafka)  # before the fault
    assert set().union(*batches[3:]) - in_doubt <= set(on_kafka) - set(on_iggy)  # after it
