"""Routing: strategies, breakers and failover over in-process fakes (``tests/fakes.py``), then
failover scenarios against real Kafka, with the primary role played by a second KafkaPublisher
behind a TCP proxy (``tests/tcp_proxy.py``) that can cut or black-hole it."""

from __future__ import annotations

import socket
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace

import pytest
from fakes import FakePublisher, make_batch

from vcfstream.errors import FailureKind, PublishInDoubt, PublishUnavailable
from vcfstream.publish import breakers as breakers_module
from vcfstream.publish.breakers import Breakers
from vcfstream.publish.health import Health
from vcfstream.publish.routing import BatchInDoubt, Router, RouteResult, in_doubt_on
from vcfstream.settings import Settings


def memory_settings(**routing: object) -> Settings:
    """Default settings with in-process breakers; ``routing`` overrides the routing group."""
    values: dict[str, object] = {"breaker_storage": "memory", "breaker_reset_timeout_s": 30.0}
    values.update(routing)
    return Settings().with_groups(routing=values)


def make_router(strategy: str = "health", *, iggy: FakePublisher | None = None, kafka: FakePublisher | None = None,
                health: Health | None = None, **overrides: object) -> tuple[Router, FakePublisher, FakePublisher]:
    settings = memory_settings(strategy=strategy, **overrides)
    iggy = iggy or FakePublisher("iggy")
    kafka = kafka or FakePublisher("kafka")
    router = Router(settings, {"iggy": iggy, "kafka": kafka}, Breakers(settings, ["iggy", "kafka"]),
                    health or Health())
    return router, iggy, kafka


def route_many(router: Router, count: int, size: int = 10) -> list[RouteResult]:
    return [router.route(make_batch("ds", size, start=i * size)) for i in range(count)]


# -- strategies over fakes --------------------------------------------------------------------
def test_iggy_unreachable_from_the_start_sends_everything_to_kafka() -> None:
    router, iggy, kafka = make_router(iggy=FakePublisher("iggy", "refuse"))
    results = route_many(router, 12)
    assert {r.platform for r in results} == {"kafka"}
    assert len(kafka.stored["ds"]) == 120
    assert iggy.publish_calls == 5  # the breaker opened after 5 failures and stayed open
    assert router.breakers.state("iggy") == "open"
    assert [r.failover for r in results[:5]] == ["iggy failed (refused)"] * 4 + ["iggy breaker opened (refused)"]
    assert all(r.failover == "iggy breaker open" for r in results[5:])
    assert all(r.failover_from == "iggy" for r in results)
    assert all(r.in_doubt_platforms == [] for r in results)


def test_an_open_breaker_half_opens_and_closes_after_three_successes() -> None:
    # 1 s: the check that the reset timeout has not elapsed must not race a stalled test machine
    router, iggy, _kafka = make_router(iggy=FakePublisher("iggy", "refuse"), breaker_reset_timeout_s=1.0)
    route_many(router, 5)
    assert router.breakers.state("iggy") == "open"
    iggy.set_mode("succeed")
    assert router.route(make_batch("ds", 1)).platform == "kafka"  # reset timeout not elapsed
    time.sleep(1.05)
    first = router.route(make_batch("ds", 1, start=100))
    assert first.platform == "iggy" and first.failover is None
    assert router.breakers.state("iggy") == "half-open"
    router.route(make_batch("ds", 1, start=101))
    assert router.breakers.state("iggy") == "half-open"
    router.route(make_batch("ds", 1, start=102))
    assert router.breakers.state("iggy") == "closed"


def test_a_failed_trial_in_half_open_opens_the_breaker_again() -> None:
    router, iggy, _ = make_router(iggy=FakePublisher("iggy", "refuse"), breaker_reset_timeout_s=0.1)
    route_many(router, 5)
    time.sleep(0.15)
    result = router.route(make_batch("ds", 1, start=500))
    assert result.platform == "kafka"
    assert result.failover == "iggy breaker opened (refused)"
    assert router.breakers.state("iggy") == "open"
    assert iggy.publish_calls == 6


