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
from vcfstream.publish import breakers as breakers_module
from vcfstream.publish.breakers import Breakers
from vcfstream.errors import PublishInDoubt, PublishUnavailable
from vcfstream.publish.health import Health
from vcfstream.publish.routing import Router, RouteResult
from vcfstream.settings import Settings


def memory_settings(**overrides: object) -> Settings:
    values: dict[str, object] = {"breaker_storage": "memory", "breaker_reset_timeout_s": 30.0}
    values.update(overrides)
    return Settings(**values)


def make_router(strategy: str = "health", *, iggy: FakePublisher | None = None, kafka: FakePublisher | None = None,
                health: Health | None = None, **overrides: object) -> tuple[Router, FakePublisher, FakePublisher]:
    settings = memory_settings(routing_strategy=strategy, **overrides)
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
    router, iggy, kafka = make_router(iggy=FakePublisher("iggy", "refuse"), breaker_reset_timeout_s=1.0)
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
    router, iggy, kafka = make_router("round_robin")
    results = route_many(router, 10)
    assert Counter(r.platform for r in results) == {"iggy": 5, "kafka": 5}
    assert [r.platform for r in results[:4]] in (["iggy", "kafka"] * 2, ["kafka", "iggy"] * 2)
    assert all(r.failover is None for r in results)


def test_round_robin_skips_a_platform_whose_breaker_is_open() -> None:
    router, iggy, kafka = make_router("round_robin", iggy=FakePublisher("iggy", "refuse"))
    results = route_many(router, 20)
    assert {r.platform for r in results} == {"kafka"}
    assert iggy.publish_calls == 5


def test_fallback_only_never_touches_iggy() -> None:
    router, iggy, kafka = make_router("fallback_only")
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
    router, iggy, kafka = make_router("primary_only", iggy=FakePublisher("iggy", "refuse"))
    with pytest.raises(PublishUnavailable) as caught:
        router.route(make_batch("ds", 3))
    message = str(caught.value)
    assert "iggy failed (refused): connection refused (fake)" in message
    assert "kafka not used (routing strategy primary_only)" in message
    assert "[breaker closed (1/5 failures)]" in message
    assert kafka.calls == []


def test_primary_only_needs_the_primary_configured() -> None:
    settings = memory_settings(routing_strategy="primary_only")
    with pytest.raises(PublishUnavailable, match="needs iggy"):
        Router(settings, {"kafka": FakePublisher("kafka")}, Breakers(settings, ["iggy", "kafka"]), Health())


def test_a_timeout_after_send_goes_to_kafka_and_is_in_doubt_on_both() -> None:
    router, iggy, kafka = make_router(iggy=FakePublisher("iggy", "timeout", stores_on_timeout=True))
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


def test_health_strategy_moves_batches_off_an_unhealthy_primary() -> None:
    clock = [1000.0]
    health = Health(latency_budget_s=0.5, min_samples=3, window_s=10.0, clock=lambda: clock[0])
    router, iggy, kafka = make_router(health=health)
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


# -- failover against real Kafka ----------------------------------------------------------------
@pytest.fixture
def kafka_pair(services: Settings, make_name) -> Iterator[dict]:
    """A fallback KafkaPublisher and a primary-role KafkaPublisher (own topic prefix) behind a proxy."""
    from vcfstream.publish.kafka import KafkaPublisher
    from tcp_proxy import TcpProxy, kafka_port_rewrite

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


def test_a_kafka_publisher_whose_brokers_went_away_fails_fast_and_recovers_when_they_return(
        services: Settings, dataset: str, make_name) -> None:
    """Brokers cut after a successful batch: the first batch after the cut fails (unavailable, or in
    doubt if it was handed to librdkafka before the disconnect was reported); later batches fail as
    unavailable without producing anything; once the broker is back, publishing works again."""
    from vcfstream.publish.kafka import KafkaPublisher
    from tcp_proxy import TcpProxy, kafka_port_rewrite

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


def test_settings_that_differ_only_in_a_secret_get_their_own_router() -> None:
    from tasks.chunk import _router_key

    base = Settings().with_groups(kafka={"sasl_password": "one"})
    assert _router_key(base) == _router_key(Settings().with_groups(kafka={"sasl_password": "one"}))
    assert _router_key(base) != _router_key(Settings().with_groups(kafka={"sasl_password": "two"}))
    assert "one" not in _router_key(base)
