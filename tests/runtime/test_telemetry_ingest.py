"""Telemetry of real ingestions: the ``ingest_vcf`` flow on the real services, traced into an
in-memory exporter and metered by an in-memory reader, compared with the run's own summary.

Iggy is configured at a port with nothing listening and the ``health`` strategy, so every publish
batch fails over to Kafka for real and the failover must show on the publish spans.
"""

from __future__ import annotations

import gzip
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from paths import REAL
from test_telemetry import Traced, dashboard_queries, free_port, needs_prometheus, query

from vcfstream.runtime.telemetry import SUMMARY_COUNTERS, Telemetry, install_telemetry
from vcfstream.settings import Settings

CHUNK_STAGES = ["read", "validate", "claim", "publish"]


@dataclass
class Recorded(Traced):
    """The in-memory spans and metrics of ``test_telemetry``, plus this process's metrics port."""

    metrics_port: int | None = None

    @classmethod
    def create(cls, metrics_port: int | None) -> Recorded:
        spans, metrics = InMemorySpanExporter(), InMemoryMetricReader()
        telemetry = Telemetry.create(Settings().with_groups(telemetry={"metrics_port": metrics_port}),
                                     span_processors=[SimpleSpanProcessor(spans)], metric_readers=[metrics])
        return cls(telemetry, spans, metrics, metrics_port)

    def totals(self, name: str, by: str | None = None) -> dict[str | None, float]:
        """{label value: sum} of a metric over all points (one key None without ``by``)."""
        out: dict[str | None, float] = {}
        for labels, value in self.points(name).items():
            key = dict(labels).get(by) if by else None
            out[key] = out.get(key, 0) + value
        return out


@pytest.fixture
def recorded(services: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorded]:
    """This process's telemetry is in memory; Iggy is dead, so batches fail over to Kafka."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from vcfstream.runtime.process import process_runtime

    monkeypatch.setenv("VCFSTREAM_IGGY_URL", f"iggy://iggy:iggy@127.0.0.1:{free_port()}")
    monkeypatch.setenv("VCFSTREAM_ROUTING_STRATEGY", "health")
    monkeypatch.setenv("VCFSTREAM_BREAKER_STORAGE", "memory")
    recorded = Recorded.create(metrics_port=free_port())  # the Prometheus endpoint is on, as in production
    previous = install_telemetry(recorded.telemetry)
    try:
        with temporary_settings(updates={PREFECT_API_URL: services.services.prefect_api_url}):
            yield recorded
    finally:
        process_runtime().close()
        install_telemetry(previous)
        recorded.telemetry.shutdown()


def with_a_bad_record(tmp_path: Path) -> Path:
    """sample.vcf.gz with one QUAL that is not a number: one dead letter, the rest valid."""
    with gzip.open(REAL / "sample.vcf.gz", "rt") as plain:
        lines = plain.read().splitlines(keepends=True)
    first_data = next(i for i, line in enumerate(lines) if not line.startswith("#"))
    fields = lines[first_data + 2].split("\t")
    fields[5] = "high"
    lines[first_data + 2] = "\t".join(fields)
    path = tmp_path / "one-bad-qual.vcf"
    path.write_text("".join(lines))
    return path


def ingest(services: Settings, paths: list[Path], dataset: str, **kwargs: Any) -> dict[str, Any]:
    from vcfstream.cli.run import run_ingest

    settings = services.with_groups(ingest={"chunk_size": kwargs.pop("chunk_size", 4)})
    return run_ingest([str(p) for p in paths], settings=settings, dataset=dataset, **kwargs).to_json()


def test_an_ingestion_traces_flow_chunks_and_stages_in_order_with_the_failover_on_publish(
        recorded: Recorded, services: Settings, dataset: str, tmp_path: Path) -> None:
    summary = ingest(services, [with_a_bad_record(tmp_path)], dataset, stores=["catalog"])
    assert summary["state"] == "Completed", summary
    assert summary["failovers"] > 0 and summary["published"] == {"kafka": summary["new"]}

    (flow,) = recorded.named("ingest_vcf")
    assert flow.parent is None
    assert flow.attributes["prefect.flow_run.id"] == summary["flow_run_id"]
    assert flow.attributes["vcfstream.dataset"] == dataset
    assert flow.attributes["vcfstream.records"] == summary["records"]

    chunks = recorded.named("chunk")
    assert len(chunks) >= 3  # 9 records, 4 per chunk
    assert all(c.parent is not None and c.parent.span_id == flow.context.span_id for c in chunks)
    assert all(c.context.trace_id == flow.context.trace_id for c in chunks)
    assert sum(c.attributes["vcfstream.records"] for c in chunks) == summary["records"]
    assert sum(c.attributes["vcfstream.quarantined"] for c in chunks) == summary["quarantined"] == 1
    for chunk in chunks:
        assert chunk.attributes["vcfstream.dataset"] == dataset
        assert chunk.attributes["vcfstream.file"].endswith("one-bad-qual.vcf")
        assert chunk.attributes["prefect.flow_run.id"] == summary["flow_run_id"]  # from the baggage
        names = [s.name for s in recorded.children(chunk)]
        assert names[:4] == CHUNK_STAGES, names
        assert set(names[4:]) <= {"publish", "stage", "store.catalog"}, names

        publish = next(s for s in recorded.children(chunk) if s.name == "publish")
        assert publish.attributes["vcfstream.platform"] == "kafka"
        assert publish.attributes["vcfstream.failover_from"] == "iggy"
        assert publish.attributes["vcfstream.failover_reason"] in {"unavailable", "breaker_open"}
        assert "vcfstream.breaker.iggy" in publish.attributes
        (event,) = [e for e in publish.events if e.name == "failover"]
        assert (event.attributes["vcfstream.from"], event.attributes["vcfstream.to"]) == ("iggy", "kafka")


    # A store write takes the chunks queued for it at once: its span is a child of the first
    # chunk's span and links the others, so every chunk is covered exactly once.
    stores = recorded.named("store.catalog")
    covered = [store.parent.span_id for store in stores] + [
        link.context.span_id for store in stores for link in store.links]
    assert sorted(covered) == sorted(chunk.context.span_id for chunk in chunks)
    assert sum(store.attributes["vcfstream.chunks"] for store in stores) == len(chunks)
    assert sum(store.attributes["vcfstream.alleles"] for store in stores) == sum(
        chunk.attributes["vcfstream.alleles"] for chunk in chunks) > 0
    for store in stores:
        assert 0 <= store.attributes["vcfstream.written"] <= store.attributes["vcfstream.alleles"]


def test_the_counters_equal_the_run_summary(recorded: Recorded, services: Settings, dataset: str,
                                            tmp_path: Path) -> None:
    paths = [with_a_bad_record(tmp_path), REAL / "mixed_ploidy.vcf.gz"]
    first = ingest(services, paths, dataset, stores=["catalog"])
    again = ingest(services, paths, dataset, stores=["catalog"])  # all duplicates now
    assert first["state"] == again["state"] == "Completed"
    assert again["duplicates"] == first["new"] > 0

    for field, (name, _) in SUMMARY_COUNTERS.items():
        assert recorded.totals(name) == {None: first[field] + again[field]}, name
    assert first["quarantined"] == again["quarantined"] == 1
    assert recorded.totals("vcfstream_variants_quarantined", by="rule") == {"qual.syntax": 2.0}
    assert recorded.totals("vcfstream_variants_published", by="platform") == {
        p: float(n) for p, n in first["published"].items()}
    assert sum(recorded.totals("vcfstream_failovers").values()) == first["failovers"] + again["failovers"]
    assert recorded.totals("vcfstream_failovers", by="to_platform") == {"kafka": float(first["failovers"])}
    assert recorded.totals("vcfstream_variants_stored", by="store") == {
        "catalog": float(first["stored"]["catalog"] + again["stored"].get("catalog", 0))}
    # One publish histogram point per batch, one chunk duration per chunk.
    assert sum(recorded.totals("vcfstream_publish_batch_duration_seconds").values()) == len(recorded.named("publish"))
    assert sum(recorded.totals("vcfstream_chunk_duration_seconds").values()) == len(recorded.named("chunk"))


@pytest.fixture
def prometheus(recorded: Recorded, tmp_path: Path) -> Iterator[str]:
    """A real Prometheus scraping this process's endpoint every second; its URL, once it scraped."""
    web_port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: vcfstream\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{recorded.metrics_port}']}}]\n"
    )
    log_path = tmp_path / "prometheus.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{web_port}"], stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{web_port}"
        try:
            wait_for(url, 'up{job="vcfstream"} == 1', log_path)
            yield url
        finally:
            server.terminate()
            server.wait(timeout=30)


