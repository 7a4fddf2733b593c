"""Traces and metrics of an ingestion: a span per flow run, chunk and stage; ``vcfstream_*`` metrics.

Plain Python (no Prefect import). ``setup_telemetry(settings)`` builds the process's one
``Telemetry``. Exporters follow the settings: OTLP (gRPC or HTTP) for traces and metrics when
``settings.telemetry.otlp_endpoint`` is set, console spans with ``settings.telemetry.trace_console``, and a
Prometheus endpoint on ``settings.telemetry.metrics_port``. Exporters run in background threads with short
timeouts and the SDK logs their failures, so an unreachable collector never fails an ingestion.

Calls are per run, chunk, stage or publish batch; never per variant.

Example:
    >>> from vcfstream.model import ChunkSummary
    >>> from vcfstream.settings import Settings
    >>> telemetry = Telemetry.create(Settings())
    >>> with telemetry.flow_span("ingest", flow_run_id="run-1", dataset="demo"):
    ...     carrier = telemetry.inject()  # passed to each chunk task
    >>> with telemetry.chunk_span(carrier, dataset="demo", file="a.vcf.gz", chunk="c0"):
    ...     with telemetry.stage("publish", batch=0) as span:
    ...         telemetry.annotate(span, platform="kafka", messages=10)
    ...     telemetry.record_chunk(ChunkSummary(records=10), {"dataset": "demo"})
    >>> telemetry.shutdown()
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import baggage, context, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Link, Span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server

from vcfstream.model import ChunkSummary
from vcfstream.settings import Settings

log = logging.getLogger(__name__)

SCOPE = "vcfstream"
FLOW_RUN_ID = "prefect.flow_run.id"  # span attribute and baggage key

# Each exporter call gives up after this long; exports run off the ingestion threads anyway.
EXPORT_TIMEOUT_S = 3.0
METRIC_EXPORT_INTERVAL_S = 15.0

# Seconds; publish batches and store writes take milliseconds to minutes, chunks up to an hour.
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)

# Breaker states (pybreaker's names); the gauge reports the index: 0 closed, 1 half-open, 2 open.
BREAKER_STATES = ("closed", "half-open", "open")

# ChunkSummary field -> the counter its count adds to. ``published`` (by platform), ``stored``
# (by store) and ``quarantined`` (by rule) go to labelled counters; failovers are counted by
# ``record_failover``, which knows from, to and reason.
SUMMARY_COUNTERS: dict[str, tuple[str, str]] = {
    "records": ("vcfstream_variants_read", "VCF data records read"),
    "alleles": ("vcfstream_alleles_read", "ALT alleles read: one message each when new"),
    "reference_blocks": ("vcfstream_reference_blocks_read", "gVCF reference blocks read (never published)"),
    "new": ("vcfstream_variants_claimed", "Alleles the ledger claimed as new, to publish"),
    "duplicates": ("vcfstream_duplicates_skipped", "Alleles the ledger already held: not published again"),
    "in_doubt": ("vcfstream_publish_in_doubt", "Messages whose delivery is in doubt (ledger state in_doubt)"),
}

AttrValue = str | bool | int | float
StateSource = Callable[[], Mapping[str, float | str]]

_PROPAGATOR = CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])


class Telemetry:
    """The tracer and meter of one process, with one-line helpers for the flow and chunk tasks."""

    def __init__(self, tracer_provider: TracerProvider, meter_provider: MeterProvider, *,
                 exporters: Sequence[str] = (), metrics_server: Any = None) -> None:
        self.tracer_provider, self.meter_provider = tracer_provider, meter_provider
        self.exporters = list(exporters)  # what is exported where, for logs and tests
        self.tracer = tracer_provider.get_tracer(SCOPE)
        self.meter = meter_provider.get_meter(SCOPE)
        self._metrics_server = metrics_server
        self._breaker_sources: list[StateSource] = []
        self._health_sources: list[StateSource] = []
        self._breaker_transitions: dict[str, str] = {}  # last state seen by record_breaker_transition

        meter = self.meter
        self._summary_counters = {
            field: meter.create_counter(name, description=text) for field, (name, text) in SUMMARY_COUNTERS.items()
        }
        self._quarantined = meter.create_counter(
            "vcfstream_variants_quarantined", description="Records quarantined (dead letters), by rule")
        self._published = meter.create_counter(
            "vcfstream_variants_published", description="Messages acknowledged by a platform, by platform")
        self._stored = meter.create_counter(
            "vcfstream_variants_stored", description="Alleles written to a store, by store")
        self._failovers = meter.create_counter(
            "vcfstream_failovers",
            description="Publish batches that failed over, by from_platform, to_platform and reason")
        self._publish_latency = meter.create_histogram(
            "vcfstream_publish_batch_duration_seconds", unit="s",
            description="Time to publish one batch, by platform and outcome",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_S)
        self._store_latency = meter.create_histogram(
            "vcfstream_store_write_duration_seconds", unit="s",
            description="Time of one store write, by store and outcome",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_S)
        self._chunk_duration = meter.create_histogram(
            "vcfstream_chunk_duration_seconds", unit="s",
            description="Time to ingest one chunk, by dataset and outcome",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_S)
        self._run_active = meter.create_up_down_counter(
            "vcfstream_run_active", description="Flow runs in progress in this process, by scheduled")
        self._last_publish = meter.create_gauge(
            "vcfstream_last_publish_timestamp_seconds", unit="s",
            description="Unix time a chunk last published at least one message")
        meter.create_observable_gauge(
            "vcfstream_breaker_state", callbacks=[self._observe_breakers],
            description="Circuit breaker state by platform: 0 closed, 1 half-open, 2 open")
        meter.create_observable_gauge(
            "vcfstream_health_score", callbacks=[self._observe_health],
            description="Routing health score by platform")

    @classmethod
    def create(cls, settings: Settings, *, span_processors: Sequence[SpanProcessor] = (),
               metric_readers: Sequence[MetricReader] = ()) -> Telemetry:
        """A Telemetry with the exporters the settings ask for, plus any given (tests, benchmarks).

        Args:
            settings: ``otlp_endpoint``/``otlp_protocol``, ``trace_console``, ``metrics_port``/``metrics_host``.
            span_processors: extra span processors, e.g. a ``SimpleSpanProcessor(InMemorySpanExporter())``.
            metric_readers: extra metric readers, e.g. an ``InMemoryMetricReader()``.
        """
        resource = Resource.create({"service.name": "vcfstream"})
        tracer_provider = TracerProvider(resource=resource)
        readers, exporters = list(metric_readers), []
        if settings.telemetry.otlp_endpoint:
            span_exporter, metric_reader = _otlp_exporters(settings.telemetry.otlp_endpoint, settings.telemetry.otlp_protocol)
            tracer_provider.add_span_processor(_background(span_exporter))
            readers.append(metric_reader)
            exporters.append(f"otlp {settings.telemetry.otlp_protocol} {settings.telemetry.otlp_endpoint}")
        if settings.telemetry.trace_console:
            tracer_provider.add_span_processor(_background(ConsoleSpanExporter(out=sys.stderr)))  # stdout is --json's
            exporters.append("console spans")
        for processor in span_processors:
            tracer_provider.add_span_processor(processor)
        server = None
        if settings.telemetry.metrics_port is not None:
            reader, server = _prometheus_endpoint(settings.telemetry.metrics_host, settings.telemetry.metrics_port)
            if reader is not None:
                readers.append(reader)
                exporters.append(f"prometheus http://{settings.telemetry.metrics_host}:{settings.telemetry.metrics_port}/metrics")
        if exporters:
            log.info("telemetry: exporting to %s", ", ".join(exporters))
        meter_provider = MeterProvider(metric_readers=readers, resource=resource)
        return cls(tracer_provider, meter_provider, exporters=exporters, metrics_server=server)

    # Spans -------------------------------------------------------------------------------------

    @contextmanager
    def flow_span(self, name: str = "ingest", *, flow_run_id: str | None = None, scheduled: bool = False,
                  **attrs: Any) -> Iterator[Span]:
        """The root span of a flow run; ``vcfstream_run_active{scheduled}`` is 1 while it is open.

        The flow run id rides along in W3C baggage, so chunk spans opened from ``inject()``'s
        carrier carry it too.
        """
        ctx = baggage.set_baggage(FLOW_RUN_ID, flow_run_id) if flow_run_id else context.get_current()
        token = context.attach(ctx)
        labels = {"scheduled": str(scheduled).lower()}
        self._run_active.add(1, labels)
        try:
            with self.tracer.start_as_current_span(
                    name, attributes=span_attributes(attrs, {FLOW_RUN_ID: flow_run_id, "scheduled": scheduled})
            ) as span:
                yield span
        finally:
            self._run_active.add(-1, labels)
            context.detach(token)

    def inject(self) -> dict[str, str]:
        """The current span as a W3C carrier (``traceparent``, ``baggage``) to pass to another thread."""
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier)
        return carrier

    @contextmanager
    def chunk_span(self, carrier: Mapping[str, str] | None, *, dataset: str, file: str, chunk: str,
                   **attrs: Any) -> Iterator[Span]:
        """A chunk's span, child of the span ``carrier`` came from; records the chunk duration.

        Without a carrier the chunk span is a child of the current span, or a root.
        """
        parent = _PROPAGATOR.extract(carrier) if carrier else None
        inherited = dict(baggage.get_all(parent)) if parent is not None else {}
        outcome = "error"
        started = time.perf_counter()
        try:
            with self.tracer.start_as_current_span(
                    "chunk", context=parent,
                    attributes=span_attributes(attrs, inherited, {"dataset": dataset, "file": file, "chunk": chunk}),
            ) as span:
                yield span
                outcome = "ok"
        finally:
            self._chunk_duration.record(time.perf_counter() - started, {"dataset": dataset, "outcome": outcome})

    @contextmanager
    def stage(self, name: str, *, parent: Mapping[str, str] | None = None,
              links: Sequence[Mapping[str, str] | None] = (), **attrs: Any) -> Iterator[Span]:
        """A stage of a chunk: ``read``, ``validate``, ``claim``, ``publish`` (one per batch), ``store.<name>``.

        A ``publish`` stage's duration goes to the publish latency histogram under the platform
        set on the span (``platform=`` here or ``annotate``), and the span gets the breaker
        states and health scores as it ends. A ``store.<name>`` stage's duration goes to the
        store write histogram. ``parent`` is a carrier, for a stage run in another task; ``links``
        are carriers of other spans the stage also works for (a store write of several chunks).
        """
        parent_ctx = _PROPAGATOR.extract(parent) if parent else None
        span_links = [Link(trace.get_current_span(_PROPAGATOR.extract(carrier)).get_span_context())
                      for carrier in links if carrier]
        outcome = "error"
        started = time.perf_counter()
        with self.tracer.start_as_current_span(
                name, context=parent_ctx, links=span_links, attributes=span_attributes(attrs, {"stage": name})) as span:
            try:
                yield span
                outcome = "ok"
            finally:
                self._end_stage(name, span, time.perf_counter() - started, outcome)

    def _end_stage(self, name: str, span: Span, seconds: float, outcome: str) -> None:
        if name == "publish":
            self.annotate(span, breaker=self._breaker_states(), health=self._health_scores())
            platform = str(getattr(span, "attributes", {}).get("vcfstream.platform", "none"))
            self._publish_latency.record(seconds, {"platform": platform, "outcome": outcome})
        elif name.startswith("store."):
            self._store_latency.record(seconds, {"store": name.removeprefix("store."), "outcome": outcome})

    @staticmethod
    def annotate(span: Span, **attrs: Any) -> None:
        """Set attributes on a span, named ``vcfstream.<key>`` (mappings flatten to ``<key>.<sub>``)."""
        span.set_attributes(span_attributes(attrs))

    def record_failover(self, span: Span, from_: str, to: str, reason: str) -> None:
        """A ``failover`` event on the publish span; ``vcfstream_failovers_total`` + 1, labelled
        ``from_platform``, ``to_platform`` and ``reason``.

        Call once per failed-over batch (as ``ChunkSummary.failovers`` counts them); keep
        ``reason`` a short fixed word (``breaker_open``, ``unavailable``, ``in_doubt``): it is a label.
        """
        span.add_event("failover", span_attributes(
            {"from": from_, "to": to, "reason": reason, "breaker": self._breaker_states()}))
        self.annotate(span, failover_from=from_, failover_to=to, failover_reason=reason)
        self._failovers.add(1, {"from_platform": from_, "to_platform": to, "reason": reason})

    def record_breaker_transition(self, platform: str, old: str, new: str) -> None:
        """A ``breaker_transition`` event on the current span; the state gauge reports ``new``.

        Fits a breaker's on-transition hook, as an alternative or complement to a state source.
        """
        self._breaker_transitions[platform] = new
        trace.get_current_span().add_event(
            "breaker_transition", span_attributes({"platform": platform, "from": old, "to": new}))

    # Metrics -----------------------------------------------------------------------------------

    def record_chunk(self, summary: ChunkSummary, attrs: Mapping[str, str] | None = None) -> None:
        """Add a chunk's counts to the counters and, inside ``chunk_span``, to the chunk span.

        ``attrs`` are metric labels: keep them few and bounded, e.g. ``{"dataset": "1kg"}``. Over a
        run the counters then equal the run's ``--json`` summary (failovers: see ``record_failover``).
        """
        labels = dict(attrs or {})
        for field, counter in self._summary_counters.items():
            counter.add(getattr(summary, field), labels)
        by_rule = dict(summary.rules)
        unattributed = summary.quarantined - sum(by_rule.values())
        if unattributed > 0:
            by_rule["unspecified"] = unattributed
        for rule, count in by_rule.items():
            self._quarantined.add(count, {**labels, "rule": rule})
        for platform, count in summary.published.items():
            self._published.add(count, {**labels, "platform": platform})
        for store, count in summary.stored.items():
            self._stored.add(count, {**labels, "store": store})
        if sum(summary.published.values()) > 0:
            self._last_publish.set(time.time())
        span = trace.get_current_span()
        if getattr(span, "name", None) == "chunk":  # called elsewhere (the flow), counts stay off spans
            self.annotate(span, **{
                field: getattr(summary, field) for field in (*SUMMARY_COUNTERS, "quarantined", "failovers")
            }, published=summary.published, stored=summary.stored)

    def register_breaker_state_source(self, source: StateSource) -> None:
        """``source()`` returns {platform: state}, state 0/1/2 or "closed"/"half-open"/"open"."""
        self._breaker_sources.append(source)

    def register_health_source(self, source: StateSource) -> None:
        """``source()`` returns {platform: health score}."""
        self._health_sources.append(source)

    def _breaker_states(self) -> dict[str, str]:
        return {platform: BREAKER_STATES[int(value)] if 0 <= value < len(BREAKER_STATES) else str(value)
                for platform, value in self._read_sources(self._breaker_sources, self._breaker_transitions).items()}

    def _health_scores(self) -> dict[str, float]:
        return self._read_sources(self._health_sources, {})

    def _observe_breakers(self, options: CallbackOptions) -> Iterable[Observation]:
        states = self._read_sources(self._breaker_sources, self._breaker_transitions)
        return [Observation(value, {"platform": platform}) for platform, value in states.items()]

    def _observe_health(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(value, {"platform": platform}) for platform, value in self._health_scores().items()]

    @staticmethod
    def _read_sources(sources: Sequence[StateSource], known: Mapping[str, str]) -> dict[str, float]:
        """Merge {platform: value} from every source (later wins); a failing source is skipped."""
        merged: dict[str, float | str] = dict(known)
        for source in sources:
            try:
                merged.update(source())
            except Exception:  # a broken source must not break a publish or a scrape
                log.warning("telemetry: state source %r failed", source, exc_info=True)
        values = {}
        for platform, value in merged.items():
            if isinstance(value, str):
                name = value.lower().replace("_", "-")
                if name in BREAKER_STATES:
                    values[platform] = float(BREAKER_STATES.index(name))
            else:
                values[platform] = float(value)
        return values

    # Lifecycle ---------------------------------------------------------------------------------

    def force_flush(self) -> None:
        self.tracer_provider.force_flush(int(EXPORT_TIMEOUT_S * 1000))
        self.meter_provider.force_flush(int(EXPORT_TIMEOUT_S * 1000))

    def shutdown(self) -> None:
        """Flush and stop exporters (bounded by their timeouts) and the Prometheus endpoint."""
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown(int(EXPORT_TIMEOUT_S * 1000))
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()


def span_attributes(*groups: Mapping[str, Any]) -> dict[str, AttrValue | list[AttrValue]]:
    """Span attributes from keyword-style groups (later groups win).

    ``records`` becomes ``vcfstream.records``; dotted keys stay as they are; a trailing ``_``
    is dropped (``from_``); ``None`` is left out; a mapping flattens to ``<key>.<sub>``.
    """
    out: dict[str, AttrValue | list[AttrValue]] = {}
    for group in groups:
        for key, value in group.items():
            if value is None:
                continue
            key = key.rstrip("_")
            name = key if "." in key else f"vcfstream.{key}"
            if isinstance(value, Mapping):
                out.update(span_attributes({f"{name}.{sub}": v for sub, v in value.items()}))
            elif isinstance(value, (str, bool, int, float)):
                out[name] = value
            elif isinstance(value, (list, tuple)):
                out[name] = [v if isinstance(v, (str, bool, int, float)) else str(v) for v in value]
            else:
                out[name] = str(value)
    return out


def _background(exporter: SpanExporter) -> BatchSpanProcessor:
    return BatchSpanProcessor(exporter, export_timeout_millis=EXPORT_TIMEOUT_S * 1000)


def _otlp_exporters(endpoint: str, protocol: str) -> tuple[SpanExporter, MetricReader]:
    """OTLP span exporter and periodic metric reader; the endpoint is given, never read from env here."""
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter

        span_exporter: SpanExporter = GrpcSpanExporter(endpoint=endpoint, timeout=EXPORT_TIMEOUT_S)
        metric_exporter: MetricExporter = GrpcMetricExporter(endpoint=endpoint, timeout=EXPORT_TIMEOUT_S)
    else:  # http/protobuf: a base endpoint gets the per-signal paths, as the SDK does for the env var
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter

        base = endpoint.rstrip("/")
        span_exporter = HttpSpanExporter(endpoint=f"{base}/v1/traces", timeout=EXPORT_TIMEOUT_S)
        metric_exporter = HttpMetricExporter(endpoint=f"{base}/v1/metrics", timeout=EXPORT_TIMEOUT_S)
    reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=METRIC_EXPORT_INTERVAL_S * 1000,
                                           export_timeout_millis=EXPORT_TIMEOUT_S * 1000)
    return span_exporter, reader


def _prometheus_endpoint(host: str, port: int) -> tuple[MetricReader | None, Any]:
    """A Prometheus reader served on host:port, with the process's RSS and CPU beside it.

    A port that cannot be bound is logged and the run goes on without the endpoint.
    """
    from opentelemetry.exporter.prometheus import PrometheusMetricReader

    registry = CollectorRegistry()  # our own, not prometheus_client's global one
    ProcessCollector(namespace="vcfstream", registry=registry)
    reader = PrometheusMetricReader(scope_info_enabled=False, registry=registry)
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        log.warning("telemetry: no Prometheus endpoint, %s:%s cannot be bound (%s)", host, port, exc)
        reader.shutdown()
        return None, None
    return reader, server


_process_telemetry: tuple[int, Telemetry] | None = None
_setup_lock = threading.Lock()


def setup_telemetry(settings: Settings) -> Telemetry:
    """The process's Telemetry, built on the first call; later calls return it (settings ignored).

    A forked child builds its own (the parent's exporter threads and port are not its own).
    """
    global _process_telemetry
    with _setup_lock:
        if _process_telemetry is None or _process_telemetry[0] != os.getpid():
            _process_telemetry = (os.getpid(), Telemetry.create(settings))
        return _process_telemetry[1]


def install_telemetry(telemetry: Telemetry | None) -> Telemetry | None:
    """Make ``telemetry`` this process's own (tests and benchmarks bring in-memory readers), or
    forget it with None; returns the one it replaces."""
    global _process_telemetry
    with _setup_lock:
        previous = _process_telemetry[1] if _process_telemetry and _process_telemetry[0] == os.getpid() else None
        _process_telemetry = (os.getpid(), telemetry) if telemetry is not None else None
        return previous