def test_round_robin_spreads_batches_over_both_platforms() -> None:
    router, _iggy, _kafka = make_router("round_robin")
    results = route_many(router, 10)
    assert Counter(r.platform for r in results) == {"iggy": 5, "kafka": 5}
    assert [r.platform for r in results[:4]] in (["iggy", "kafka"] * 2, ["kafka", "iggy"] * 2)
    assert all(r.failover is None for r in results)


def test_round_robin_skips_a_platform_whose_breaker_is_open() -> None:
    router, iggy, _kafka = make_router("round_robin", iggy=FakePublisher("iggy", "refuse"))
    results = route_many(router, 20)
    assert {r.platform for r in results} == {"kafka"}
    assert iggy.publish_calls == 5


def test_fallback_only_never_touches_iggy() -> None:
    router, iggy, _kafka = make_router("fallback_only")
    results = route_many(router, 5)
    assert {r.platform for r in results} == {"kafka"}
    assert iggy.calls == []


def test_fallback_only_fails_when_kafka_is_down_without_trying_iggy() -> None:
    router, iggy, _ = make_router("fallback_only", kafka=FakePublisher("kafka", "refuse"))
    with pytest.raises(PublishUnavailable) as caught:
        router.route(make_batch("ds", 3))
    assert "kafka failed (refused)" in str(caught.value)
    assert iggy.calls == []


def test_primary_only_fails_clearly_and_never_uses_kafka() -> None:
    router, _iggy, kafka = make_router("primary_only", iggy=FakePublisher("iggy", "refuse"))
    with pytest.raises(PublishUnavailable) as caught:
        router.route(make_batch("ds", 3))
    message = str(caught.value)
    assert "iggy failed (refused): connection refused (fake)" in message
    assert "kafka not used (routing strategy primary_only)" in message
    assert "[breaker closed (1/5 failures)]" in message
    assert kafka.calls == []


def test_primary_only_needs_the_primary_configured() -> None:
    settings = memory_settings(strategy="primary_only")
    with pytest.raises(PublishUnavailable, match="needs iggy"):
        Router(settings, {"kafka": FakePublisher("kafka")}, Breakers(settings, ["iggy", "kafka"]), Health())


def test_a_timeout_after_send_goes_to_kafka_and_is_in_doubt_on_both() -> None:
    router, _iggy, _kafka = make_router(iggy=FakePublisher("iggy", "timeout", stores_on_timeout=True))
    result = router.route(make_batch("ds", 4))
    assert result.platform == "kafka"
    assert result.failover == "iggy failed (timeout)"
    assert result.failover_reason == "in_doubt"
    assert result.in_doubt_platforms == ["iggy", "kafka"]
    assert len(result.acks) == 4


def test_the_fifth_timeout_reports_the_breaker_opening() -> None:
    router, _, _ = make_router(iggy=FakePublisher("iggy", "timeout"))
    results = route_many(router, 5)
    assert results[-1].failover == "iggy breaker opened (timeout)"


def test_a_batch_published_nowhere_names_both_platforms_and_breaker_states() -> None:
    router, _, _ = make_router(iggy=FakePublisher("iggy", "timeout"), kafka=FakePublisher("kafka", "refuse"))
    with pytest.raises(PublishInDoubt) as caught:
        router.route(make_batch("ds", 7))
    message = str(caught.value)
    assert message.startswith("iggy+kafka: batch of 7 messages of dataset ds was published nowhere")
    assert "iggy failed (timeout)" in message and "kafka failed (refused)" in message
    assert message.count("[breaker closed (1/5 failures)]") == 2


