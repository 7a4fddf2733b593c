"""Failover benchmark: take the primary away mid-run and time how long until the fallback has the batch.

For each fault, each trial builds a fresh primary publisher behind a TCP proxy
(``tests/tcp_proxy.py``), a fresh router (memory breakers, ``health`` strategy) and warms it up
with batches the primary takes. Then the proxy is cut (connection refused: a clean failure) or
black-holed (accepts, never answers), and the next batch is routed. Reported per fault, p50 and
p99 over the trials:

- ``failover``: from the start of the first publish attempt that meets the fault (the first
  failure) to the fallback's acknowledgement of that batch;
- ``detect``: from that start until the primary's call failed;
- ``switch``: from the primary's failure to the fallback's acknowledgement.

With the Kafka stand-in as primary, ``cut`` is "Kafka entirely down": the KafkaPublisher learns it
from librdkafka's ``_ALL_BROKERS_DOWN`` event and gives up after a short metadata probe instead of
waiting out its flush timeout. Each fault also counts how the primary's call failed:
``primary_unavailable`` (nothing of the batch was handed to the client: a clean failure) and
``primary_in_doubt`` (the batch was already produced when the outage was noticed).

``iggy_refused`` routes batches with a real IggyPublisher whose server refuses connections
(no Iggy server needed): the clean failure as the Iggy client sees it. ``kafka_refused`` does the
same with a new KafkaPublisher whose bootstrap port refuses connections (a producer that never
reached a broker).

``breaker_open`` times a batch when the primary's breaker is already open (every batch after
the first ``breaker_fail_max`` failures): the steady cost of running on the fallback.

Goals: clean failure p99 < 250 ms; black hole < 1.5x the call timeout.

The primary is the live Iggy server when ``VCFSTREAM_IGGY_URL`` is set (proxied), otherwise a
second KafkaPublisher in the primary role (own topic prefix) behind the proxy, with the Iggy call
timeout as its flush timeout. The fallback is the local Kafka broker (started if needed).

Usage: ``.venv/bin/python bench/bench_failover.py [--trials 20] [--batch 500] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # tcp_proxy and the batch builder live with the tests

from fakes import make_batch  # a batch builder; no fake publisher is used here
from tcp_proxy import TcpProxy, kafka_port_rewrite

from vcfstream.devservices import services
from vcfstream.errors import PublishError
from vcfstream.publish.base import Acks, OutgoingBatch, Publisher
from vcfstream.publish.breakers import Breakers
from vcfstream.publish.health import Health
from vcfstream.publish.kafka import KafkaPublisher
from vcfstream.publish.routing import Router
from vcfstream.settings import Settings, load_settings


class TimedPublisher:
    """Delegates to a real publisher and notes when its last call failed."""

    def __init__(self, inner: Publisher) -> None:
        self.inner = inner
        self.platform = inner.platform
        self.failed_at: float | None = None
        self.failure: str = ""  # "unavailable" or "in_doubt" for the last failed call

    def publish(self, batch: OutgoingBatch) -> Acks:
        try:
            return self.inner.publish(batch)
        except PublishError as exc:
            self.failed_at = time.perf_counter()
            self.failure = "in_doubt" if exc.in_doubt else "unavailable"
            raise

    def healthy(self) -> bool:
        return self.inner.healthy()

    def read_back(self, dataset: str):  # type: ignore[no-untyped-def]
        return self.inner.read_back(dataset)

    def close(self) -> None:
        self.inner.close()


@dataclass
class Trial:
    failover_s: float
    detect_s: float
    switch_s: float
    platform: str
    in_doubt: bool
    primary_failure: str = ""


def _primary(settings: Settings, proxy: TcpProxy, prefix: str, timeout_s: float) -> Publisher:
    if settings.iggy.url() is not None:
        from vcfstream.publish.iggy import IggyPublisher

        url = urlsplit(settings.iggy.url().get_secret_value())
        netloc = url.netloc.rsplit("@", 1)
        creds = netloc[0] + "@" if len(netloc) == 2 else ""
        proxied = urlunsplit((url.scheme, f"{creds}{proxy.address}", url.path, url.query, url.fragment))
        return IggyPublisher(settings.with_groups(iggy={"connection_string": SecretStr(proxied), "timeout_s": timeout_s}))
    host, port = settings.kafka.bootstrap_servers.rsplit(":", 1)
    proxy.rewrite_frames = kafka_port_rewrite(host, int(port), proxy.port)
    primary_settings = settings.with_groups(kafka={"bootstrap_servers": proxy.address, "topic_prefix": prefix})
    return KafkaPublisher(primary_settings, platform="iggy", timeout_s=timeout_s)


def _upstream(settings: Settings) -> tuple[str, int]:
    if settings.iggy.url() is not None:
        url = urlsplit(settings.iggy.url().get_secret_value())
        return url.hostname or "127.0.0.1", url.port or 8090
    host, port = settings.kafka.bootstrap_servers.rsplit(":", 1)
    return host, int(port)


def run_trial(settings: Settings, fallback: Publisher, fault: str, dataset: str, prefix: str,
              batch_size: int, timeout_s: float, start: int) -> Trial:
    proxy = TcpProxy(*_upstream(settings))
    primary = TimedPublisher(_primary(settings, proxy, prefix, timeout_s))
    router_settings = settings.with_groups(routing={"breaker_storage": "memory", "strategy": "health"})
    router = Router(router_settings, {"iggy": primary, "kafka": fallback},
                    Breakers(router_settings, ["iggy", "kafka"]), Health())
    try:
        for i in range(3):
            warm = router.route(make_batch(dataset, batch_size, start=start + i * batch_size))
            if warm.platform != "iggy":
                raise RuntimeError(f"warm-up batch went to {warm.platform}: {warm.failover}")
        getattr(proxy, fault)()
        batch = make_batch(dataset, batch_size, start=start + 3 * batch_size)
        began = time.perf_counter()
        result = router.route(batch)
        acked = time.perf_counter()
        failed_at = primary.failed_at or acked
        return Trial(acked - began, failed_at - began, acked - failed_at, result.platform,
                     bool(result.in_doubt_platforms), primary.failure)
    finally:
        proxy.stop()
        primary.close()


def breaker_open_latencies(settings: Settings, fallback: Publisher, dataset: str, batch_size: int,
                           count: int) -> list[float]:
    router_settings = settings.with_groups(routing={"breaker_storage": "memory", "strategy": "health"})
    breakers = Breakers(router_settings, ["iggy", "kafka"])
    unreachable = KafkaPublisher(settings.with_groups(kafka={"bootstrap_servers": "127.0.0.1:1"}), platform="iggy")
    router = Router(router_settings, {"iggy": unreachable, "kafka": fallback}, breakers, Health())
    breakers["iggy"].open()
    latencies = []
    for i in range(count):
        began = time.perf_counter()
        result = router.route(make_batch(dataset, batch_size, start=10_000_000 + i * batch_size))
        latencies.append(time.perf_counter() - began)
        assert result.platform == "kafka" and result.failover == "iggy breaker open"
    return latencies


def _dead_port() -> int:
    with socket.socket() as sock:  # a port nothing listens on: connection refused
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def refused_trials(settings: Settings, fallback: Publisher, dataset: str, batch_size: int, count: int,
                   kind: str, timeout_s: float) -> list[Trial]:
    """A new primary publisher (``kind`` iggy or kafka) whose server refuses connections, per trial
    (runs without an Iggy server)."""
    router_settings = settings.with_groups(routing={"breaker_storage": "memory", "strategy": "health"})
    first_id = 20_000_000 if kind == "iggy" else 25_000_000
    trials = []
    for i in range(count):
        if kind == "iggy":
            from vcfstream.publish.iggy import IggyPublisher

            dead = settings.with_groups(iggy={"connection_string": SecretStr(f"iggy://iggy:iggy@127.0.0.1:{_dead_port()}")})
            primary = TimedPublisher(IggyPublisher(dead))
        else:
            dead = settings.with_groups(kafka={"bootstrap_servers": f"127.0.0.1:{_dead_port()}"})
            primary = TimedPublisher(KafkaPublisher(dead, platform="iggy", timeout_s=timeout_s))
        router = Router(router_settings, {"iggy": primary, "kafka": fallback},
                        Breakers(router_settings, ["iggy", "kafka"]), Health())
        began = time.perf_counter()
        result = router.route(make_batch(dataset, batch_size, start=first_id + i * batch_size))
        acked = time.perf_counter()
        failed_at = primary.failed_at or acked
        trials.append(Trial(acked - began, failed_at - began, acked - failed_at, result.platform,
                            bool(result.in_doubt_platforms), primary.failure))
        primary.close()
    return trials


def _summary(trials: list[Trial]) -> dict[str, Any]:
    return {
        "failover": _percentiles([t.failover_s for t in trials]),
        "detect": _percentiles([t.detect_s for t in trials]),
        "switch": _percentiles([t.switch_s for t in trials]),
        "in_doubt_trials": sum(t.in_doubt for t in trials),
        "primary_unavailable": sum(t.primary_failure == "unavailable" for t in trials),
        "primary_in_doubt": sum(t.primary_failure == "in_doubt" for t in trials),
        "not_on_fallback": sum(t.platform != "kafka" for t in trials),
    }


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p99_rank = max(1, min(len(ordered), int(0.99 * len(ordered) + 0.999999)))
    return {"p50_ms": round(statistics.median(ordered) * 1000, 1), "p99_ms": round(ordered[p99_rank - 1] * 1000, 1),
            "max_ms": round(ordered[-1] * 1000, 1)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--batch", type=int, default=500, help="messages per batch")
    parser.add_argument("--faults", default="cut,black_hole")
    parser.add_argument("--timeout", type=float, default=None, help="primary call timeout (default: iggy_timeout_s)")
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)

    configured = load_settings()
    settings = load_settings(home=REPO / configured.home) if not configured.home.is_absolute() else configured
    services.up(settings, ["kafka"])
    timeout_s = args.timeout or settings.iggy.timeout_s
    primary_kind = "iggy (live, proxied)" if settings.iggy.url() is not None else "kafka stand-in behind proxy"
    dataset = f"bench_failover_{uuid.uuid4().hex[:8]}"
    prefix = f"vcfstream.bench-primary-{uuid.uuid4().hex[:8]}."
    fallback = KafkaPublisher(settings)
    report: dict[str, Any] = {"primary": primary_kind, "call_timeout_s": timeout_s, "batch": args.batch,
                              "trials": args.trials, "faults": {}}
    try:
        fallback.publish(make_batch(dataset, 1, start=30_000_000))  # topic created before any timing
        start = 0
        for fault in [f.strip() for f in args.faults.split(",") if f.strip()]:
            trials = []
            for _ in range(args.trials):
                trials.append(run_trial(settings, fallback, fault, dataset, prefix, args.batch, timeout_s, start))
                start += 4 * args.batch
            report["faults"][fault] = _summary(trials)
            print(f"{fault:>12}: {report['faults'][fault]}", flush=True)
        for kind in ("iggy", "kafka"):
            report["faults"][f"{kind}_refused"] = _summary(
                refused_trials(settings, fallback, dataset, args.batch, max(20, args.trials), kind, timeout_s))
            print(f"{kind}_refused: {report['faults'][f'{kind}_refused']}", flush=True)
        steady = breaker_open_latencies(settings, fallback, dataset, args.batch, max(50, args.trials))
        report["faults"]["breaker_open"] = {"route": _percentiles(steady)}
        print(f"breaker_open: route {report['faults']['breaker_open']['route']}", flush=True)
    finally:
        fallback.close()
    goals = report["faults"]
    report["goals"] = {
        "clean_p99_under_250ms": {
            name: goals[name]["failover"]["p99_ms"] < 250 for name in ("cut", "iggy_refused", "kafka_refused")
            if name in goals},
        "black_hole_under_1.5x_timeout": goals.get("black_hole", {}).get("failover", {}).get(
            "p99_ms", float("inf")) < 1500 * timeout_s,
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