def wait_for(prometheus: str, promql: str, log_path: Path, timeout_s: float = 60) -> list[dict]:
    """The first non-empty result of ``promql`` (Prometheus scrapes every second)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = query(prometheus, promql)
        except OSError:  # not listening yet
            result = []
        if result:
            return result
        assert time.monotonic() < deadline, f"no result for {promql}: " + log_path.read_text()[-2000:]
        time.sleep(0.5)


@needs_prometheus
def test_a_real_prometheus_scrapes_an_ingestion_and_promql_returns_the_published_count(
        recorded: Recorded, prometheus: str, services: Settings, dataset: str, tmp_path: Path) -> None:
    # Chunks of 5 records: dozens of chunks, so the run lasts several scrapes.
    summary = ingest(services, [REAL / "chr22.vcf.gz", REAL / "chr_m_indels.vcf.gz"], dataset,
                     chunk_size=5, stores=[])
    assert summary["state"] == "Completed" and summary["new"] > 0, summary
    log_path = tmp_path / "prometheus.log"

    published = f'sum(vcfstream_variants_published_total{{dataset="{dataset}"}})'
    wait_for(prometheus, f"{published} == {summary['new']}", log_path)
    by_platform = {r["metric"]["platform"]: float(r["value"][1]) for r in query(
        prometheus, f'sum by (platform) (vcfstream_variants_published_total{{dataset="{dataset}"}})')}
    assert by_platform == {p: float(n) for p, n in summary["published"].items()}
    # Scraped while the run was going: the run-active gauge was seen at 1.
    (active,) = query(prometheus, 'max_over_time(vcfstream_run_active{scheduled="false"}[10m])')
    assert float(active["value"][1]) == 1.0
    # Every dashboard query is valid PromQL for this Prometheus.
    for expr in dashboard_queries():
        query(prometheus, expr.replace("$__rate_interval", "1m").replace("$__range", "1h").replace("$dataset", ".*"))


def test_over_the_rss_limit_a_run_lowers_its_chunk_concurrency_and_says_so(
        recorded: Recorded, services: Settings, dataset: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VCFSTREAM_RSS_LIMIT", "1")  # one byte: every check is over it
    monkeypatch.setenv("VCFSTREAM_CHUNK_WORKERS", "2")
    # No index: sequential chunks of exactly 50 records, 5 of them.
    summary = ingest(services, [REAL / "chr_m_indels.vcf.gz"], dataset, chunk_size=50, stores=[])
    assert summary["state"] == "Completed" and summary["new"] == 230, summary
    assert summary["notes"][0].startswith("lowered chunk concurrency from 2 to 1 at RSS "), summary["notes"]
    assert summary["notes"][1].startswith("chunk concurrency already 1 at RSS "), summary["notes"]