@pytest.mark.parametrize(("iggy_mode", "kafka_mode", "in_doubt", "before_kafka"), [
    ("timeout", "refuse", ["iggy"], ["iggy", "kafka"]),  # kafka refused it cleanly: not on kafka
    ("refuse", "disconnect", ["kafka"], ["kafka"]),  # iggy refused it cleanly: not on iggy
    ("timeout", "disconnect", ["iggy", "kafka"], ["iggy", "kafka"]),
    ("refuse", "refuse", [], ["kafka"]),
])
def test_a_batch_published_nowhere_is_in_doubt_exactly_where_an_attempt_was(
        iggy_mode: str, kafka_mode: str, in_doubt: list[str], before_kafka: list[str]) -> None:
    router, _, _ = make_router(iggy=FakePublisher("iggy", iggy_mode),  # type: ignore[arg-type]
                               kafka=FakePublisher("kafka", kafka_mode))  # type: ignore[arg-type]
    handed: list[list[str]] = []
    with pytest.raises((BatchInDoubt, PublishUnavailable)) as caught:
        router.route(make_batch("ds", 3), before_send=handed.append)
    assert in_doubt_on(caught.value) == in_doubt
    # before each send: the platforms that may hold the batch once that platform has it
    assert handed == [["iggy"], before_kafka]


def test_before_send_names_the_platform_about_to_get_the_batch_and_those_in_doubt_before_it() -> None:
    router, _, _ = make_router(iggy=FakePublisher("iggy", "timeout", stores_on_timeout=True))
    handed: list[list[str]] = []
    result = router.route(make_batch("ds", 2), before_send=handed.append)
    assert handed == [["iggy"], ["iggy", "kafka"]] and result.in_doubt_platforms == ["iggy", "kafka"]
    router, _, _ = make_router(iggy=FakePublisher("iggy", "refuse"))
    handed.clear()
    assert router.route(make_batch("ds", 2), before_send=handed.append).in_doubt_platforms == []
    assert handed == [["iggy"], ["kafka"]]  # a clean refusal leaves nothing on iggy


def test_health_strategy_moves_batches_off_an_unhealthy_primary() -> None:
    clock = [1000.0]
    health = Health(latency_budget_s=0.5, min_samples=3, window_s=10.0, clock=lambda: clock[0])
    router, iggy, _kafka = make_router(health=health)
    for _ in range(5):
        health.record("iggy", 2.0, ok=True, messages=10)  # slow: p99 4x over budget
        health.record("kafka", 0.05, ok=True, messages=10)
    result = router.route(make_batch("ds", 2))
    assert result.platform == "kafka"
    assert result.failover == "iggy unhealthy (score 0.25)"
    assert result.failover_reason == "unhealthy"
    assert iggy.publish_calls == 0
    clock[0] += 11.0  # the slow samples age out of the window: the primary is tried again
    assert router.route(make_batch("ds", 2, start=50)).platform == "iggy"


def test_every_breaker_transition_reaches_the_telemetry_hook() -> None:
    seen: list[tuple[str, str, str]] = []
    unsubscribe = breakers_module.on_transition(lambda *t: seen.append(t))
    try:
        router, iggy, _ = make_router(iggy=FakePublisher("iggy", "refuse"), breaker_reset_timeout_s=0.05,
                                      breaker_success_threshold=1)
        route_many(router, 5)
        iggy.set_mode("succeed")
        time.sleep(0.06)
        router.route(make_batch("ds", 1, start=900))
    finally:
        unsubscribe()
    assert seen == [("iggy", "closed", "open"), ("iggy", "open", "half-open"), ("iggy", "half-open", "closed")]


def test_close_closes_every_publisher() -> None:
    router, iggy, kafka = make_router()
    router.close()
    assert iggy.closed and kafka.closed


# -- each error kind's routing decision (kinds set by the publisher, never read from text) ------------
@pytest.mark.parametrize(("mode", "kind", "reason", "in_doubt", "platform_fault"), [
    ("refuse", FailureKind.REFUSED, "unavailable", False, True),
    ("disconnect", FailureKind.DISCONNECTED, "in_doubt", True, True),
    ("timeout", FailureKind.TIMEOUT, "in_doubt", True, True),
    ("unavailable", FailureKind.UNAVAILABLE, "unavailable", False, True),
    ("invalid", FailureKind.INVALID, "invalid", False, False),
])
def test_each_error_kind_moves_the_batch_on_and_only_platform_faults_count(
        mode: str, kind: FailureKind, reason: str, in_doubt: bool, platform_fault: bool) -> None:
    health = Health(min_samples=1)
    router, _iggy, kafka = make_router(iggy=FakePublisher("iggy", mode), health=health)  # type: ignore[arg-type]
    result = router.route(make_batch("ds", 4))
    assert result.platform == "kafka" and len(result.acks) == 4 and len(kafka.stored["ds"]) == 4
    assert result.failover == f"iggy failed ({kind.value})"
    assert (result.failover_from, result.failover_reason) == ("iggy", reason)
    assert result.in_doubt_platforms == (["iggy", "kafka"] if in_doubt else [])
    assert router.breakers["iggy"].fail_counter == (1 if platform_fault else 0)
    assert health.snapshot("iggy").samples == (1 if platform_fault else 0)  # a data error is no health sample


