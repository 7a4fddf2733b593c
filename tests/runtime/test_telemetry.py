"""Telemetry: the span tree of an ingestion, metrics equal to the run summary, a real Prometheus
scraping the endpoint, the shipped Prometheus/Grafana assets, and the resource guard.

Chunk tasks are driven the way the Prefect chunk task drives them: the flow span in the main
thread, chunk spans in worker threads joined to it by an explicit W3C carrier.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from paths import REPO
from prometheus_client.parser import text_string_to_metric_families

from vcfstream.model import ChunkSummary
from vcfstream.runtime.resources import ResourceGuard
from vcfstream.runtime.telemetry import EXPORT_TIMEOUT_S, SUMMARY_COUNTERS, Telemetry, setup_telemetry
from vcfstream.settings import Settings

ROOT = REPO
PROMETHEUS_DIR = ROOT / "infra" / "prometheus"
DASHBOARD = ROOT / "infra" / "grafana" / "vcfstream-dashboard.json"
STAGES = ["read", "validate", "claim", "publish", "store.lancedb", "store.kuzu", "store.postgres"]
needs_prometheus = pytest.mark.skipif(shutil.which("prometheus") is None or shutil.which("promtool") is None,
                                      reason="the Debian prometheus package (prometheus, promtool) is not installed")


@dataclass
class Traced:
    telemetry: Telemetry
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.finished() if span.name == name]

    def children(self, parent: ReadableSpan) -> list[ReadableSpan]:
        kids = [s for s in self.finished() if s.parent is not None and s.parent.span_id == parent.context.span_id]
        return sorted(kids, key=lambda s: s.start_time)

    def points(self, name: str) -> dict[frozenset, float]:
        """{labels: value} of a metric (a histogram's value is its count)."""
        data = self.metrics.get_metrics_data()
        out: dict[frozenset, float] = {}
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        for point in metric.data.data_points:
                            value = point.count if isinstance(point, HistogramDataPoint) else point.value
                            out[frozenset(point.attributes.items())] = value
        return out

    def total(self, name: str, **labels: str) -> float:
        return sum(v for k, v in self.points(name).items() if set(labels.items()) <= k)


@pytest.fixture
def traced() -> Iterator[Traced]:
    spans, metrics = InMemorySpanExporter(), InMemoryMetricReader()
    telemetry = Telemetry.create(Settings(), span_processors=[SimpleSpanProcessor(spans)], metric_readers=[metrics])
    yield Traced(telemetry, spans, metrics)
    telemetry.shutdown()


def chunk_summary(index: int, *, failover: bool) -> ChunkSummary:
    """What chunk ``index`` of the simulated file returns: 100 records, some duplicates, one bad."""
    platform = "kafka" if failover else "iggy"
    return ChunkSummary(
        records=100, alleles=110 + index, reference_blocks=3, new=100, duplicates=10 + index, quarantined=1,
        in_doubt=5 if failover else 0, failovers=1 if failover else 0,
        published=Counter({platform: 100}), stored=Counter(lancedb=100, kuzu=100, postgres=100),
        rules=Counter({"ref.mismatch": 1}),
    )


def ingest_chunk(telemetry: Telemetry, carrier: dict[str, str], index: int, *, failover: bool) -> ChunkSummary:
    """The chunk task, as the lead's thin task code will call the helpers: one line per stage."""
    summary = chunk_summary(index, failover=failover)
    with telemetry.chunk_span(carrier, dataset="demo", file="demo.vcf.gz", chunk=f"abc:{index}", index=index):
        with telemetry.stage("read") as span:
            telemetry.annotate(span, records=summary.records, alleles=summary.alleles)
        with telemetry.stage("validate", quarantined=summary.quarantined):
            pass
        with telemetry.stage("claim", new=summary.new, duplicates=summary.duplicates):
            pass
        with telemetry.stage("publish", batch=0, messages=summary.new) as span:
            if failover:
                telemetry.record_failover(span, "iggy", "kafka", "unavailable")
            telemetry.annotate(span, platform=next(iter(summary.published)))
        for store in ("lancedb", "kuzu", "postgres"):
            with telemetry.stage(f"store.{store}", rows=summary.stored[store]):
                pass
        telemetry.record_chunk(summary, {"dataset": "demo"})
    return summary


def simulate_ingestion(telemetry: Telemetry, n_chunks: int = 3, failover_chunk: int | None = 1) -> ChunkSummary:
    """A flow run: the flow span here, chunk tasks in worker threads; returns the run summary."""
    with telemetry.flow_span("ingest", flow_run_id="flow-run-42", scheduled=True, dataset="demo"):
        carrier = telemetry.inject()
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = [pool.submit(ingest_chunk, telemetry, carrier, i, failover=i == failover_chunk)
                       for i in range(n_chunks)]
            summaries = [future.result() for future in futures]
    return sum(summaries, ChunkSummary())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Spans -----------------------------------------------------------------------------------------


def test_a_simulated_ingestion_produces_a_flow_chunk_stage_tree(traced: Traced) -> None:
    simulate_ingestion(traced.telemetry, n_chunks=3)

    [flow] = traced.named("ingest")
    assert flow.parent is None
    chunks = traced.children(flow)
    assert [span.name for span in chunks] == ["chunk"] * 3
    for chunk in chunks:
        assert chunk.context.trace_id == flow.context.trace_id
        assert [span.name for span in traced.children(chunk)] == STAGES


def test_spans_carry_the_flow_run_id_dataset_file_chunk_and_counts(traced: Traced) -> None:
    simulate_ingestion(traced.telemetry, n_chunks=2)

    [flow] = traced.named("ingest")
    assert flow.attributes["prefect.flow_run.id"] == "flow-run-42"
    assert flow.attributes["vcfstream.scheduled"] is True
    chunk = next(s for s in traced.named("chunk") if s.attributes["vcfstream.chunk"] == "abc:0")
    assert chunk.attributes["prefect.flow_run.id"] == "flow-run-42"  # from the carrier's baggage
    assert chunk.attributes["vcfstream.dataset"] == "demo"
    assert chunk.attributes["vcfstream.file"] == "demo.vcf.gz"
    assert chunk.attributes["vcfstream.records"] == 100
    assert chunk.attributes["vcfstream.duplicates"] == 10
    assert chunk.attributes["vcfstream.published.iggy"] == 100
    stages = {span.name: span for span in traced.children(chunk)}
    assert stages["read"].attributes["vcfstream.records"] == 100
    assert stages["claim"].attributes["vcfstream.new"] == 100
    assert stages["publish"].attributes["vcfstream.platform"] == "iggy"
    assert stages["store.kuzu"].attributes["vcfstream.stage"] == "store.kuzu"


def test_a_failover_is_an_event_on_the_publish_span_with_the_breaker_states(traced: Traced) -> None:
    traced.telemetry.register_breaker_state_source(lambda: {"iggy": "open", "kafka": "closed"})
    simulate_ingestion(traced.telemetry, n_chunks=2, failover_chunk=1)

    publishes = {s.parent.span_id: s for s in traced.named("publish")}
    chunk = next(s for s in traced.named("chunk") if s.attributes["vcfstream.chunk"] == "abc:1")
    publish = publishes[chunk.context.span_id]
    [event] = publish.events
    assert event.name == "failover"
    assert dict(event.attributes) == {"vcfstream.from": "iggy", "vcfstream.to": "kafka",
                                      "vcfstream.reason": "unavailable", "vcfstream.breaker.iggy": "open",
                                      "vcfstream.breaker.kafka": "closed"}
    assert publish.attributes["vcfstream.platform"] == "kafka"
    assert publish.attributes["vcfstream.failover_reason"] == "unavailable"
    assert publish.attributes["vcfstream.breaker.iggy"] == "open"
    other = next(s for s in traced.named("publish") if s is not publish)
    assert not other.events


def test_a_store_stage_run_by_another_task_joins_the_chunk_through_a_carrier(traced: Traced) -> None:
    telemetry = traced.telemetry
    with telemetry.chunk_span(None, dataset="demo", file="demo.vcf.gz", chunk="abc:0"):
        chunk_carrier = telemetry.inject()

    def store_task(carrier: dict[str, str]) -> None:
        with telemetry.stage("store.lancedb", parent=carrier):
            pass

    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(store_task, chunk_carrier).result()

    [chunk] = traced.named("chunk")
    [store] = traced.named("store.lancedb")
    assert store.parent.span_id == chunk.context.span_id


def test_a_failing_stage_marks_its_span_and_the_chunk_as_errors_and_still_raises(traced: Traced) -> None:
    telemetry = traced.telemetry
    with pytest.raises(ConnectionError):
        with telemetry.chunk_span(None, dataset="demo", file="demo.vcf.gz", chunk="abc:0"):
            with telemetry.stage("publish", platform="iggy"):
                raise ConnectionError("iggy: connection refused")

    [publish], [chunk] = traced.named("publish"), traced.named("chunk")
    assert publish.status.status_code == StatusCode.ERROR
    assert chunk.status.status_code == StatusCode.ERROR
    assert [event.name for event in publish.events] == ["exception"]
    assert traced.total("vcfstream_publish_batch_duration_seconds", platform="iggy", outcome="error") == 1
    assert traced.total("vcfstream_chunk_duration_seconds", outcome="error") == 1


# Metrics ---------------------------------------------------------------------------------------


def test_counters_equal_the_counts_of_the_run_summary(traced: Traced) -> None:
    run = simulate_ingestion(traced.telemetry, n_chunks=4, failover_chunk=2)

    for field, (metric, _description) in SUMMARY_COUNTERS.items():
        assert traced.total(metric) == getattr(run, field), field
    assert traced.total("vcfstream_variants_quarantined") == run.quarantined
    assert traced.total("vcfstream_variants_quarantined", rule="ref.mismatch") == run.rules["ref.mismatch"]
    for platform, count in run.published.items():
        assert traced.total("vcfstream_variants_published", platform=platform) == count
    for store, count in run.stored.items():
        assert traced.total("vcfstream_variants_stored", store=store) == count
    assert traced.total("vcfstream_failovers") == run.failovers == 1
    assert traced.total("vcfstream_failovers", from_platform="iggy", to_platform="kafka", reason="unavailable") == 1
    assert traced.total("vcfstream_variants_read", dataset="demo") == run.records


def test_publish_store_and_chunk_durations_are_histograms_by_platform_store_and_dataset(traced: Traced) -> None:
    simulate_ingestion(traced.telemetry, n_chunks=3, failover_chunk=1)

    assert traced.total("vcfstream_publish_batch_duration_seconds", platform="iggy", outcome="ok") == 2
    assert traced.total("vcfstream_publish_batch_duration_seconds", platform="kafka", outcome="ok") == 1
    for store in ("lancedb", "kuzu", "postgres"):
        assert traced.total("vcfstream_store_write_duration_seconds", store=store) == 3
    assert traced.total("vcfstream_chunk_duration_seconds", dataset="demo", outcome="ok") == 3


def test_breaker_and_health_gauges_read_the_registered_sources(traced: Traced) -> None:
    telemetry = traced.telemetry
    telemetry.register_breaker_state_source(lambda: {"iggy": "half-open", "kafka": 0})
    telemetry.register_health_source(lambda: {"iggy": 0.25, "kafka": 1.0})

    def broken() -> dict[str, float]:
        raise RuntimeError("breaker storage unreachable")

    telemetry.register_breaker_state_source(broken)  # skipped, never raised into a scrape

    assert traced.points("vcfstream_breaker_state") == {
        frozenset({("platform", "iggy")}): 1.0, frozenset({("platform", "kafka")}): 0.0}
    assert traced.points("vcfstream_health_score") == {
        frozenset({("platform", "iggy")}): 0.25, frozenset({("platform", "kafka")}): 1.0}


def test_a_breaker_transition_updates_the_gauge_and_marks_the_current_span(traced: Traced) -> None:
    telemetry = traced.telemetry
    with telemetry.stage("publish", platform="iggy"):
        telemetry.record_breaker_transition("iggy", "closed", "open")

    assert traced.points("vcfstream_breaker_state") == {frozenset({("platform", "iggy")}): 2.0}
    [publish] = traced.named("publish")
    assert [event.name for event in publish.events] == ["breaker_transition"]
    assert publish.attributes["vcfstream.breaker.iggy"] == "open"


def test_run_active_is_one_during_a_flow_span_and_zero_after(traced: Traced) -> None:
    telemetry = traced.telemetry
    with telemetry.flow_span("ingest", flow_run_id="r1", scheduled=True):
        assert traced.total("vcfstream_run_active", scheduled="true") == 1
    assert traced.total("vcfstream_run_active", scheduled="true") == 0


# Exporters never fail an ingestion -------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_an_unreachable_otlp_collector_neither_raises_nor_blocks_the_ingestion(protocol: str) -> None:
    settings = Settings().with_groups(telemetry={"otlp_endpoint": f"http://127.0.0.1:{free_port()}", "otlp_protocol": protocol})
    telemetry = Telemetry.create(settings)

    started = time.monotonic()
    run = simulate_ingestion(telemetry, n_chunks=3)
    ingest_seconds = time.monotonic() - started
    started = time.monotonic()
    telemetry.shutdown()  # the final export fails against the closed port, within its timeout
    shutdown_seconds = time.monotonic() - started

    assert run.records == 300
    assert ingest_seconds < EXPORT_TIMEOUT_S  # no span or metric export waited on the dead collector
    assert shutdown_seconds < 10.0


def test_a_busy_metrics_port_leaves_the_ingestion_running_without_the_endpoint() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        telemetry = Telemetry.create(Settings().with_groups(telemetry={"metrics_port": busy.getsockname()[1]}))
        run = simulate_ingestion(telemetry, n_chunks=1)
        telemetry.shutdown()
    assert run.records == 100
    assert telemetry.exporters == []


def test_setup_telemetry_builds_one_telemetry_per_process() -> None:
    first = setup_telemetry(Settings())
    assert setup_telemetry(Settings().with_groups(telemetry={"trace_console": True})) is first


def test_by_default_there_is_no_exporter_and_no_endpoint() -> None:
    telemetry = Telemetry.create(Settings())
    assert telemetry.exporters == []
    telemetry.shutdown()


def test_the_settings_choose_the_exporters() -> None:
    port = free_port()
    settings = Settings().with_groups(telemetry={"otlp_endpoint": "http://127.0.0.1:4317", "trace_console": True, "metrics_port": port})
    telemetry = Telemetry.create(settings)
    assert telemetry.exporters == ["otlp grpc http://127.0.0.1:4317", "console spans",
                                   f"prometheus http://127.0.0.1:{port}/metrics"]
    telemetry.shutdown()


# Prometheus ------------------------------------------------------------------------------------


def scrape(port: int) -> dict[str, set[str]]:
    """{family name: sample names} served by the metrics endpoint."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {family.name: {sample.name for sample in family.samples} for family in text_string_to_metric_families(text)}


@pytest.fixture
def endpoint() -> Iterator[tuple[Telemetry, int]]:
    """A Telemetry serving /metrics on a free port, after a simulated ingestion and live sources."""
    port = free_port()
    telemetry = Telemetry.create(Settings().with_groups(telemetry={"metrics_port": port}))
    telemetry.register_breaker_state_source(lambda: {"iggy": "open", "kafka": "closed"})
    telemetry.register_health_source(lambda: {"iggy": 0.1, "kafka": 0.9})
    with telemetry.flow_span("ingest", flow_run_id="r1", scheduled=True):  # open: run_active is 1
        yield telemetry, port
    telemetry.shutdown()


def query(prometheus: str, promql: str) -> list[dict]:
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    body = json.loads(urllib.request.urlopen(url, timeout=5).read())
    assert body["status"] == "success", body
    return body["data"]["result"]


@needs_prometheus
@pytest.mark.parametrize("command", [
    ["promtool", "check", "config", "prometheus.yml"],
    ["promtool", "check", "rules", "alerts.yml"],
    ["promtool", "test", "rules", "alerts_test.yml"],
])
def test_the_shipped_prometheus_files_pass_promtool(command: list[str]) -> None:
    done = subprocess.run(command, cwd=PROMETHEUS_DIR, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_alert_rules_cover_breakers_failovers_quarantine_and_silent_scheduled_runs() -> None:
    text = (PROMETHEUS_DIR / "alerts.yml").read_text()
    for alert in ("VcfstreamBreakerOpen", "VcfstreamFailoverRateHigh", "VcfstreamQuarantineRateHigh",
                  "VcfstreamNothingPublished"):
        assert f"alert: {alert}" in text


# Grafana ---------------------------------------------------------------------------------------


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_every_dashboard_query_names_a_metric_the_code_exports(endpoint: tuple[Telemetry, int]) -> None:
    telemetry, port = endpoint
    simulate_ingestion(telemetry)
    exported = set().union(*scrape(port).values())

    queries = dashboard_queries()
    assert queries
    for expr in queries:
        names = re.findall(r"\bvcfstream_\w+", expr)
        assert names, expr
        assert set(names) <= exported, (expr, set(names) - exported)


def test_every_exported_metric_has_a_dashboard_panel(endpoint: tuple[Telemetry, int]) -> None:
    telemetry, port = endpoint
    simulate_ingestion(telemetry)
    families = {name for name in scrape(port) if name.startswith("vcfstream_")}
    shown = "\n".join(dashboard_queries())

    assert len(families) >= 20
    assert {family for family in families if family not in shown} == set()


# Resource guard --------------------------------------------------------------------------------


def test_within_the_rss_limit_the_concurrency_stays() -> None:
    guard = ResourceGuard(limit_bytes=2_000_000_000, rss=lambda: 1_000_000_000)
    assert guard.recommended_concurrency(4) == 4
    assert not guard.lowered and guard.notes == []


def test_above_the_rss_limit_the_concurrency_halves_and_the_summary_gets_a_note() -> None:
    guard = ResourceGuard(limit_bytes=1_000_000_000, rss=lambda: 1_200_000_000)
    assert guard.recommended_concurrency(4) == 2
    assert guard.recommended_concurrency(2) == 1
    assert guard.lowered
    assert guard.notes == ["lowered chunk concurrency from 4 to 2 at RSS 1.2 GB (limit 1.0 GB)",
                           "lowered chunk concurrency from 2 to 1 at RSS 1.2 GB (limit 1.0 GB)"]


def test_the_concurrency_never_drops_below_one_and_that_is_noted_once() -> None:
    guard = ResourceGuard(limit_bytes=1_000_000_000, rss=lambda: 3_000_000_000)
    assert [guard.recommended_concurrency(1) for _ in range(3)] == [1, 1, 1]
    assert guard.notes == ["chunk concurrency already 1 at RSS 3.0 GB (limit 1.0 GB): cannot lower it further"]
    assert not guard.lowered


def test_without_a_limit_the_guard_never_reads_the_rss() -> None:
    def unreadable() -> int:
        raise AssertionError("RSS read without a limit")

    assert ResourceGuard(limit_bytes=None, rss=unreadable).recommended_concurrency(3) == 3


def test_the_guard_reads_this_process_rss_by_default() -> None:
    assert ResourceGuard(limit_bytes=1).recommended_concurrency(2) == 1