def test_data_errors_never_open_the_breaker_so_every_batch_still_tries_the_primary() -> None:
    router, iggy, kafka = make_router(iggy=FakePublisher("iggy", "invalid"))
    results = route_many(router, 12)
    assert {r.platform for r in results} == {"kafka"} and len(kafka.stored["ds"]) == 120
    assert iggy.publish_calls == 12
    assert router.breakers.state("iggy") == "closed" and router.breakers["iggy"].fail_counter == 0
    assert {r.failover for r in results} == {"iggy failed (invalid)"}
    assert {r.failover_reason for r in results} == {"invalid"}


def test_a_platform_fault_streak_still_opens_the_breaker_after_data_errors() -> None:
    router, iggy, _ = make_router(iggy=FakePublisher("iggy", "invalid"))
    route_many(router, 3)
    iggy.set_mode("unavailable")
    results = [router.route(make_batch("ds", 1, start=100 + i)) for i in range(5)]
    assert results[-1].failover == "iggy breaker opened (unavailable)"
    assert router.breakers.state("iggy") == "open"


def test_primary_only_with_a_data_error_fails_with_that_kind() -> None:
    router, _iggy, kafka = make_router("primary_only", iggy=FakePublisher("iggy", "invalid"))
    with pytest.raises(PublishUnavailable) as caught:
        router.route(make_batch("ds", 3))
    assert caught.value.kind is FailureKind.INVALID and not caught.value.platform_fault
    assert "iggy failed (invalid): message size too large (fake)" in str(caught.value)
    assert "[breaker closed (0/5 failures)]" in str(caught.value)
    assert kafka.calls == []


@pytest.mark.parametrize(("iggy_mode", "kafka_mode", "error", "kind"), [
    ("invalid", "invalid", PublishUnavailable, FailureKind.INVALID),
    ("refuse", "refuse", PublishUnavailable, FailureKind.REFUSED),
    ("timeout", "refuse", BatchInDoubt, FailureKind.UNAVAILABLE),  # kinds differ
    ("invalid", "disconnect", BatchInDoubt, FailureKind.UNAVAILABLE),
])
def test_a_batch_published_nowhere_carries_the_kind_its_attempts_share(
        iggy_mode: str, kafka_mode: str, error: type, kind: FailureKind) -> None:
    router, _, _ = make_router(iggy=FakePublisher("iggy", iggy_mode),  # type: ignore[arg-type]
                               kafka=FakePublisher("kafka", kafka_mode))  # type: ignore[arg-type]
    with pytest.raises(error) as caught:
        router.route(make_batch("ds", 2))
    assert type(caught.value) is error and caught.value.kind is kind


def test_a_batch_refused_by_open_breakers_everywhere_is_unavailable() -> None:
    router, _, _ = make_router(iggy=FakePublisher("iggy", "refuse"), kafka=FakePublisher("kafka", "refuse"))
    for start in range(5):
        with pytest.raises(PublishUnavailable):
            router.route(make_batch("ds", 1, start=start))
    with pytest.raises(PublishUnavailable) as caught:
        router.route(make_batch("ds", 1, start=99))
    assert caught.value.kind is FailureKind.UNAVAILABLE and "iggy breaker open" in str(caught.value)


# -- the Kafka publisher's error map ---------------------------------------------------------------
@pytest.mark.parametrize(("code", "kind"), [
    ("_TRANSPORT", FailureKind.REFUSED),
    ("_ALL_BROKERS_DOWN", FailureKind.REFUSED),
    ("NETWORK_EXCEPTION", FailureKind.DISCONNECTED),
    ("_MSG_TIMED_OUT", FailureKind.TIMEOUT),
    ("REQUEST_TIMED_OUT", FailureKind.TIMEOUT),
    ("NOT_ENOUGH_REPLICAS", FailureKind.UNAVAILABLE),
    ("LEADER_NOT_AVAILABLE", FailureKind.UNAVAILABLE),
    ("_QUEUE_FULL", FailureKind.UNAVAILABLE),
    ("MSG_SIZE_TOO_LARGE", FailureKind.INVALID),
    ("TOPIC_AUTHORIZATION_FAILED", FailureKind.INVALID),
    ("TOPIC_EXCEPTION", FailureKind.INVALID),
    ("SASL_AUTHENTICATION_FAILED", FailureKind.INVALID),
    ("_INVALID_ARG", FailureKind.INVALID),
])
def test_kafka_error_codes_map_to_failure_kinds(code: str, kind: FailureKind) -> None:
    from confluent_kafka import KafkaError

    from vcfstream.publish.kafka import KafkaPublisher, failure_kind

    err = KafkaError(getattr(KafkaError, code))
    assert failure_kind(err) is kind
    publisher = KafkaPublisher(Settings())  # no connection until the first publish
    clean, doubtful = publisher._error(err, stored_nothing=True), publisher._error(err, stored_nothing=False)
    assert isinstance(clean, PublishUnavailable) and clean.kind is kind
    assert isinstance(doubtful, PublishInDoubt) and doubtful.kind is kind


# -- failover against real Kafka ----------------------------------------------------------------
@pytest.fixture
def kafka_pair(services: Settings, make_name) -> Iterator[dict]:
    """A fallback KafkaPublisher and a primary-role KafkaPublisher (own topic prefix) behind a proxy."""
    from tcp_proxy import TcpProxy, kafka_port_rewrite

    from vcfstream.publish.kafka import KafkaPublisher

    host, port = services.kafka.bootstrap_servers.rsplit(":", 1)
    proxy = TcpProxy(host, int(port))
    proxy.rewrite_frames = kafka_port_rewrite(host, int(port), proxy.port)
    proxy.start()
    prefix = f"vcfstream.primary-{make_name('p')}."
    primary_settings = services.with_groups(kafka={"bootstrap_servers": f"{host}:{proxy.port}", "topic_prefix": prefix})
    timeout_s = 1.0
    primary = KafkaPublisher(primary_settings, platform="iggy", timeout_s=timeout_s)
    fallback = KafkaPublisher(services, timeout_s=30.0)
    direct_primary = KafkaPublisher(services.with_groups(kafka={"topic_prefix": prefix}), platform="iggy")
    settings = services.with_groups(routing={"breaker_storage": "memory", "strategy": "health"})
    router = Router(settings, {"iggy": primary, "kafka": fallback}, Breakers(settings, ["iggy", "kafka"]), Health())
    try:
        yield {"router": router, "proxy": proxy, "primary": primary, "fallback": fallback,
               "read_primary": direct_primary, "timeout_s": timeout_s}
    finally:
        proxy.stop()
        router.close()
        direct_primary.close()


def _read_ids(publisher, dataset: str) -> Counter:
    return Counter(m.message_id for m in publisher.read_back(dataset))


def _run_failover(pair: dict, dataset: str, fault: str) -> tuple[list[RouteResult], list[set[bytes]], set[bytes]]:
    """Nine batches of 200, the fault injected before the fourth; the results, each batch's ids,
    and the ids of batches whose outcome on the primary was in doubt."""
    router, proxy = pair["router"], pair["proxy"]
    results: list[RouteResult] = []
    batches: list[set[bytes]] = []
    in_doubt_ids: set[bytes] = set()
    for i in range(9):
        if i == 3:
            getattr(proxy, fault)()
        batch = make_batch(dataset, 200, start=i * 200)
        result = router.route(batch)
        results.append(result)
        batches.append(set(batch.message_ids))
        if result.in_doubt_platforms:
            in_doubt_ids.update(batch.message_ids)
    return results, batches, in_doubt_ids


@pytest.mark.parametrize("fault", ["cut", "black_hole"])
def test_failover_against_real_kafka_leaves_every_message_readable_once_per_id(kafka_pair: dict, dataset: str,
                                                                             fault: str) -> None:
    results, batches, in_doubt_ids = _run_failover(kafka_pair, dataset, fault)
    sent = set().union(*batches)
    assert [r.platform for r in results[:3]] == ["iggy"] * 3
    assert all(r.platform == "kafka" for r in results[3:])
    assert results[3].failover is not None and results[3].failover.startswith("iggy failed")
    pair_primary = _read_ids(kafka_pair["read_primary"], dataset)
    pair_fallback = _read_ids(kafka_pair["fallback"], dataset)
    assert max(pair_primary.values(), default=1) == 1 and max(pair_fallback.values(), default=1) == 1
    readable = set(pair_primary) | set(pair_fallback)
    assert readable == sent  # nothing lost
    on_both = set(pair_primary) & set(pair_fallback)
    assert on_both <= in_doubt_ids  # a message is on two platforms only where the ledger says in doubt
    assert set().union(*batches[:3]) <= set(pair_primary) - set(pair_fallback)  # before the fault
    assert set().union(*batches[3:]) - in_doubt_ids <= set(pair_fallback) - set(pair_primary)  # after it


# -- Kafka with every broker down (real librdkafka, no fakes) -------------------------------------
def _dead_port() -> int:
    """A local port nothing listens on: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_kafka_publisher_whose_brokers_never_answer_fails_cleanly_naming_all_brokers_down(
        services: Settings, dataset: str) -> None:
    from vcfstream.publish.kafka import KafkaPublisher

    dead = KafkaPublisher(services.with_groups(kafka={"bootstrap_servers": f"127.0.0.1:{_dead_port()}"}),
                          timeout_s=30.0)
    try:
        for start in (0, 10):  # the first call (new producer) and a later one (flag already set)
            with pytest.raises(PublishUnavailable) as caught:
                dead.publish(make_batch(dataset, 10, start=start))
            assert not caught.value.in_doubt
            message = str(caught.value)
            assert "all brokers down" in message and "never reached" in message
            assert "nothing sent" in message
    finally:
        dead.close()


def test_a_kafka_publisher_whose_credentials_are_refused_fails_with_a_data_error() -> None:
    """librdkafka reports refused credentials through error_cb (``_AUTHENTICATION``), then all brokers
    down: the configuration is wrong, not the platform. The report is injected (no SASL broker here)."""
    from confluent_kafka import KafkaError

    from vcfstream.publish.kafka import KafkaPublisher

    dead = KafkaPublisher(Settings().with_groups(kafka={"bootstrap_servers": f"127.0.0.1:{_dead_port()}"}))
    try:
        dead._get_producer()
        dead._on_error(KafkaError(KafkaError._AUTHENTICATION, "SASL authentication error: Authentication failed"))
        with pytest.raises(PublishUnavailable, match="refused the client: SASL authentication error") as caught:
            dead.publish(make_batch("ds", 2))
        assert caught.value.kind is FailureKind.INVALID
    finally:
        dead.close()


def test_a_kafka_publisher_with_a_reachable_broker_publishes_and_every_message_is_acked(
        services: Settings, dataset: str, make_name) -> None:
    from vcfstream.publish.kafka import KafkaPublisher

    publisher = KafkaPublisher(services.with_groups(kafka={"topic_prefix": f"vcfstream.{make_name('up')}."}))
    try:
        batch = make_batch(dataset, 300)
        # A batch whose keys repeat (the pipeline never sends one) is acked message by message too.
        same_key = make_batch(dataset, 40, start=300)
        same_key = replace(same_key, keys=[b"GRCh38:chr1:1:A:T"] * 40)
        acks = [publisher.publish(batch), publisher.publish(same_key)]
        where: dict[bytes, tuple[int, int]] = {}
        for sent, ack in zip((batch, same_key), acks):
            assert ack.platform == "kafka" and ack.message_ids == sent.message_ids
            assert min(ack.offsets) >= 0 and min(ack.partitions) >= 0
            where.update(zip(ack.message_ids, zip(ack.partitions, ack.offsets)))
        stored = list(publisher.read_back(dataset))
        assert len(stored) == 340
        # each acknowledgement names the partition and offset its message was written at
        assert {m.message_id: (m.partition, m.offset) for m in stored} == where
    finally:
        publisher.close()


@pytest.mark.parametrize(("brokers", "settings", "expected"), [
    (1, (None, None), (1, 1)), (2, (None, None), (2, 1)), (3, (None, None), (3, 2)), (7, (None, None), (3, 2)),
    (7, (5, None), (5, 2)), (7, (5, 4), (5, 4)), (1, (2, None), (2, 1)), (3, (None, 5), (3, 3)),
])
def test_kafka_topics_get_three_replicas_two_in_sync_or_what_a_smaller_cluster_allows(
        brokers: int, settings: tuple[int | None, int | None], expected: tuple[int, int]) -> None:
    from vcfstream.publish.kafka import replication

    assert replication(brokers, *settings) == expected


def test_the_kafka_producer_is_idempotent_and_waits_for_every_in_sync_replica() -> None:
    from vcfstream.publish.kafka import KafkaPublisher

    config = KafkaPublisher(Settings()).producer_config()
    assert (config["acks"], config["enable.idempotence"]) == ("all", True)


def test_a_topic_the_kafka_publisher_creates_on_one_broker_has_one_replica_and_min_insync_set_to_one(
        services: Settings, dataset: str, make_name) -> None:
    from confluent_kafka.admin import AdminClient, ConfigResource, ConfigSource

    from vcfstream.publish.kafka import KafkaPublisher

    publisher = KafkaPublisher(services.with_groups(kafka={"topic_prefix": f"vcfstream.{make_name('rf')}."}))
    try:
        publisher.publish(make_batch(dataset, 5))
        topic = publisher.settings.kafka.topic(dataset)
        admin = AdminClient(services.kafka.client_config())
        metadata = admin.list_topics(topic, timeout=10)
        assert len(metadata.brokers) == 1  # the local single-broker cluster
        assert {len(p.replicas) for p in metadata.topics[topic].partitions.values()} == {1}
        resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
        entry = admin.describe_configs([resource])[resource].result(timeout=10)["min.insync.replicas"]
        assert (entry.value, entry.source) == ("1", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)  # set on the topic
    finally:
        publisher.close()


def test_a_replication_factor_the_cluster_cannot_meet_fails_as_a_configuration_error_naming_it(
        services: Settings, dataset: str, make_name) -> None:
    from vcfstream.publish.kafka import KafkaPublisher

    publisher = KafkaPublisher(services.with_groups(
        kafka={"topic_prefix": f"vcfstream.{make_name('rf')}.", "replication_factor": 3}))
    try:
        with pytest.raises(PublishUnavailable, match=r"cannot create topic .*replication factor 3, "
                                                     r"min.insync.replicas 2") as caught:
            publisher.publish(make_batch(dataset, 5))
        assert caught.value.kind is FailureKind.INVALID  # the configuration, not the platform
    finally:
        publisher.close()


def test_a_kafka_publisher_whose_brokers_went_away_fails_fast_and_recovers_when_they_return(
        services: Settings, dataset: str, make_name) -> None:
    """Brokers cut after a successful batch: the first batch after the cut fails (unavailable, or in
    doubt if it was handed to librdkafka before the disconnect was reported); later batches fail as
    unavailable without producing anything; once the broker is back, publishing works again."""
    from tcp_proxy import TcpProxy, kafka_port_rewrite

    from vcfstream.publish.kafka import KafkaPublisher

    host, port = services.kafka.bootstrap_servers.rsplit(":", 1)
    proxy = TcpProxy(host, int(port))
    proxy.rewrite_frames = kafka_port_rewrite(host, int(port), proxy.port)
    prefix = f"vcfstream.{make_name('away')}."
    publisher = KafkaPublisher(services.with_groups(kafka={"bootstrap_servers": proxy.address, "topic_prefix": prefix}), timeout_s=30.0)
    try:
        first = make_batch(dataset, 100)
        assert len(publisher.publish(first)) == 100
        proxy.cut()
        with pytest.raises((PublishUnavailable, PublishInDoubt)):
            publisher.publish(make_batch(dataset, 100, start=100))
        with pytest.raises(PublishUnavailable) as caught:
            publisher.publish(make_batch(dataset, 100, start=200))
        assert "all brokers down, still down" in str(caught.value) and "nothing sent" in str(caught.value)
        proxy.forward()
        # librdkafka reconnects on its own schedule (backoff; a connection the proxy accepted while
        # cut stays silent until librdkafka's ApiVersion timeout): retry until a broker answers.
        again = make_batch(dataset, 100, start=300)
        deadline = time.monotonic() + 60
        while True:
            try:
                acks = publisher.publish(again)
                break
            except PublishUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        assert acks.message_ids == again.message_ids
        stored = Counter(m.message_id for m in publisher.read_back(dataset))
        assert set(first.message_ids) | set(again.message_ids) <= set(stored)
        assert not set(make_batch(dataset, 100, start=200).message_ids) & set(stored)  # nothing sent
        assert max(stored.values()) == 1
    finally:
        proxy.stop()
        publisher.close()


def test_a_message_over_kafkas_size_limit_is_a_data_error_that_stores_nothing_and_never_trips_the_breaker(
        services: Settings, dataset: str, make_name) -> None:
    from vcfstream.publish.kafka import KafkaPublisher

    settings = services.with_groups(kafka={"topic_prefix": f"vcfstream.{make_name('big')}."},
                                    routing={"breaker_storage": "memory", "strategy": "fallback_only"})
    publisher = KafkaPublisher(settings)
    router = Router(settings, {"kafka": publisher}, Breakers(settings, ["iggy", "kafka"]), Health())
    try:
        batch = make_batch(dataset, 3)
        # over message.max.bytes (1 MB), after two that fit: refused before anything is produced, so
        # not in doubt, and nothing is left queued to go out with a later batch
        too_big = replace(batch, values=[*batch.values[:2], b"x" * 2_000_000])
        for _ in range(settings.routing.breaker_fail_max + 2):
            with pytest.raises(PublishUnavailable) as caught:
                router.route(too_big)
            assert caught.value.kind is FailureKind.INVALID
        assert "kafka failed (invalid)" in str(caught.value) and "over message.max.bytes" in str(caught.value)
        assert (router.breakers.state("kafka"), router.breakers["kafka"].fail_counter) == ("closed", 0)
        assert router.route(batch).platform == "kafka"
        assert sorted(m.message_id for m in publisher.read_back(dataset)) == sorted(batch.message_ids)
    finally:
        router.close()


def test_a_dataset_kafka_cannot_name_a_topic_by_is_a_data_error(services: Settings, make_name) -> None:
    from vcfstream.publish.kafka import KafkaPublisher

    publisher = KafkaPublisher(services.with_groups(kafka={"topic_prefix": f"vcfstream.{make_name('name')}."}))
    try:
        with pytest.raises(PublishUnavailable, match="cannot create topic") as caught:
            publisher.publish(make_batch("no spaces or ! in a Kafka topic", 2))
        assert caught.value.kind is FailureKind.INVALID
    finally:
        publisher.close()


def test_settings_that_differ_only_in_a_secret_get_their_own_router() -> None:
    from vcfstream.runtime.process import router_key as _router_key

    base = Settings().with_groups(kafka={"sasl_password": "one"})
    assert _router_key(base) == _router_key(Settings().with_groups(kafka={"sasl_password": "one"}))
    assert _router_key(base) != _router_key(Settings().with_groups(kafka={"sasl_password": "two"}))
    assert "one" not in _router_key(base)
